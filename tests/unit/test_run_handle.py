"""The run handle (``hlrp_core.training.run_handle``): every run object training is given answers the same calls."""

from __future__ import annotations

import inspect
import json

import pytest

from hlrp_core import runs
from hlrp_core.training.run_handle import DirRun, RunHandle
from hlrp_core.training.srun import RankRun

#: Each protocol method called the way training calls it.
CALLS = {"record": (({"a": 1.0},), {"final": True}), "heartbeat": ((), {}),
         "save_figure": ((object(), "name"), {"dpi": 50}), "fail": (("why",), {"step": 3})}


@pytest.mark.parametrize("cls", [runs.Run, DirRun, RankRun])
def test_every_run_object_takes_the_protocol_calls(cls):
    members = {n for n in dir(RunHandle) if not n.startswith("_")}
    assert set(CALLS) <= members
    for name, (args, kwargs) in CALLS.items():
        inspect.signature(getattr(cls, name)).bind(None, *args, **kwargs)  # raises TypeError when a call does not fit


def test_dir_run_records_and_saves_figures(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run = DirRun(tmp_path / "out")
    assert run.dir.is_dir() and run.log.name == "hlrp.run"
    run.record({"val/loss": 0.5})
    assert json.loads((run.dir / runs.METRICS).read_text())["val/loss"] == 0.5
    fig = plt.figure()
    assert run.save_figure(fig, "curve").exists()
    plt.close(fig)
    run.heartbeat()
    run.fail("stopped", step=2)  # no status file on a bare directory: logs only
    assert not (run.dir / runs.STATUS).exists()


def test_rank_run_writes_no_run_files(tmp_path):
    import logging

    before = list(logging.getLogger().handlers)
    run = RankRun(tmp_path, rank=1)
    try:
        run.record({"x": 1.0})
        run.fail("boom", step=1)
        assert not (tmp_path / runs.METRICS).exists() and (tmp_path / "ranks" / "rank1.log").exists()
    finally:  # RankRun sends the process's library logs to its file; give the root logger back
        for h in set(logging.getLogger().handlers) - set(before):
            logging.getLogger().removeHandler(h)
            h.close()
        for h in list(run.log.handlers):
            run.log.removeHandler(h)
            h.close()
