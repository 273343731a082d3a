"""Stage-1 LAQ unit tests: shapes, quantizers, dead-code replacement, optimizer groups, schedule, artifact manifest."""

from __future__ import annotations

import math

import pytest
import torch

from hlrp_core.config import ConfigError, load
from hlrp_core.models.laq import FSQ, NSVQ, VQEMA, LAQConfig, LAQModel, schedule_fires
from hlrp_core.training.laq.artifact import ArtifactError, load_laq_artifact, save_laq_artifact
from hlrp_core.training.optim import lr_lambda, param_groups

TINY = dict(dim=32, spatial_depth=1, temporal_depth=1, decoder_depth=1, code_dim=8)


def _clip(b=4, size=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (b, 3, 2, size, size), dtype=torch.uint8, generator=g)


@pytest.mark.parametrize("quantizer,S,K", [("nsvq", 4, 8), ("nsvq", 1, 4096), ("nsvq", 2, 16),
                                           ("vq_ema", 4, 8), ("fsq", 1, 4096), ("fsq", 4, 8)])
def test_shapes_and_index_range(quantizer, S, K):
    torch.manual_seed(0)
    model = LAQModel(LAQConfig(**TINY, quantizer=quantizer, code_seq_len=S, codebook_size=K))
    torch.nn.init.normal_(model.to_pixels.weight, std=0.02)  # the residual head starts at 0 (no encoder grad yet)
    out = model(_clip())
    assert out.codes.shape == (4, S) and out.codes.dtype == torch.int64
    assert int(out.codes.min()) >= 0 and int(out.codes.max()) < K
    assert out.vectors.shape == (4, S, 8) and out.latents.shape == (4, S, 8)
    assert out.recon.shape == (4, 3, 64, 64)
    out.loss.backward()
    assert model.to_code.weight.grad is not None and model.to_code.weight.grad.abs().sum() > 0
    model.eval()
    codes, vectors = model.label(_clip())
    assert codes.shape == (4, S) and vectors.shape == (4, S, 8)
    assert torch.equal(codes, model.label(_clip())[0])  # deterministic at inference


def test_forced_codes_change_reconstruction():
    torch.manual_seed(0)
    model = LAQModel(LAQConfig(**TINY, code_seq_len=1, codebook_size=8, decoder_residual=False)).eval()
    x = _clip()
    a = model(x, codes=torch.zeros(4, 1, dtype=torch.long)).recon
    b = model(x, codes=torch.full((4, 1), 3, dtype=torch.long)).recon
    assert not torch.allclose(a, b)


def test_grid_must_be_8x8():
    with pytest.raises(ConfigError, match="model.patch_size=4"):
        LAQConfig(image_size=32, patch_size=8)


def test_config_fields_are_top_level_overrides():
    cfg = load(overrides=["model.dim=48", "model.code_seq_len=1", "model.codebook_size=4096", "model.quantizer=fsq"])
    c = LAQConfig.from_config(cfg)
    assert (c.dim, c.code_seq_len, c.codebook_size, c.quantizer) == (48, 1, 4096, "fsq")
    with pytest.raises(ConfigError, match="model.code_seq_len"):
        load(overrides=["model.code_seq_len=3"])
    with pytest.raises(ConfigError, match="model.quantizer"):
        load(overrides=["model.quantizer=vqq"])


def test_nsvq_training_noise_and_eval_exact():
    torch.manual_seed(0)
    q = NSVQ(4, 8, schedule=[], data_init=False)
    x = torch.randn(16, 1, 4)
    q.train()
    out = q(x)
    # the substituted noise has exactly the norm of the quantization residual
    assert torch.allclose((out.z - x).norm(dim=-1), (x - out.vectors).norm(dim=-1), atol=1e-5)
    q.eval()
    out = q(x)
    assert torch.equal(out.z, out.vectors)


def test_nsvq_dead_code_replacement_relative_threshold_and_deferral():
    torch.manual_seed(0)
    q = NSVQ(4, 8, schedule=[[10, 100]], threshold=0.1, min_window_factor=10, data_init=False)
    assert schedule_fires([[10, 100]], 10) and not schedule_fires([[10, 100]], 15)
    assert not schedule_fires([[10, 100]], 100)
    q.window_counts.zero_()
    q.window_counts[:2] = 20.0  # 40 assignments < 10 x K = 80: deferred, window kept
    ev = q.maybe_replace(10)
    assert ev["deferred"] == 1 and ev["replaced"] == 0 and float(q.window_counts.sum()) == 40
    q.window_counts[:2] = 100.0  # 200 assignments; mean 25, cut 2.5: the 6 unused codes are dead
    before = q.embed.detach().clone()
    ev = q.maybe_replace(20)
    assert ev["deferred"] == 0 and ev["replaced"] == 6 and ev["used"] == 2
    changed = (q.embed.detach() != before).any(1)
    assert changed[2:].all() and not changed[:2].any()
    # replaced entries are near-copies of used ones
    d = torch.cdist(q.embed.detach()[2:], before[:2]).min(1).values
    assert (d < 0.2).all()
    assert float(q.window_counts.sum()) == 0  # window reset
    assert q.maybe_replace(15) is None  # off-schedule


