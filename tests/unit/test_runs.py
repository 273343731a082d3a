"""Run directories: never overwritten, atomic files, status, metrics, memory extremes."""

import json

import pytest

from hlrp_core import runs
from hlrp_core.config import ConfigError, load_run


def test_new_run_dirs_are_distinct(tmp_path):
    a = runs.new_run_dir("study", "same", root=tmp_path)
    b = runs.new_run_dir("study", "same", root=tmp_path)
    assert a != b and a.exists() and b.exists() and a.parent == b.parent


def test_start_records_files_and_finish(tmp_path):
    cfg, run = runs.start("workbench_check", ["data.loader.batch_size=48"], run_dir=str(tmp_path / "r"), smoke=True)
    for name in ("config.yaml", "env.json", "status", "params.yaml", "unified.log"):
        assert (run.dir / name).exists(), name
    assert runs.read_status(run.dir) == ("RUNNING", "")
    assert load_run(run.dir).data.loader.batch_size == 48
    env = json.loads((run.dir / "env.json").read_text())
    assert {"git_sha", "git_dirty", "host", "packages", "slurm"} <= set(env)
    run.record({"a": 1.0})
    merged = run.finish({"b": 2.0})
    assert merged["a"] == 1.0 and merged["b"] == 2.0 and merged["final"] is True
    assert merged["mem/peak_rss_mb"] > 0 and merged["mem/min_available_mb"] > 0
    assert runs.read_status(run.dir)[0] == "DONE"
    assert "run DONE" in (run.dir / "unified.log").read_text()


def test_start_refuses_existing_run(tmp_path):
    _, run = runs.start("workbench_check", [], run_dir=str(tmp_path / "r"), smoke=True)
    run.finish()
    with pytest.raises(FileExistsError):
        runs.start("workbench_check", [], run_dir=str(run.dir), smoke=True)
    assert runs.read_status(run.dir)[0] == "DONE"


def test_bad_config_touches_nothing(tmp_path):
    target = tmp_path / "r"
    with pytest.raises(ConfigError):
        runs.start("", ["data.loader.batch_sise=4"], run_dir=str(target))
    assert not target.exists()


def test_failed_status_keeps_reason_on_one_line(tmp_path):
    runs.write_status(tmp_path, runs.FAILED, "ValueError: bad\nthing")
    assert runs.read_status(tmp_path) == ("FAILED", "ValueError: bad thing")


def test_list_and_describe(tmp_path):
    a = runs.new_run_dir("s", "a", root=tmp_path)
    runs.write_status(a, runs.DONE)
    runs.record_metrics(a, {"x": 1})
    found = runs.list_runs(tmp_path)
    assert found == [a]
    d = runs.describe(a)
    assert d["status"] == "DONE" and d["metrics"]["x"] == 1


def test_effective_data_knobs_recorded_in_config(tmp_path):
    import yaml

    _, run = runs.start("", ["data.adapter.tf.tfds_read.interleave_parallelism=2"], run_dir=str(tmp_path / "r"),
                        smoke=True)
    eff = yaml.safe_load((run.dir / "config.yaml").read_text())["data"]["effective"]
    # cycle_length defaults to 1, so the requested read interleave of 2 is clamped: the record shows the truth
    assert eff["tf.tfds_read.interleave_parallelism"] == 1
    assert load_run(run.dir).data.effective == eff
    run.finish()


def test_ram_guard_stop_is_not_done(tmp_path):
    from hlrp_core.analysis.runs_table import classify_failure
    from hlrp_core.ladder.run import rung_status

    _, run = runs.start("workbench_check", [], run_dir=str(tmp_path / "r"), smoke=True)
    run.finish({"stopped_reason": "ram_guard: MemAvailable 800 MB < 1000", "stopped_step": 15})
    state, reason = runs.read_status(run.dir)
    assert state == "FAILED" and "step 15" in reason
    assert classify_failure(state, reason) == "ram_guard"
    assert rung_status(run.dir)[0] == "ram-guard"


def test_resumed_segment_forgets_the_previous_stop(tmp_path, monkeypatch):
    _, run = runs.start("workbench_check", [], run_dir=str(tmp_path / "r"), smoke=True)
    run.finish({"stopped_reason": "time limit signal at step 5 (resumable)", "stopped_step": 5})
    assert runs.read_status(run.dir)[0] == "FAILED"
    monkeypatch.setenv(runs.RESUME_ENV, str(run.dir))
    _, again = runs.start("workbench_check", [], run_dir=str(run.dir), smoke=True)
    merged = again.finish({"global_step": 9})
    assert runs.read_status(run.dir)[0] == "DONE" and "stopped_reason" not in merged
    segs = runs.read_segments(run.dir)
    assert [s["end"].split(":")[0] for s in segs] == ["FAILED", "DONE"] and "step 5" in segs[0]["end"]


def test_unified_log_keeps_library_debug_noise_out(tmp_path):
    import logging

    from hlrp_core.runs import LOG, QUIET_LIBRARIES, attach_log

    logging.getLogger("fsspec").setLevel(logging.NOTSET)
    attach_log(tmp_path)
    try:
        logging.getLogger("fsspec.local").debug("open file: /x")
        logging.getLogger("matplotlib.font_manager").debug("findfont: score 10.05")
        logging.getLogger("fsspec").warning("a library warning still arrives")
        logging.getLogger("hlrp.mem").debug("rss sample")
    finally:
        for h in list(logging.getLogger().handlers):
            if getattr(h, "_hlrp", False):
                h.flush()
                logging.getLogger().removeHandler(h)
                h.close()
    text = (tmp_path / LOG).read_text()
    assert "open file" not in text and "findfont" not in text and "fsspec" in QUIET_LIBRARIES
    assert "a library warning still arrives" in text and "rss sample" in text
