"""Stage 2 wing of ``training/``: the policy Lightning module, ``fit_policy``, the ``stage2_artifact.pt`` writer/reader,
the frozen-LAQ labeller and the sample panels (docs/ARCHITECTURE.md, the training wings)."""