def test_vq_ema_kmeans_init_and_expiry():
    torch.manual_seed(0)
    q = VQEMA(4, 8, decay=0.5, dead_code_threshold=1.0)
    x = torch.randn(64, 1, 4)
    q.train()
    q(x)
    assert bool(q.initted)
    far = torch.randn(64, 1, 4) * 0.01 + 5.0  # all mass on one far cluster: the other codes decay and expire
    for _ in range(5):
        q(far)
    ev = q.maybe_replace(5)
    assert ev is not None and ev["replaced"] > 0
    assert (q.embed - 5.0).abs().mean() < 1.0  # re-seeded from current-batch encoder outputs


def test_fsq_codes_roundtrip():
    q = FSQ(8, [8, 8, 8, 8])
    x = torch.randn(32, 1, 8)
    out = q(x)
    assert q.codebook_size == 4096
    assert torch.allclose(q.lookup(out.codes), out.z, atol=1e-5)


def test_param_groups_decay_only_matrices():
    model = LAQModel(LAQConfig(**TINY))
    groups = param_groups(model, 0.01)
    decay, no_decay = groups
    assert decay["weight_decay"] == 0.01 and no_decay["weight_decay"] == 0.0
    assert all(p.ndim >= 2 for p in decay["params"]) and all(p.ndim < 2 for p in no_decay["params"])
    assert sum(p.numel() for g in groups for p in g["params"]) == sum(p.numel() for p in model.parameters())
    assert any(p is model.to_code.bias for p in no_decay["params"])


def test_lr_schedule_warmup_then_cosine_to_floor():
    assert lr_lambda(0, 10, 100, 0.1) == pytest.approx(0.1)
    assert lr_lambda(9, 10, 100, 0.1) == pytest.approx(1.0)
    assert lr_lambda(10, 10, 100, 0.1) == pytest.approx(1.0)
    assert lr_lambda(55, 10, 100, 0.1) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert lr_lambda(100, 10, 100, 0.1) == pytest.approx(0.1)


def test_artifact_roundtrip_and_manifest_mismatches(tmp_path):
    torch.manual_seed(0)
    model = LAQModel(LAQConfig(**TINY, code_seq_len=4, codebook_size=8)).eval()
    path = save_laq_artifact(model, tmp_path / "artifacts" / "laq_artifact.pt", source_run_dir="r", global_step=7)
    loaded, manifest = load_laq_artifact(tmp_path)  # a run directory is accepted
    assert manifest["codebook_size"] == 8 and manifest["source_global_step"] == 7
    x = _clip()
    assert torch.equal(model.label(x)[0], loaded.label(x)[0])
    with pytest.raises(ArtifactError) as e:
        load_laq_artifact(path, expect={"codebook_size": 4096, "code_seq_len": 1, "dim": 32})
    msg = str(e.value)
    assert "codebook_size: artifact has 8, expected 4096" in msg and "code_seq_len: artifact has 4, expected 1" in msg
    assert "dim:" not in msg  # matching keys are not reported
    payload = torch.load(path, weights_only=True)
    payload["schema_version"] = "hlrp.laq_artifact.v0"
    torch.save(payload, tmp_path / "old.pt")
    with pytest.raises(ArtifactError, match="schema_version"):
        load_laq_artifact(tmp_path / "old.pt")
    payload["schema_version"] = "hlrp.laq_artifact.v1"
    del payload["manifest"]["code_dim"]
    payload["state_dict"]["model_extra"] = torch.zeros(1)
    torch.save(payload, tmp_path / "bad.pt")
    with pytest.raises(ArtifactError, match="code_dim"):
        load_laq_artifact(tmp_path / "bad.pt")
    with pytest.raises(FileNotFoundError):
        load_laq_artifact(tmp_path / "missing.pt")


