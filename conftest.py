"""Root pytest configuration, shared by `pytest tests` and `pytest --nbval-lax notebooks`.

- Run directories of tests and notebooks go to a temp folder (``HLRP_OUTPUT_ROOT``), never into outputs/.
- nbval never compares stderr (warnings change with every upstream release; WORKBENCH.md section 9).
- notebooks/explore/ holds widget-only notebooks: nbval skips them.
"""

import os
import tempfile

collect_ignore_glob = ["notebooks/explore/*", ".venv/*", "outputs/*", "data/*"]


def pytest_configure(config):
    os.environ.setdefault("HLRP_OUTPUT_ROOT", tempfile.mkdtemp(prefix="hlrp-test-outputs-"))
    os.environ.setdefault("TQDM_DISABLE", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("MUJOCO_GL", "egl")


def pytest_collectstart(collector):
    if collector.fspath and str(collector.fspath).endswith(".ipynb"):
        collector.skip_compare += ("text/html", "application/javascript", "stderr")
