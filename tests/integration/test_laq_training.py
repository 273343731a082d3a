"""Stage 1 end to end on the embedded data: a short real Lightning run, exact resume, incompatible resume."""

from __future__ import annotations

import csv
import json

import lightning as L
import numpy as np
import pytest
import torch

import hlrp_core.runs as runs
from hlrp_core.training import trainer as T
from hlrp_core.training.laq.fit import fit_laq
from hlrp_core.training.laq.artifact import load_laq_artifact
from hlrp_core.training.resume import IncompatibleCheckpointError

pytestmark = pytest.mark.integration

RESULT_KEYS = ["val/recon_mse", "val/copy_baseline_mse", "val/delta_psnr_true_vs_shuffled",
               "val/codebook_perplexity", "val/codes_used", "val/action_nmi", "val/action_nmi_shuffled",
               "val/action_nmi_untrained", "val/action_probe_r2", "val/action_probe_r2_shuffled",
               "val/action_probe_r2_untrained"]


class BatchRecorder(L.Callback):
    """Remembers the sample keys and the loss of every training step (keyed by the step the batch trains)."""

    def __init__(self):
        self.keys, self.loss = {}, {}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        step = trainer.global_step  # already incremented: this batch trained step `step`
        self.keys[step] = batch["sample_key"].clone()
        self.loss[step] = float(outputs["loss"])


def _start(embedded_root, extra=()):
    # a k-means codebook refit at step 15: the resume from step 10 must rebuild it from the checkpointed latent window
    return runs.start("laq_tiny", [f"data.root={embedded_root}", "training.max_steps=20",
                                   "training.checkpoint.every_n_train_steps=10", "model.codebook_refit_steps=[15]",
                                   *extra], smoke=True)


@pytest.fixture(scope="module")
def first_run(embedded_root):
    cfg, run = _start(embedded_root)
    rec = BatchRecorder()
    metrics = fit_laq(cfg, run, extra_callbacks=[rec])
    run.finish(metrics)
    return cfg, run, rec, metrics


def test_short_run_writes_the_record(first_run):
    cfg, run, rec, metrics = first_run
    assert metrics["global_step"] == 20
    saved = json.loads((run.dir / "metrics.json").read_text())
    for key in RESULT_KEYS:
        assert key in saved and np.isfinite(saved[key]), key
    assert saved["val/copy_baseline_mse"] > 0 and 1 <= saved["val/codes_used"] <= cfg.model.codebook_size
    with open(run.dir / "timeseries.csv") as f:
        rows = list(csv.DictReader(f))
    rss = [float(r["sys/host_rss_mb"]) for r in rows if r.get("sys/host_rss_mb")]
    assert rss and min(rss) > 10
    assert (run.dir / "ckpt" / "last.ckpt").exists() and (run.dir / "ckpt" / "step_000010.ckpt").exists()
    pred = np.load(run.dir / "val_predictions" / "step_000020.npz")
    assert pred["codes"].shape[1] == cfg.model.code_seq_len and len(pred["episode_ids"]) == len(pred["actions"])
    if cfg.model.latent_norm == "batch":  # BatchNorm statistics recalibrated on the val set before validating
        # mean exactly ~0 on the set the statistics came from (lagging running stats leave it several spreads off);
        # std below 1 by sqrt(var / (var + eps)): the raw spread is tiny (var ~1e-5, BatchNorm eps 1e-5)
        lat = pred["latents"].reshape(len(pred["latents"]), -1)
        assert np.abs(lat.mean(0)).max() < 0.05 * lat.std(0).min(), lat.mean(0)
        assert 0.2 < lat.std(0).min() <= lat.std(0).max() < 1.3, lat.std(0)
    assert (run.dir / "figures" / "laq_recon_grid.png").exists()
    model, manifest = load_laq_artifact(run.dir)
    assert manifest["codebook_size"] == cfg.model.codebook_size and manifest["source_global_step"] == 20
    log_text = (run.dir / "unified.log").read_text()
    assert "[Codebook] step=10" in log_text
    assert "[Codebook] step=15 refit: k-means codebook" in log_text and saved["codebook/refits"] == 1


def test_resume_continues_exactly(first_run, embedded_root):
    cfg, run, rec, _ = first_run
    ckpt = run.dir / "ckpt" / "step_000010.ckpt"
    cfg2, run2 = _start(embedded_root, [f"training.resume_from={ckpt}"])
    rec2 = BatchRecorder()
    metrics = fit_laq(cfg2, run2, extra_callbacks=[rec2])
    run2.finish(metrics)
    assert metrics["global_step"] == 20
    assert min(rec2.keys) == 11  # the step counter continues
    for step in range(11, 21):  # same batches, same losses
        assert torch.equal(rec.keys[step], rec2.keys[step]), step
        assert rec.loss[step] == pytest.approx(rec2.loss[step], rel=1e-5, abs=1e-7), step
    a = torch.load(run.dir / "ckpt" / "last.ckpt", weights_only=False)["state_dict"]
    b = torch.load(run2.dir / "ckpt" / "last.ckpt", weights_only=False)["state_dict"]
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=k)


def test_resume_into_other_shape_fails_before_data(first_run, embedded_root, monkeypatch):
    cfg, run, _, _ = first_run
    dim = cfg.model.dim

    def no_data(cfg):
        raise AssertionError("the data module was built before the checkpoint check")

    monkeypatch.setattr(T, "build_datamodule", no_data)
    cfg2, run2 = _start(embedded_root, [f"training.resume_from={run.dir / 'ckpt' / 'last.ckpt'}", "model.dim=48"])
    with pytest.raises(IncompatibleCheckpointError) as e:
        fit_laq(cfg2, run2)
    msg = str(e.value)
    assert f"model.dim: {dim} -> 48" in msg
    assert "mis-shaped tensors" in msg and f"[{dim}" in msg and "48]" in msg
    assert f"fix: set model.dim={dim}" in msg


def test_normalised_run_keeps_its_statistics_in_the_run_and_the_artifact(embedded_root, tmp_path):
    from hlrp_core.data import stats

    cfg, run = runs.start("laq_tiny", [f"data.root={embedded_root}", "training.max_steps=4",
                                       "training.validation.check_interval=4", "data.preprocess.normalize=gaussian",
                                       f"data.adapter.index_cache_dir={tmp_path / 'index'}"], smoke=True)
    full = stats.run(cfg, threads=2, log=lambda *a: None)
    metrics = fit_laq(cfg, run)
    run.finish(metrics)
    copied = json.loads((run.dir / "dataset_statistics.json").read_text())
    assert set(copied) == {e.name for e in cfg.data.dataset.oxe.datasets} and copied.keys() <= full.keys()
    for name, st in copied.items():
        assert st["action"]["mean"] == full[name]["action"]["mean"] and not st.get("estimate")
    _, manifest = load_laq_artifact(metrics["artifact"])
    assert manifest["dataset_statistics"] == copied
