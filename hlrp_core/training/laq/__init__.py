"""Stage 1 wing of ``training/``: the LAQ Lightning module, ``fit_laq``, the ``laq_artifact.pt`` writer/reader and
the validation figures (docs/ARCHITECTURE.md, the training wings)."""
