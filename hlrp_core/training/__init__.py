"""Training: a shared floor (trainer, callbacks, optim, resume, run handle, ...) under two matching wings, ``laq/``
(Stage 1) and ``policy/`` (Stage 2), and the srun entry point ``srun.py`` (docs/ARCHITECTURE.md, the training wings)."""