def test_motion_weight_and_maxpool_reducer():
    torch.manual_seed(0)
    x = _clip()
    plain = LAQModel(LAQConfig(**TINY, reducer="maxpool", code_seq_len=4))
    weighted = LAQModel(LAQConfig(**TINY, reducer="maxpool", code_seq_len=4, motion_weight=10.0))
    weighted.load_state_dict(plain.state_dict())
    plain.eval(), weighted.eval()
    a, b = plain(x), weighted(x)
    assert a.codes.shape == (4, 4)
    assert torch.allclose(a.recon_loss, b.recon_loss)  # the reported MSE stays plain
    assert float(b.loss) > float(a.loss)  # random frames: every pixel "moves", so the weighted loss is larger


def test_ram_guard_stops_cleanly_with_reason():
    from types import SimpleNamespace

    from hlrp_core.training.callbacks import RamGuardCallback

    guard = RamGuardCallback(None, min_available_mb=10 ** 9)
    trainer = SimpleNamespace(global_step=3, should_stop=False)
    guard.on_train_batch_end(trainer, None, None, None, 0)
    assert trainer.should_stop and "training.ram_guard.min_available_mb" in guard.stopped_reason
    off = RamGuardCallback(None, min_available_mb=0)
    trainer = SimpleNamespace(global_step=3, should_stop=False)
    off.on_train_batch_end(trainer, None, None, None, 0)
    assert not trainer.should_stop


# ------------------------------------------------------------------------------- shift-robust tokens (laq_tiny)
def _scene(offset: int, size: int = 64) -> torch.Tensor:
    """A grey table with a dark 6 px square that moves 3 px right between the frames; ``offset`` shifts the whole
    scene (both frames) by that many pixels right and down."""
    clip = torch.full((1, 3, 2, size, size), 0.7)
    for t, dx in enumerate((0, 3)):
        y0, x0 = 20 + offset, 20 + offset + dx
        clip[0, :, t, y0:y0 + 6, x0:x0 + 6] = 0.1
    return clip


@pytest.mark.parametrize("image_size,patch", [(64, 8), (256, 32)])
def test_conv_patch_embed_shapes(image_size, patch):
    torch.manual_seed(0)
    model = LAQModel(LAQConfig(**TINY, image_size=image_size, patch_size=patch, patch_embed="conv"))
    tokens = model.patch_embed(torch.rand(2, 3, 2, image_size, image_size))
    assert tokens.shape == (2, 2, 8, 8, 32)
    torch.nn.init.normal_(model.to_pixels.weight, std=0.02)  # the residual head starts at 0 (no encoder grad yet)
    out = model(_clip(b=2, size=image_size))
    out.loss.backward()
    assert model.patch_embed.net[0].weight.grad.abs().sum() > 0  # the stem trains


def test_without_encoder_positions_the_latent_ignores_where_the_motion_happened():
    """No absolute positions + conv tokens + max-pool reducer: moving the whole scene by one patch (8 px) leaves the
    latent (almost) unchanged; with LAPA's learned positions it changes (the codes then partly encode "where").
    Not exactly equal: zero padding at the image border reaches the moving square through the PEG convs."""
    torch.manual_seed(0)
    kw = dict(TINY, patch_embed="conv", reducer="maxpool", code_seq_len=1)
    free = LAQModel(LAQConfig(**kw, encoder_pos_embed=False)).eval()
    assert free.pos_spatial is None
    with torch.no_grad():
        a, b = free.encode(_scene(0)), free.encode(_scene(8))
    torch.manual_seed(0)
    placed = LAQModel(LAQConfig(**kw, encoder_pos_embed=True)).eval()
    torch.nn.init.normal_(placed.pos_spatial, std=0.5)
    with torch.no_grad():
        pa, pb = placed.encode(_scene(0)), placed.encode(_scene(8))
    free_err, placed_err = float((a - b).norm() / a.norm()), float((pa - pb).norm() / pa.norm())
    assert free_err < 0.05 and free_err < 0.2 * placed_err, (free_err, placed_err)


def test_latent_batch_norm_standardises_the_latents_in_training():
    torch.manual_seed(0)
    model = LAQModel(LAQConfig(**TINY, latent_norm="batch", code_seq_len=1))
    lat = model.encode(torch.rand(64, 3, 2, 64, 64))[:, 0]                          # (64, D)
    assert torch.allclose(lat.mean(0), torch.zeros(8), atol=1e-4)
    assert torch.allclose(lat.std(0, unbiased=False), torch.ones(8), atol=1e-2)


