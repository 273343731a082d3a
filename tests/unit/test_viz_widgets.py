"""The JupyterLab widgets driven programmatically (no display): set a control, check the figure/labels/data shown.

DatasetExplorer and CodeInspector run on the embedded datasets (``embedded_root``); RunDashboard on real run
directories built with ``hlrp_core.runs`` (tests/run_dirs.py: DONE with curves and samples, FAILED by the RAM guard,
FAILED by an exception, a stale RUNNING one = LOST, a live one).
"""

import ipywidgets as W
import numpy as np
import pytest

from hlrp_core.data import registry as reg
from hlrp_core.viz import CodeInspector, DatasetExplorer, RunDashboard, figures
from tests.run_dirs import make_runs

PNG = b"\x89PNG"


def _is_png(value) -> bool:
    return bytes(value)[:4] == PNG


def _no_output_widgets(widget) -> None:
    """The rule of WORKBENCH section 11: no Output widget anywhere in the tree."""
    todo = [widget]
    while todo:
        w = todo.pop()
        assert not isinstance(w, W.Output), f"{type(widget).__name__} contains an Output widget"
        todo.extend(getattr(w, "children", ()) or ())


@pytest.fixture(scope="module")
def explorer(embedded_root):
    return DatasetExplorer(roots=[embedded_root], datasets=["embedded_tabletop", "embedded_langtable"])


def test_explorer_shows_pair_instruction_action_state(explorer):
    _no_output_widgets(explorer)
    assert list(explorer.dataset.options) == ["embedded_tabletop", "embedded_langtable"]
    s = explorer.shown
    assert s["dataset"] == "embedded_tabletop" and s["split"] == "train" and s["t"] == 0
    assert s["k"] == reg.get("embedded_tabletop").pair_offset_steps
    assert _is_png(explorer.image.value)
    assert s["instruction"] and s["instruction"] in explorer.info.value
    assert len(s["action"]) == 2 and len(s["state"]) == 2
    assert "world_vector" in explorer.facts.value  # schema facts of the dataset
    assert explorer.episode.max == explorer.reader.num_episodes("embedded_tabletop") - 1


def test_explorer_action_is_the_known_displacement(explorer):
    """Embedded data: the summed action over [t, t+k) equals k steps of the primitive's per-step displacement,
    i.e. the state (gripper position) moves by exactly the summed action from t to t+k."""
    explorer.dataset.value = "embedded_tabletop"
    explorer.episode.value = 1
    before = explorer.image.value
    explorer.frame.value = 2
    assert explorer.image.value != before  # redrawn in place, one Image
    s = explorer.shown
    assert s["t"] == 2 and s["episode"] == 1
    ep = explorer.reader.read("embedded_tabletop", 1)
    k = s["k"]
    np.testing.assert_allclose(s["action"], ep.actions[2:2 + k].sum(0), atol=1e-6)
    assert np.abs(s["action"]).max() == pytest.approx(k * reg.EMBEDDED_STEP, abs=1e-6)


def test_explorer_k_episode_and_dataset_change_what_is_shown(explorer):
    explorer.dataset.value = "embedded_tabletop"
    explorer.frame.value = 0
    explorer.k.value = 1
    a1 = np.array(explorer.shown["action"])
    explorer.k.value = 4
    a4 = np.array(explorer.shown["action"])
    assert explorer.shown["k"] == 4 and "k=4" in explorer.info.value
    np.testing.assert_allclose(a4, 4 * a1, atol=1e-6)  # a primitive moves at constant speed

    explorer.episode.value = 0
    i0 = explorer.shown["instruction"]
    explorer.episode.value = 3
    assert explorer.shown["episode"] == 3 and "3 of" in explorer.info.value
    assert explorer.shown["metadata"]["file_path"].endswith("/3")
    explorer.dataset.value = "embedded_langtable"  # code-point instructions, flat action
    s = explorer.shown
    assert s["dataset"] == "embedded_langtable" and s["instruction"] and "\x00" not in s["instruction"]
    assert "codepoints" in explorer.facts.value and i0 != ""
    assert explorer.frame.max == len(explorer.reader.read("embedded_langtable", s["episode"])) - 2


