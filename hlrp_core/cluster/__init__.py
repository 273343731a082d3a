"""hlrp_core.cluster: run notebooks as SLURM jobs (presets, submit, dual-queue, arrays, resume, ``hlrp jobs``).

Public API: ``submit``, ``submit_array``, ``resume`` (``submit.py``), ``list_jobs`` (``jobs.py``), ``load_preset``
(``presets.py``), ``make_snapshot`` (``snapshot.py``), ``srun_train`` / ``sbatch_train`` (``ddp.py``: hand a notebook's
training to ``srun python -m hlrp_core.training.srun``). The job side is ``python -m hlrp_core.cluster.job``.
"""

from .ddp import sbatch_train, srun_train
from .jobs import list_jobs, reconcile
from .presets import available_presets, load_preset
from .submit import Submission, resume, submit, submit_array

__all__ = ["Submission", "available_presets", "list_jobs", "load_preset", "reconcile", "resume", "sbatch_train",
           "srun_train", "submit", "submit_array"]
