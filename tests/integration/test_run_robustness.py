"""Runs that end early end honestly: divergence, stop requests (the hand-over of a signal into a kernel), full-disk
checkpoints, NaN artifacts refused by Stage 2 (docs/ROBUSTNESS.md). Real Lightning on the embedded data, tiny sizes."""

from __future__ import annotations

import errno
import json

import lightning as L
import pytest
import torch

import hlrp_core.runs as runs
from hlrp_core.training.laq.fit import fit_laq
from hlrp_core.training.laq.artifact import ARTIFACT_NAME, ArtifactError, load_laq_artifact, save_laq_artifact
from hlrp_core.stopping import request_stop
from hlrp_core.training.interrupts import RunStopped, TrainingDiverged

pytestmark = pytest.mark.integration


def _start(embedded_root, *extra):
    return runs.start("laq_tiny", [f"data.root={embedded_root}", "training.max_steps=12",
                                   "training.validation.check_interval=100",
                                   "training.checkpoint.every_n_train_steps=100", *extra], smoke=True)


def test_lr_1e6_diverges_failed_without_artifact(embedded_root):
    cfg, run = _start(embedded_root, "training.lr=1e6", "training.warmup_steps=0", "training.gradient_clip_val=0")
    with pytest.raises(TrainingDiverged) as err:
        fit_laq(cfg, run)
    state, reason = runs.read_status(run.dir)
    assert state == "FAILED" and reason.startswith("diverged at step ") and "training.lr" in reason
    assert not (run.dir / "artifacts" / ARTIFACT_NAME).exists()
    m = json.loads((run.dir / "metrics.json").read_text())
    assert m["diverged_step"] == err.value.step >= 1
    assert m["diverged_loss"] in ("nan", "inf") or float(m["diverged_loss"]) > 0
    for ck in (run.dir / "ckpt").glob("*.ckpt"):  # whatever was saved before the divergence is finite
        sd = torch.load(ck, map_location="cpu", weights_only=False)["state_dict"]
        assert all(torch.isfinite(v).all() for v in sd.values() if v.is_floating_point()), ck


class _StopAt(L.Callback):
    """Writes the stop_request file at one step (what `hlrp run` does on SIGTERM), from the same process."""

    def __init__(self, run, step):
        self.run, self.step = run, step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self.step:
            request_stop(self.run.dir, "interrupted", "test stop request")


def test_stop_request_checkpoints_and_fails_resumable(embedded_root, monkeypatch):
    from hlrp_core.training.interrupts import RunGuard

    monkeypatch.setattr(RunGuard, "POLL_S", 0.0)  # poll every step: at ~10 steps/s a 1 s poll can miss steps 4-12
    cfg, run = _start(embedded_root)
    with pytest.raises(RunStopped) as err:
        fit_laq(cfg, run, extra_callbacks=[_StopAt(run, 4)])
    step = err.value.step
    assert 4 <= step < 12
    state, reason = runs.read_status(run.dir)
    assert state == "FAILED" and reason.startswith(f"interrupted at step {step} (resumable)"), reason
    ck = torch.load(run.dir / "ckpt" / "last.ckpt", map_location="cpu", weights_only=False)
    assert ck["global_step"] == step
    # the mid-epoch state of the stop step, not ModelCheckpoint's end-of-fit save_last over it (a resumed run
    # would log epoch 1 where an uninterrupted one logs 0): no periodic checkpoint came before this stop
    assert ck["epoch"] == 0 and ck["loops"]["fit_loop"]["epoch_progress"]["current"]["completed"] == 0
    assert sorted(p.name for p in (run.dir / "ckpt").glob("*.ckpt")) == ["last.ckpt"]
    assert not (run.dir / "artifacts" / ARTIFACT_NAME).exists()


def test_full_disk_checkpoint_leaves_no_half_file(embedded_root, monkeypatch):
    """torch.save failing with ENOSPC mid-write (what a full tmpfs does) -> OutputWriteError naming the path and the
    free space, status FAILED by the caller, and no file under a final checkpoint name."""
    from hlrp_core.storage import OutputWriteError
    from hlrp_core.training import safe_checkpoint

    cfg, run = _start(embedded_root, "training.checkpoint.every_n_train_steps=5")
    real = torch.save

    def full(obj, f, *a, **k):
        with open(f, "wb") as fh:
            fh.write(b"PK\x03\x04half")  # a partial archive, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(safe_checkpoint.torch, "save", full)
    with pytest.raises(OutputWriteError) as err:
        fit_laq(cfg, run)
    monkeypatch.setattr(safe_checkpoint.torch, "save", real)
    msg = str(err.value)
    assert "step_000005.ckpt" in msg and "free space there:" in msg and "disk" in msg
    assert not list((run.dir / "ckpt").glob("*.ckpt")) and not list((run.dir / "ckpt").glob(".*tmp"))


def test_nan_artifact_refused_on_save_and_by_stage2(tmp_path):
    from hlrp_core.models.laq import LAQConfig, LAQModel
    from hlrp_core.training.policy.labels import LAQArtifactError, load_laq_labeller

    model = LAQModel(LAQConfig(image_size=32, patch_size=4, dim=32, spatial_depth=1, temporal_depth=1, decoder_depth=1))
    good = save_laq_artifact(model, tmp_path / "good" / ARTIFACT_NAME)
    with torch.no_grad():
        next(iter(model.parameters())).fill_(float("nan"))
    with pytest.raises(ArtifactError, match="hold NaN/inf"):
        save_laq_artifact(model, tmp_path / "bad" / ARTIFACT_NAME)
    assert not (tmp_path / "bad" / ARTIFACT_NAME).exists()
    payload = torch.load(good, weights_only=True)  # a NaN artifact written by older code
    name = next(iter(payload["state_dict"]))
    payload["state_dict"][name] = torch.full_like(payload["state_dict"][name], float("nan"))
    torch.save(payload, tmp_path / "nan.pt")
    with pytest.raises(ArtifactError, match="refusing this LAQ artifact"):
        load_laq_artifact(tmp_path / "nan.pt", check_hash=False)
    with pytest.raises(LAQArtifactError, match="NaN/inf"):
        load_laq_labeller(str(tmp_path / "nan.pt"))
