"""Stage-2 policy: short real Lightning runs (both modes), exact kill/resume, and early failures (incompatible
checkpoint, wrong LAQ artifact) that must happen before any data pipeline is built.

Data: the in-memory synthetic stream of the batch contract (``training/synthetic.py``); labels: the real LAQ model
(random init) for one run and the deterministic stand-in labeller elsewhere. Sizes are tiny: the 2-core machine is
shared."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch

from hlrp_core.config import load
from hlrp_core.training import trainer as T
from hlrp_core.training.policy.fit import fit_policy
from hlrp_core.training.policy.artifact import load_stage2_artifact
from hlrp_core.training.policy.labels import LAQArtifactError, StandInLabeller
from hlrp_core.training.policy.module import ResumeMismatchError
from hlrp_core.training.run_handle import DirRun
from hlrp_core.training.synthetic import SyntheticDataModule

pytestmark = pytest.mark.integration

BASE = ["training.accelerator=cpu", "training.precision=32-true", "training.warmup_steps=1", "training.lr=3e-3",
        "data.loader.batch_size=8", "training.log_every_n_steps=1", "model.policy.system_prompt=Robot", "model.policy.readout=last",
        "training.validation.visualization.enabled=true", "training.validation.visualization.num_samples=2",
        "training.dataset_usage_logger.log_batch_composition_every_n_steps=2"]


def _cfg(*extra: str):
    return load(overrides=BASE + list(extra))


def _dm():
    return SyntheticDataModule(batch_size=8, val_items=16)


def _run(cfg, out, labeller=None, dm=None):
    """One fit; the backbone is built inside after seeding, so equal configs give equal initial weights."""
    return fit_policy(cfg, DirRun(out, "hlrp.policy"), datamodule=dm or _dm(), labeller=labeller or StandInLabeller())


def test_latent_flow_run_writes_everything(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="hlrp.policy")
    cfg = _cfg("model.policy.mode=latent_flow", "training.max_steps=4", "training.validation.check_interval=2",
               "training.checkpoint.every_n_train_steps=2", "training.train_visualization.enabled=true",
               "training.train_visualization.every_n_steps=2", "training.train_visualization.num_samples=2")
    m = _run(cfg, tmp_path)
    for key in ["val/loss", "val/flow_loss", "val/token_accuracy", "val/token_accuracy_majority_baseline",
                "val/sequence_accuracy", "perf/samples_per_sec", "perf/steps_per_sec", "val/token_accuracy_vote",
                "val/latent_vector_stats/cosine_mean", "val/latent_vector_stats/pred_unique_frac",
                "val/dataset_mix_unique", "val/dataset_mix_top1_frac", "val/dataset_mix_entropy_norm",
                "val/dataset_mix_frac_synthetic_square"]:
        assert key in m, key
    assert m["stage2/global_step"] == 4 and m["val/num_items"] == 16
    assert "[Train][BatchMix] step=2 synthetic_square=8" in caplog.text
    assert "[Val][BatchMix] step=4 synthetic_square=16" in caplog.text
    npz = np.load(tmp_path / "val_predictions" / "step_000004.npz")
    assert npz["gt_codes"].shape == (16, 4) and npz["pred_vectors"].shape == (16, 4, 8)
    assert list(npz["dataset_names"][:1]) == ["synthetic_square"] and len(npz["episode_ids"]) == 16
    recs = json.loads((tmp_path / "samples" / "val" / "step_000004" / "records.json").read_text())
    assert recs[0]["dataset_name"] == "synthetic_square" and len(recs[0]["gt_codes"]) == 4 and "vector_mse" in recs[0]
    assert (tmp_path / "samples" / "val" / "step_000004" / "sample_00.png").stat().st_size > 1000
    assert (tmp_path / "samples" / "train" / "step_000002" / "records.json").exists()
    assert (tmp_path / "timeseries.csv").read_text().count("train/loss") == 1
    art = load_stage2_artifact(tmp_path / "artifacts" / "stage2_artifact.pt")
    assert art["manifest"]["mode"] == "latent_flow" and art["manifest"]["source_global_step"] == 4


def test_codes_mode_with_real_laq_labeller(tmp_path):
    from hlrp_core.models.laq import LAQConfig, LAQModel
    from hlrp_core.training.policy.labels import labeller_from_laq

    torch.manual_seed(0)
    laq = LAQModel(LAQConfig())
    lab = labeller_from_laq(laq, {}, "test-random-laq")
    cfg = _cfg("model.policy.mode=codes", "training.max_steps=3", "training.validation.check_interval=3")
    m = _run(cfg, tmp_path, labeller=lab)
    assert "val/code_loss" in m and 0.0 <= m["val/token_accuracy"] <= 1.0
    assert not laq.training and all(not p.requires_grad for p in laq.parameters())
    art = load_stage2_artifact(tmp_path / "artifacts" / "stage2_artifact.pt")
    assert art["manifest"]["laq"]["hash"] == lab.identity["hash"]
    assert not any(k.startswith(("labeller", "_labeller")) for k in art["state_dict"])


def test_kill_and_resume_continues_exactly(tmp_path):
    common = ["model.policy.mode=latent_flow", "training.validation.check_interval=3",
              "training.checkpoint.every_n_train_steps=3", "training.validation.visualization.enabled=false"]
    straight = _run(_cfg(*common, "training.max_steps=6"), tmp_path / "a")
    # "kill" after step 3: the same schedule (max_steps=6), but the loop is cut at step 3
    cfg_b1 = _cfg(*common, "training.max_steps=6")
    import lightning as L

    orig_fit = L.Trainer.fit

    def fit_3(self, *a, **kw):  # emulate a kill at step 3: Lightning stops after 3 steps, last.ckpt is at 3
        self.fit_loop.epoch_loop.max_steps = 3
        return orig_fit(self, *a, **kw)

    L.Trainer.fit = fit_3
    try:
        _run(cfg_b1, tmp_path / "b1")
    finally:
        L.Trainer.fit = orig_fit
    assert torch.load(tmp_path / "b1" / "ckpt" / "last.ckpt", weights_only=False)["global_step"] == 3
    resumed = _run(_cfg(*common, "training.max_steps=6", f"training.resume_from={tmp_path}/b1/ckpt/last.ckpt"),
                   tmp_path / "b2")
    assert resumed["stage2/global_step"] == 6
    a = torch.load(tmp_path / "a" / "artifacts" / "stage2_artifact.pt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "b2" / "artifacts" / "stage2_artifact.pt", weights_only=True)["state_dict"]
    worst = max((a[k].float() - b[k].float()).abs().max().item() for k in a)
    assert worst < 1e-5, worst
    assert resumed["val/loss"] == pytest.approx(straight["val/loss"], rel=1e-5)


def test_incompatible_checkpoint_fails_before_data(tmp_path, monkeypatch):
    cfg = _cfg("model.policy.mode=codes", "training.max_steps=1", "training.validation.check_interval=1")
    _run(cfg, tmp_path / "src")

    def no_data(cfg):
        raise AssertionError("the data pipeline was built before the checkpoint check")

    monkeypatch.setattr(T, "build_datamodule", no_data)
    bad = _cfg("model.policy.mode=codes", "model.policy.flow_hidden_dim=48", "training.max_steps=2",
               f"training.resume_from={tmp_path}/src/ckpt/last.ckpt")
    with pytest.raises(ResumeMismatchError) as e:
        fit_policy(bad, DirRun(tmp_path / "bad"), labeller=StandInLabeller())
    msg = str(e.value)
    assert "policy.flow_hidden_dim: checkpoint=0, now=48" in msg and "shape mismatches" in msg and "fix:" in msg
    other_laq = _cfg("model.policy.mode=codes", "training.max_steps=2",
                     f"training.resume_from={tmp_path}/src/ckpt/last.ckpt")
    with pytest.raises(ResumeMismatchError, match="laq.hash"):
        fit_policy(other_laq, DirRun(tmp_path / "bad2"), labeller=StandInLabeller(seed=5))


def test_wrong_laq_artifact_fails_before_data(tmp_path, monkeypatch):
    def no_data(cfg):
        raise AssertionError("the data pipeline was built before the LAQ artifact check")

    monkeypatch.setattr(T, "build_datamodule", no_data)
    with pytest.raises(LAQArtifactError, match="model.laq.artifact is not set"):
        fit_policy(_cfg(), DirRun(tmp_path))
    with pytest.raises(LAQArtifactError, match="file not found"):
        fit_policy(_cfg(f"model.laq.artifact={tmp_path}/nope.pt"), DirRun(tmp_path))
    junk = tmp_path / "junk.pt"
    torch.save({"not": "an artifact"}, junk)
    with pytest.raises(LAQArtifactError, match="junk.pt"):
        fit_policy(_cfg(f"model.laq.checkpoint={junk}"), DirRun(tmp_path))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_smolvlm2_500m_random_throughput(tmp_path):
    """The seed preset's model size (SmolVLM2-500M dimensions, random init, bf16) for a few hundred steps on the
    GPU; reports samples/s and peak GPU memory."""
    cfg = load(experiment="vla_smol_flow_shared", overrides=[
        "model.policy.backbone=smolvlm2_500m_random", "training.max_steps=200", "training.validation.check_interval=200",
        "training.warmup_steps=20", "data.loader.batch_size=48", "data.preprocess.image_size=512",
        "training.validation.visualization.enabled=false", "training.train_visualization.enabled=false"])
    torch.cuda.reset_peak_memory_stats()
    m = fit_policy(cfg, DirRun(tmp_path), datamodule=SyntheticDataModule(batch_size=48, image_size=512, val_items=96),
                   labeller=StandInLabeller())
    peak = torch.cuda.max_memory_allocated() / 2**30
    print(f"samples/s={m['perf/samples_per_sec']:.1f} steps/s={m['perf/steps_per_sec']:.2f} peak_gpu_gib={peak:.1f}")
    assert m["stage2/global_step"] == 200 and m["perf/samples_per_sec"] > 0 and np.isfinite(m["val/loss"])


def test_notebook_stage1_then_stage2_smoke(request, monkeypatch):
    """``hlrp run`` the Stage-1 tiny notebook (smoke), then notebook 11 on its artifact (smoke, real embedded data):
    the result keys land in metrics.json and the artifact is written."""
    from hlrp_core.launch import execute
    from hlrp_core.paths import REPO_ROOT
    from pathlib import Path

    assert (REPO_ROOT / "notebooks/10_train_laq.ipynb").exists() and (REPO_ROOT / "params/laq_tiny.yaml").exists()

    embedded = Path(request.getfixturevalue("embedded_root"))  # built only when the chain can run
    if embedded.name != "embedded":  # the session build is <tmp>/embeddedN: data.root is $HLRP_DATA_ROOT/embedded
        root = request.getfixturevalue("tmp_path") / "data"
        root.mkdir()
        (root / "embedded").symlink_to(embedded, target_is_directory=True)
        embedded = root / "embedded"
    monkeypatch.setenv("HLRP_DATA_ROOT", str(embedded.parent))
    code, laq_run = execute("notebooks/10_train_laq.ipynb", ["params/laq_tiny.yaml"], ["smoke=true"], study="test")
    assert code == 0 and laq_run is not None
    code, run = execute("notebooks/11_train_policy.ipynb", ["params/policy_tiny.yaml"],
                        ["smoke=true", f"model.laq.artifact={laq_run}"], study="test")
    assert code == 0, (run / "unified.log").read_text()[-3000:] if run else "no run dir"
    metrics = json.loads((run / "metrics.json").read_text())
    for key in ["val/loss", "val/token_accuracy", "val/token_accuracy_majority_baseline", "val/sequence_accuracy",
                "perf/samples_per_sec", "perf/steps_per_sec", "val/dataset_mix_unique"]:
        assert key in metrics, key
    assert (run / "artifacts" / "stage2_artifact.pt").exists()