def test_explorer_mix_shares(explorer):
    names = ["embedded_tabletop"] * 30 + ["embedded_langtable"] * 10
    x = DatasetExplorer(roots=explorer.reader.paths["embedded_tabletop"].parents[1:2],
                        datasets=["embedded_tabletop", "embedded_langtable"],
                        weights={"embedded_tabletop": 3.0, "embedded_langtable": 1.0}, sample_batch=lambda: names)
    table = x.sample_mix()
    assert _is_png(x.mix_image.value)
    row = table.set_index("dataset")
    assert row.loc["embedded_tabletop", "target"] == pytest.approx(0.75)
    assert row.loc["embedded_langtable", "realised"] == pytest.approx(0.25)
    assert "batch 1: 40 samples" in x.mix_info.value
    # default sampler: shares follow the weights on a large batch
    explorer.weights = {"embedded_tabletop": 0.8, "embedded_langtable": 0.2}
    explorer.batch_size = 2000
    t = explorer.sample_mix().set_index("dataset")
    assert t.loc["embedded_tabletop", "realised"] == pytest.approx(0.8, abs=0.05)


def test_explorer_mix_from_the_data_loader(embedded_root):
    from hlrp_core.config import load
    from hlrp_core.data.loader import PairLoader

    cfg = load("", [f"data.root={embedded_root}", "data.loader.batch_size=16"], smoke=True)
    loader = PairLoader(cfg, split="train", with_val=False)
    try:
        x = DatasetExplorer(roots=[embedded_root], loader=loader)
        table = x.sample_mix().set_index("dataset")
    finally:
        loader.close()
    assert set(x.weights) == set(loader.dataset_names) and int(table["count"].sum()) == 16
    assert table["target"].sum() == pytest.approx(1.0) and table["realised"].sum() == pytest.approx(1.0)


def test_explorer_without_data(tmp_path):
    x = DatasetExplorer(roots=[tmp_path])
    assert list(x.dataset.options) == [] and "no datasets found" in x.info.value


@pytest.fixture(scope="module")
def runs_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("outputs")
    return root, make_runs(root)


def test_dashboard_lists_filters_and_shows_a_run(runs_root):
    root, paths = runs_root
    dash = RunDashboard(root=root)
    _no_output_widgets(dash)
    assert set(dash.study.options) == {"(all)", "demo", "ladders/bs"}
    assert len(dash.run.options) == 5 and dash.run.value == str(paths["live"])  # newest first
    for name in ("_good", "_ramguard", "_lost", "ram_guard", "oom_kill", "LOST"):
        assert name in dash.table.value

    dash.status.value = "FAILED"
    assert {v for _, v in dash.run.options} == {str(paths["ramguard"]), str(paths["crash"])}
    assert "_good" not in dash.table.value
    dash.run.value = str(paths["ramguard"])
    assert dash.shown["failure"] == "ram_guard" and "RamGuardError" in dash.info.value
    dash.status.value = "(all)"
    dash.study.value = "ladders/bs"
    assert {v for _, v in dash.run.options} == {str(paths["lost"]), str(paths["live"])}

    dash.study.value = "(all)"
    before = dash.image.value
    dash.run.value = str(paths["good"])
    s = dash.shown
    assert s["status"] == "DONE" and s["verdict"] == "learning" and s["steps"] == 40
    assert {"train/loss", "throughput/steps_per_s", "mem/rss_mb", "val/lift", "val/lift_lo"} <= set(s["curves"])
    assert _is_png(dash.image.value) and dash.image.value != before
    assert "learning" in dash.info.value and "lift 0.04" in dash.info.value
    # latest sample panel first, its JSON record shown; then the saved figure
    labels = [l for l, _ in dash.figure.options]
    assert labels[0].endswith("step_000040.png") and any("loss_curve.png" in l for l in labels)
    assert s["figure"] == "step_000040.png" and "instruction" in dash.figure_info.value
    first = dash.figure_image.value
    dash.figure.value = dict(dash.figure.options)[labels[1]]
    assert dash.shown["figure"] == "step_000020.png" and dash.figure_image.value != first


