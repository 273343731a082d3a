"""Stage-2 policy pieces: tokenizer, preprocessing, flow math, heads, stats, artifact manifest checks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hlrp_core.config import ConfigError, load
from hlrp_core.models.policy import (LatentPolicy, LatentSpec, action_mse, build_tiny_tokenizer, euler_sample,
                                     interpolate, nearest_codes, pad_resize, sample_time, sinusoidal_time_embedding,
                                     tokenizer_hash, velocity_target)
from hlrp_core.training.policy import artifact as PA
from hlrp_core.metrics import wilson_interval
from hlrp_core.training.policy import stats as ST
from hlrp_core.training.policy.labels import StandInLabeller


@pytest.fixture(scope="module")
def tiny_backbone():
    from hlrp_core.models.policy import build_backbone

    return build_backbone(load().model.policy)


def _policy(mode="latent_flow", backbone=None, **kw):
    cfg = load(overrides=[f"model.policy.mode={mode}"] + [f"model.policy.{k}={v}" for k, v in kw.items()])
    lab = StandInLabeller()
    return LatentPolicy(cfg.model.policy, lab.spec, lab.codebook, backbone=backbone), lab


def test_tokenizer_special_tokens_and_determinism():
    tok = build_tiny_tokenizer()
    ids = tok.convert_tokens_to_ids(["<pad>", "<image>", "<fake_token_around_image>", "<global-img>"])
    assert ids[0] == 0 and len(set(ids)) == 4 and tok.unk_token_id not in ids
    assert tok.tokenize("Push the RED block left") == ["push", "the", "red", "block", "left"]
    assert "<unk>" not in tok.tokenize("zyx quux 42")  # unknown words fall back to characters
    assert tokenizer_hash(tok) == tokenizer_hash(build_tiny_tokenizer())


def test_pad_resize_keeps_aspect_and_scales():
    img = torch.full((1, 3, 32, 64), 255, dtype=torch.uint8)  # wide image, all white
    out = pad_resize(img, 64)
    assert out.shape == (1, 3, 64, 64)
    assert torch.allclose(out[:, :, :32], torch.ones(1, 3, 32, 64))   # content: top half, scaled to 1
    assert torch.allclose(out[:, :, 32:], -torch.ones(1, 3, 32, 64))  # padding at the bottom: 0 -> -1
    tall = pad_resize(torch.zeros(2, 3, 80, 40, dtype=torch.uint8) + 128, 64)
    assert torch.all(tall[:, :, :, 32:] == -1) and tall[:, :, :, :32].abs().max() < 0.01


def test_prompt_has_image_tokens(tiny_backbone):
    pol, _ = _policy(backbone=tiny_backbone)
    ids, mask = pol.processor.tokenize(["move up", "push the red block left"])
    assert (ids == pol.processor.image_token_id).sum(1).tolist() == [16, 16]
    assert mask[0].sum() < mask[1].sum() and ids[0, mask[0].sum():].eq(0).all()


def test_time_sampling_law():
    t = sample_time(20000, 1.5, 1.0, generator=torch.Generator().manual_seed(0))
    assert t.min() >= 0.001 and t.max() <= 1.0
    tau = (t - 0.001) / 0.999
    assert abs(tau.mean().item() - 0.6) < 0.01  # Beta(1.5, 1) mean 0.6
    t2 = sample_time(20000, 1.5, 1.0)
    assert abs(t2.mean().item() - (0.999 * 0.6 + 0.001)) < 0.01


def test_linear_path_and_velocity_target():
    x0, eps = torch.randn(5, 12), torch.randn(5, 12)
    assert torch.allclose(interpolate(x0, eps, torch.ones(5)), eps)
    assert torch.allclose(interpolate(x0, eps, torch.zeros(5)), x0)
    t = torch.rand(5)
    dt = 1e-3
    num = (interpolate(x0, eps, t + dt) - interpolate(x0, eps, t)) / dt
    assert torch.allclose(num, velocity_target(x0, eps), atol=1e-2)


def test_euler_sampling_with_exact_velocity_recovers_data():
    x0 = torch.randn(4, 6)
    eps = torch.randn(4, 6)
    out = euler_sample(lambda x, t: eps - x0, eps, steps=8)  # the true (constant) velocity of the linear path
    assert out.shape == (4, 6) and torch.allclose(out, x0, atol=1e-5)


def test_sinusoidal_embedding():
    e = sinusoidal_time_embedding(torch.tensor([0.0, 0.5, 1.0]), 16, 4e-3, 4.0)
    assert e.shape == (3, 16) and e.dtype == torch.float32
    assert torch.allclose(e[0, :8], torch.zeros(8)) and torch.allclose(e[0, 8:], torch.ones(8))


def test_nearest_codes():
    cb = torch.eye(4)
    v = torch.tensor([[[0.9, 0.1, 0, 0], [0, 0, 0.2, 1.1]]])
    assert nearest_codes(v, cb).tolist() == [[0, 3]]


@pytest.mark.parametrize("mode", ["latent_flow", "codes", "multitask"])
def test_heads_forward_backward(tiny_backbone, mode):
    kw = {"action_dim": 2} if mode == "multitask" else {}
    pol, lab = _policy(mode, backbone=tiny_backbone, **kw)
    frames = torch.randint(0, 255, (3, 3, 2, 48, 80), dtype=torch.uint8)
    codes, vecs = lab.label(frames)
    pooled = pol.encode(**pol.inputs(frames, ["move up", "push left", ""]))
    assert pooled.shape == (3, pol.hidden_size)
    if mode == "codes":
        assert pol.flow_head is None and pol.code_head(pooled).shape == (3, 4, 8)
        loss = torch.nn.functional.cross_entropy(pol.code_head(pooled).reshape(-1, 8), codes.reshape(-1))
    else:
        loss = pol.flow_loss(pooled, vecs)
        s = pol.sample_latents(pooled.detach(), generator=torch.Generator().manual_seed(0))
        assert s.shape == (3, 4, 8) and pol.decode_codes(s).shape == (3, 4)
    if mode == "multitask":
        a = pol.action_head(pooled)
        loss = loss + action_mse(a, torch.zeros(3, 5), torch.tensor([2, 1, 2]))
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in pol.vlm.parameters())


def test_standardisation_round_trip(tiny_backbone):
    pol, lab = _policy(backbone=tiny_backbone)
    v = lab.codebook[torch.tensor([[0, 1, 2, 3]])]
    assert torch.allclose(pol.unstandardize(pol.standardize(v)), v, atol=1e-5)


def test_action_mse_masks_padding_and_checks_width():
    pred = torch.zeros(2, 3)
    tgt = torch.tensor([[1.0, 1.0, 100.0, 5.0], [1.0, 100.0, 100.0, 5.0]])
    assert action_mse(pred, tgt, torch.tensor([2, 1])).item() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="action_dim"):
        action_mse(torch.zeros(2, 5), torch.zeros(2, 3))


def test_config_rejects_bad_policy_values():
    with pytest.raises(ConfigError, match="model.policy.mode"):
        load(overrides=["model.policy.mode=flow"])
    with pytest.raises(ConfigError, match="action_dim"):
        load(overrides=["model.policy.mode=multitask"])
    with pytest.raises(ConfigError, match="hub id"):
        load(overrides=["model.policy.backbone=HuggingFaceTB"])


def test_missing_local_backbone_dir_fails_without_network(tmp_path):
    from hlrp_core.models.policy import build_backbone

    cfg = load(overrides=[f"model.policy.backbone={tmp_path}/nope"])
    with pytest.raises(FileNotFoundError, match="never downloads"):
        build_backbone(cfg.model.policy)


def test_code_accuracy_stats_and_wilson():
    gt = np.array([[0, 1]] * 60 + [[1, 1]] * 40)
    st = ST.code_accuracy_stats(gt, gt.copy(), 4)
    assert st["val/token_accuracy"] == 1.0 and st["val/sequence_accuracy"] == 1.0
    assert st["val/token_accuracy_majority_baseline"] == pytest.approx((0.6 + 1.0) / 2)
    lo, hi = wilson_interval(24, 48)
    assert hi - 0.5 == pytest.approx(0.138, abs=0.005) and lo < 0.5 < hi
    mix = ST.dataset_mix_stats(["a", "a", "b", "c"])
    assert mix["val/dataset_mix_unique"] == 3 and mix["val/dataset_mix_top1_frac"] == 0.5
    assert 0 < mix["val/dataset_mix_entropy_norm"] < 1 and mix["val/dataset_mix_frac_b"] == 0.25
    assert ST.batch_mix_line("Train", 5, ["b", "a", "a"]) == "[Train][BatchMix] step=5 a=2 b=1"
    vs = ST.vector_stats(np.ones((4, 3)), np.ones((4, 3)), "v/")
    assert vs["v/mse"] == 0 and vs["v/cosine_mean"] == pytest.approx(1.0)


def test_artifact_round_trip_and_mismatch(tmp_path, tiny_backbone):
    pol, lab = _policy(backbone=tiny_backbone)
    path = PA.export_stage2_artifact(pol, lab.identity, tmp_path, step=7)
    assert path == tmp_path / "artifacts" / "stage2_artifact.pt"
    obj = PA.load_stage2_artifact(path, pol, lab.identity)
    assert obj["manifest"]["source_global_step"] == 7 and obj["manifest"]["laq"]["K"] == 8
    other, _ = _policy(backbone=tiny_backbone, flow_steps=4, min_period=0.01)
    with pytest.raises(PA.Stage2ArtifactError) as e:
        PA.load_stage2_artifact(path, other, {**lab.identity, "hash": "different"})
    msg = str(e.value)
    assert "flow_steps" in msg and "min_period" in msg and "laq.hash" in msg and "3 mismatches" in msg
    with pytest.raises(FileNotFoundError):
        PA.read_stage2_artifact(tmp_path / "none.pt")
    torch.save({"schema_version": "smolvla_shared.v1", "manifest": {}, "state_dict": {}}, tmp_path / "old.pt")
    with pytest.raises(PA.Stage2ArtifactError, match="unknown"):
        PA.read_stage2_artifact(tmp_path / "old.pt")


def test_state_dict_diff_lists_keys_and_shapes():
    a = {"x": torch.zeros(2, 3), "y": torch.zeros(1)}
    b = {"x": torch.zeros(2, 4), "z": torch.zeros(1)}
    d = PA.state_dict_diff(a, b)
    assert "1 missing keys: z" in d and "1 unexpected keys: y" in d and "(2, 3) vs model (2, 4)" in d
    assert PA.state_dict_diff(a, a) == ""
    assert math.isfinite(1.0)