@pytest.mark.parametrize("source", ["latents", "codes"])
def test_nsvq_dead_codes_restart_on_the_data_with_replacement_source_latents(source):
    """Latents far from the codebook (as a conv stem's, whose spread is below the LAPA noise of 0.02): the ``latents``
    source re-seeds dead codes on the data; the ``codes`` source (LAPA) leaves them next to the old codes."""
    torch.manual_seed(0)
    q = NSVQ(4, 8, schedule=[[10, 100]], threshold=0.1, min_window_factor=1.0, data_init=False, reseed=source).train()
    x = 50.0 + 0.003 * torch.randn(32, 1, 4)                                         # one tight far cluster
    for _ in range(10):
        q(x)
    before = q.embed.detach().clone()
    ev = q.maybe_replace(10)
    assert ev["replaced"] == 7 and ev["used"] == 1
    moved = (q.embed.detach() - before).norm(dim=-1) > 0
    dist_to_data = torch.cdist(q.embed.detach()[moved], x[:, 0]).min(dim=1).values
    if source == "latents":
        assert float(dist_to_data.max()) < 0.01
    else:
        assert float(dist_to_data.min()) > 10.0


def test_latent_batch_l2_puts_every_latent_on_the_sqrt_d_sphere():
    """``batch_l2``: BatchNorm centring, then each latent scaled to norm sqrt(D): a latent's length (how much of the
    scene moved) no longer separates items that moved the same way."""
    torch.manual_seed(0)
    model = LAQModel(LAQConfig(**TINY, latent_norm="batch_l2", code_seq_len=2))
    lat = model.encode(torch.rand(32, 3, 2, 64, 64))                                 # (32, 2, D)
    assert torch.allclose(lat.norm(dim=-1), torch.full((32, 2), 8 ** 0.5), atol=1e-4)
    raw = model.encode(torch.rand(32, 3, 2, 64, 64), normalise=False)
    assert not torch.allclose(raw.norm(dim=-1), torch.full((32, 2), 8 ** 0.5), atol=1e-2)
    with pytest.raises(ConfigError, match="model.latent_norm"):
        load(overrides=["model.latent_norm=l2"])


def _clusters(n_per: int, k: int, dim: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    centres = 3.0 * torch.eye(dim)[:k]                                                 # (k, D), far apart
    labels = torch.arange(k).repeat(n_per)                                             # (k*n,)
    return centres[labels] + 0.05 * torch.randn(len(labels), dim, generator=g), labels


def test_nsvq_refit_places_one_code_per_cluster_from_the_recent_window():
    """A codebook stuck with two codes on one cluster and one code between two others (NSVQ's online k-means
    local minimum): the refit at its step puts exactly one code on each cluster, from the last ``refit_window``
    batches only, and is reported as a refit (not a dead-code replacement)."""
    torch.manual_seed(0)
    q = NSVQ(8, 4, schedule=[[5, 100]], min_window_factor=0, data_init=False, reseed="latents",
             refit_steps=[30], refit_window=3).train()
    x, labels = _clusters(16, 4, 8, seed=0)                                            # (64, 8)
    bad = torch.stack([x[labels == 0].mean(0), x[labels == 0].mean(0) + 0.1,
                       (x[labels == 1].mean(0) + x[labels == 2].mean(0)) / 2, x[labels == 3].mean(0)])
    q.embed.data.copy_(bad)
    for _ in range(5):                                                                  # 5 batches of 64
        q(x[torch.randperm(len(x))][:, None, :])
    assert q.recent.shape == (3 * 64, 8)                                                # the window, not all five
    before = q.assign(x[:, None, :]).ravel()
    assert len(torch.unique(before[labels == 1])) == 1 and int(before[labels == 1][0]) == int(before[labels == 2][0])
    ev = q.maybe_replace(30)
    assert ev["refit"] == 1 and ev["deferred"] == 0 and ev["replaced"] == 0 and ev["inertia"] < 0.05
    after = q.assign(x[:, None, :]).ravel()
    per_cluster = [set(after[labels == c].tolist()) for c in range(4)]
    assert all(len(s) == 1 for s in per_cluster) and len(set().union(*per_cluster)) == 4, per_cluster
    assert float(q.window_counts.sum()) == 0
    assert q.maybe_replace(31) is None                                                 # neither schedule fires


def test_nsvq_refit_is_skipped_with_too_few_latents_and_needs_nsvq():
    q = NSVQ(8, 16, schedule=[], data_init=False, refit_steps=[10], refit_window=1).train()
    q(torch.randn(32, 1, 8))                                                            # 32 < 10 x 16 latents
    before = q.embed.detach().clone()
    ev = q.maybe_replace(10)
    assert ev["refit"] == 0 and ev["deferred"] == 1 and torch.equal(q.embed.detach(), before)
    with pytest.raises(ConfigError, match=r"model.codebook_refit_steps=\[500\] needs model.quantizer=nsvq"):
        load(overrides=["model.quantizer=vq_ema", "model.codebook_refit_steps=[500]"])
    with pytest.raises(ConfigError, match="model.codebook_refit_window"):
        load(overrides=["model.codebook_refit_window=0"])