def test_dashboard_config_diff_and_refresh(runs_root, tmp_path):
    root, paths = runs_root
    dash = RunDashboard(root=root)
    dash.run.value = str(paths["ramguard"])
    assert dash.shown["diff"] is None
    dash.baseline.value = "2026-02-18_22-05-43_good"
    assert dash.shown["diff"] == {"data.loader.batch_size": (48, 96)}
    assert "data.loader.batch_size" in dash.diff.value
    dash.baseline.value = "preset: workbench_check"
    assert dash.shown["diff"]["data.loader.batch_size"] == (8, 96)
    dash.run.value = str(paths["crash"])  # no timeseries, no figures: a message, no error
    assert dash.shown["curves"] == [] and dash.shown["figure"] is None
    assert _is_png(dash.image.value)

    # refresh picks up a run that appeared after the dashboard was built
    from hlrp_core import runs

    _, run = runs.start("workbench_check", [], smoke=True, run_dir=str(root / "demo" / "2026-03-01_00-00-00_new"))
    run.finish({"verdict": "inconclusive"})
    n = len(dash.run.options)
    dash.refresh()
    assert len(dash.run.options) == n + 1 and "_new" in dash.table.value


def test_dashboard_on_empty_root(tmp_path):
    dash = RunDashboard(root=tmp_path / "nothing")
    assert dash.run.options == () and "no runs" in dash.table.value and dash.shown == {}


def test_code_inspector_with_a_labeller(embedded_root):
    """Stand-in labeller: the code is the direction of the motion, so the pairs of one code share the direction of
    their true action; choosing another code changes pairs, figure and action statistics."""
    from hlrp_core.training.policy.labels import StandInLabeller

    ins = CodeInspector(labeller=StandInLabeller(codebook_size=8, code_seq_len=2), roots=[embedded_root],
                        dataset="embedded_tabletop", max_pairs=96)
    _no_output_widgets(ins)
    assert ins.codes.shape == (len(ins.pairs), 2) and list(ins.slot.options) == [0, 1]
    first = ins.shown
    assert first["n_pairs"] > 0 and _is_png(ins.image.value) and _is_png(ins.scatter.value)
    idx = [i for i, w in enumerate(ins.where) if w in set(first["pairs"])]
    angles = np.arctan2(ins.actions[idx, 1], ins.actions[idx, 0])
    assert np.ptp(angles) < np.pi / 2  # one code = one motion direction (within a sector)
    img = ins.image.value
    other = [v for _, v in ins.code.options if v != first["code"]][0]
    ins.code.value = other
    assert ins.shown["code"] == other and ins.shown["pairs"] != first["pairs"] and ins.image.value != img
    assert f"{ins.shown['n_pairs']} of {len(ins.pairs)}" in ins.info.value
    ins.slot.value = 1
    assert ins.shown["slot"] == 1 and ins.shown["n_pairs"] == int((ins.codes[:, 1] == ins.code.value).sum())


def test_code_inspector_with_a_real_laq(embedded_root):
    import torch

    from hlrp_core.models.laq import LAQConfig, LAQModel

    torch.manual_seed(0)
    model = LAQModel(LAQConfig())
    ins = CodeInspector(labeller=model, roots=[embedded_root], dataset="embedded_tabletop", max_pairs=16)
    assert ins.codes.shape[0] == 16 and ins.codes.shape[1] == model.config.code_seq_len
    assert 0 <= ins.codes.min() and ins.codes.max() < model.config.codebook_size
    assert ins.shown["n_pairs"] >= 1


def test_code_inspector_needs_an_artifact():
    with pytest.raises(ValueError, match="laq_artifact.pt"):
        CodeInspector()


def test_figure_helpers_never_fail_on_empty_input():
    import pandas as pd

    for fig in (figures.plot_run_curves(pd.DataFrame(), title="x"), figures.plot_code_examples([], [], title="c"),
                figures.message_figure("hi")):
        assert _is_png(figures.to_png(fig))
