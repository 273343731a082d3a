"""Speed ladders (issue 7): expansion verdicts, committed rung files, measurement and report logic (fast)."""

import functools
import shutil
import textwrap
import time
from pathlib import Path

import pytest
import yaml

from hlrp_core import runs
from hlrp_core.ladder import measure
from hlrp_core.ladder import report as lr
from hlrp_core.ladder import run as lrun
from hlrp_core.ladder import spec as ls

@functools.lru_cache(maxsize=None)
def _expanded(name):
    spec = ls.load_spec(name)
    return spec, ls.expand(spec)


PRESETS = sorted(d.name for d in ls.LADDERS_DIR.iterdir() if (d / ls.LADDER_FILE).exists())


def _ladder(tmp_path, body: str):
    d = tmp_path / "lad"
    d.mkdir()
    (d / "ladder.yaml").write_text(textwrap.dedent(body))
    return ls.load_spec(d)


def test_presets_exist():
    assert {"seed_2026_02_18", "data_loader_smoke", "stage2_train_smoke"} <= set(PRESETS)


@pytest.mark.parametrize("name", PRESETS)
def test_committed_rung_files_match_a_fresh_expansion(name):
    spec, rungs = _expanded(name)
    assert ls.drift(spec, rungs) == [], f"run `hlrp ladder expand {name}` and commit the rung files"


def test_drift_is_detected(tmp_path):
    src = ls.ladder_dir("data_loader_smoke")
    dst = tmp_path / "data_loader_smoke"
    shutil.copytree(src, dst)
    spec = ls.load_spec(dst)
    assert ls.drift(spec) == []
    f = dst / "rung_002.yaml"
    f.write_text(f.read_text().replace("batch_size=16", "batch_size=17"))
    (dst / "rung_099.yaml").write_text("rung_id: r099\nrung_overrides: []\n")
    problems = ls.drift(spec)
    assert any("rung_002.yaml" in p for p in problems) and any("rung_099.yaml" in p and "stale" in p
                                                                   for p in problems)


@pytest.mark.parametrize("name", ["seed_2026_02_18", "data_loader_smoke"])
def test_one_knob_rungs_change_exactly_one_key(name):
    spec, rungs = _expanded(name)
    base = ls.baseline_flat(spec)
    one = [r for r in rungs if r.kind == "one_knob" and r.status != ls.INVALID]
    assert one
    for r in one:
        assert ls.changed_keys(spec, r, base) == [r.knob], r.rung_id
    assert ls.changed_keys(spec, rungs[0], base) == []


def test_seed_ladder_verdicts_before_anything_runs():
    rungs = {r.knob: r for r in _expanded("seed_2026_02_18")[1]}
    bad = rungs["data.adapter.tf.pipeline.interleave_parallelism"]
    assert bad.status == ls.INVALID
    assert "episode_concurrency" in bad.reason and "interleave_parallelism=2" in bad.reason
    noop = rungs["data.adapter.tf.tfds_read.interleave_parallelism"]
    assert noop.status == ls.DUPLICATE and noop.duplicate_of == "r000_baseline" and "no-op" in noop.reason
    assert noop.effective["data.adapter.tf.tfds_read.interleave_parallelism"] == 1  # clamped to cycle_length 1
    combo = rungs["data.adapter.tf.tfds_read.interleave_parallelism,data.adapter.tf.tfds_read.decode_parallelism"]
    assert combo.status == ls.DUPLICATE
    # decode/transform parallelism are budget knobs: a request alone ("shared pool of N (requested 2)") is a no-op
    for knob in ("data.adapter.tf.tfds_read.decode_parallelism", "data.adapter.tf.pipeline.transform_parallelism"):
        assert rungs[knob].status == ls.DUPLICATE and rungs[knob].duplicate_of == "r000_baseline", knob
    assert rungs["data.adapter.tf.pipeline.episode_concurrency"].status == ls.OK  # derived interleave changes


def test_invalid_and_duplicate_rungs_are_never_planned(tmp_path, monkeypatch):
    monkeypatch.setenv("HLRP_OUTPUT_ROOT", str(tmp_path / "out"))
    spec = _ladder(tmp_path, """
        notebook: notebooks/20_speed_ladder.ipynb
        experiment: speed_ladder
        baseline: ["data.loader.batch_size=32", "data.adapter.threads=1"]
        axes:
          data.loader.batch_size: [32, 16]
          data.adapter.tf.pipeline.interleave_parallelism: [3]
        baseline_repeats: 2
    """)
    rungs = ls.expand(spec)
    by = {r.value: r for r in rungs[1:]}
    assert by["32"].status == ls.DUPLICATE and by["32"].duplicate_of == "r000_baseline"
    assert by["3"].status == ls.INVALID and "interleave_parallelism=3" in by["3"].reason
    todo = [r.rung_id for r in lrun.plan(spec, rungs)]
    assert todo == ["r000_baseline", "r000_baseline", by["16"].rung_id]
    ls.write_rungs(spec, rungs)
    text = (spec.dir / by["3"].filename).read_text()
    assert "invalid-config" in text
    assert yaml.safe_load(text) == {"rung_id": by["3"].rung_id,
                                    "rung_overrides": ["data.adapter.tf.pipeline.interleave_parallelism=3"]}


def test_product_and_zip_modes(tmp_path):
    spec = _ladder(tmp_path, """
        notebook: notebooks/20_speed_ladder.ipynb
        experiment: speed_ladder
        mode: product
        baseline: ["data.adapter.threads=1"]
        axes:
          data.loader.batch_size: [8, 16]
          data.preprocess.image_size: [32, 64]
    """)
    rungs = ls.expand(spec)
    assert len(rungs) == 5 and all(len(r.overrides) == 2 for r in rungs[1:])


def test_bad_ladder_file_names_the_problem(tmp_path):
    with pytest.raises(ls.ConfigError, match="mode"):
        _ladder(tmp_path, "notebook: x.ipynb\nmode: grid\n")


# ---------------------------------------------------------------- measurement
class _Cfg:
    class training:
        max_steps = 12

        class ram_guard:
            min_available_mb = 0

    class data:
        class loader:
            batch_size = 4

        class adapter:
            ram_guard_min_available_mb = 0


def test_measure_excludes_warmup_and_fills_every_key():
    def batches():
        for i in range(100):
            time.sleep(0.05 if i < 3 else 0.005)  # slow warm-up
            yield [0] * 4

    m = measure.measure_loop(batches, _Cfg())
    assert set(measure.KEYS) <= set(m)
    assert m["ladder/status"] == "pass" and m["ladder/warmup_steps"] == 2
    assert m["ladder/samples_per_s"] == pytest.approx(4 * m["ladder/steps_per_s"], rel=1e-3)
    assert m["ladder/steps_per_s"] > 40  # warm-up (20 steps/s) excluded from the window
    assert m["ladder/first_batch_s"] >= 0.04 and m["ladder/stray_threads"] == 0


def test_ram_floor_above_free_memory_is_ram_guard_not_a_crash():
    cfg = _Cfg()
    built = []

    class Floor(_Cfg.training.ram_guard):
        min_available_mb = 10**9

    cfg.training = type("T", (), {"max_steps": 5, "ram_guard": Floor})
    m = measure.measure_loop(lambda: built.append(1) or iter([[0]] * 10), cfg)
    assert m["ladder/status"] == "ram-guard" and "floor" in m["ladder/error"] and built == []


def test_failures_become_statuses():
    def boom():
        yield [0]
        raise MemoryError("no more")

    assert measure.measure_loop(boom, _Cfg())["ladder/status"] == "oom"
    assert measure.measure_loop(lambda: iter([[0]] * 3), _Cfg())["ladder/status"] == "fail"


# ---------------------------------------------------------------- report logic on recorded run directories
def _fake_run(root, name, rung_id, samples, status="pass", i=0):
    d = root / "ladders" / name / f"2026-01-01_00-00-0{i}_{rung_id}"
    d.mkdir(parents=True)
    runs.write_status(d, runs.DONE)
    runs.record_metrics(d, {"ladder/status": status, "ladder/error": "", "ladder/steps_per_s": samples / 32,
                            "ladder/samples_per_s": samples, "ladder/first_batch_s": 0.1,
                            "ladder/peak_rss_mb": 400.0, "ladder/min_available_mb": 9000.0})


def test_report_noise_band_ties_and_best(tmp_path, monkeypatch):
    monkeypatch.setenv("HLRP_OUTPUT_ROOT", str(tmp_path / "out"))
    spec = _ladder(tmp_path, """
        notebook: notebooks/20_speed_ladder.ipynb
        experiment: speed_ladder
        baseline: ["data.loader.batch_size=32", "data.adapter.threads=1"]
        axes:
          data.preprocess.image_size: [32, 128, 256]
          data.adapter.tf.pipeline.interleave_parallelism: [2]
    """)
    rungs = ls.expand(spec)
    ls.write_rungs(spec, rungs)
    root = tmp_path / "out"
    for i, s in enumerate([100.0, 104.0, 96.0]):
        _fake_run(root, spec.name, "r000_baseline", s, i=i)
    _fake_run(root, spec.name, rungs[1].rung_id, 150.0)   # faster, beyond the 4% band
    _fake_run(root, spec.name, rungs[2].rung_id, 102.0)   # within noise -> tie
    _fake_run(root, spec.name, rungs[3].rung_id, 0.0, status="ram-guard")
    rep = lr.build_report(str(spec.dir), figures=False)
    t = rep.table.set_index("rung")
    assert rep.noise_band == pytest.approx(0.04)
    assert t.loc[rungs[1].rung_id, "verdict"] == "faster" and t.loc[rungs[2].rung_id, "verdict"] == "tie"
    assert t.loc[rungs[3].rung_id, "status"] == "ram-guard"
    assert t.loc[rungs[4].rung_id, "status"] == "invalid-config"
    assert rep.best.startswith(f"best: {rungs[1].rung_id}")
    assert (root / "ladders" / spec.name / "report" / "ladder_report.csv").exists()
    assert "| r000_baseline |" in rep.markdown


def test_slurm_backend_dry_run_names_runs_like_local(tmp_path, monkeypatch):
    monkeypatch.setenv("HLRP_OUTPUT_ROOT", str(tmp_path / "out"))
    spec, rungs = _expanded("data_loader_smoke")
    sub = lrun.run_slurm(spec, rungs, max_parallel=2, cluster="slurm_ci_fast", dry_run=True)
    names = [p.rsplit("/", 1)[-1][20:] for p in sub.run_dirs]
    assert names[:3] == ["r000_baseline", "r000_baseline-2", "r000_baseline-3"]
    assert all(p.startswith(str(tmp_path / "out" / "ladders" / "data_loader_smoke")) for p in sub.run_dirs)
    assert {lrun._rung_of_dir(Path(p), [r.rung_id for r in rungs]) for p in sub.run_dirs} == \
        {r.rung_id for r in rungs}
    assert any("--array=0-6%2" in c for c in sub.commands)
    with pytest.raises(ls.ConfigError, match="--cluster"):
        lrun.run_slurm(spec, rungs, cluster="")
