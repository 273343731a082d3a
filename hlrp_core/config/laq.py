"""The LAQ architecture and its training-time knobs: one torch-free dataclass, the one home of these defaults.

``ModelConfig`` (the ``model.*`` section of the run config, so ``model.dim=...`` works) and the model's own
``LAQConfig`` (``hlrp_core/models/laq/configuration.py``: what checkpoints and artifacts record) both inherit it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import check, check_choice

#: LAQ quantizers selectable with ``model.quantizer``.
LAQ_QUANTIZERS = ("nsvq", "vq_ema", "fsq")


@dataclass
class LAQFields:
    """LAQ (Stage 1) architecture and quantizer knobs.

    Args:
        patch_size: LAQ pixel patch side. ``data.preprocess.image_size / patch_size`` must be 8 (the 8x8 token grid
            the conv reducer needs): 64 px -> 8, 256 px -> 32 (LAPA).
        patch_embed: LAQ encoder tokeniser: ``linear`` (LAPA: LayerNorm -> Linear on each flattened patch) or
            ``conv`` (two 3x3 convs at pixel resolution with max-pools, so a token is the max over its patch of
            shift-equivariant features). With ``linear`` the latent follows the moving object's position modulo the
            patch size and the codes split on that instead of the motion (laq_tiny, 1500 steps: NMI 0.34 / probe
            R2 0.58 linear; 0.63 / 0.94 conv with the rest of laq_tiny). The
            decoder always uses the linear embedding of o_t.
        patch_embed_channels: Channels of the two convs of ``patch_embed=conv`` (cost grows with H x W x c1 x c2).
        encoder_pos_embed: Add learned absolute position embeddings to the encoder tokens (LAPA: true). false keeps
            only the PEG's relative positions, so with ``reducer=maxpool`` the latent cannot depend on where the
            motion happened (only what it was).
        dim: LAQ transformer width (LAPA 1024; tiny 32-64).
        heads: Attention heads of every LAQ block.
        dim_head: Width per head (LAPA 64; tiny 16).
        spatial_depth: Encoder spatial blocks (over the 64 tokens of each frame).
        temporal_depth: Encoder temporal blocks (over T at each grid cell, causal in time).
        decoder_depth: Pixel-decoder blocks (self-attention over o_t's patches + cross-attention to the codes).
        ff_mult: GEGLU feed-forward expansion.
        attn_num_null_kv: Learned null key/value slots per attention (predecessor: 2).
        code_dim: D, width of one code vector (LAPA 32).
        code_seq_len: S, codes per transition: 1, 2 or 4 (8x8 grid). 4x8 = LAPA; 1x4096 = the next cluster run.
        codebook_size: K, codes per position (8 ... 4096). For ``fsq`` it must equal the product of ``fsq_levels``.
        quantizer: ``nsvq`` (LAPA/predecessor parity), ``vq_ema`` (EMA codebook, k-means init on the first batch,
            dead-code expiry from the current batch; collapse-resistant) or ``fsq`` (no codebook, cannot collapse).
        reducer: How the D x 8 x 8 delta becomes S code vectors: ``conv`` (LAPA: conv3 s2, ReLU, a position-specific
            last conv) or ``maxpool`` (conv3 + conv1, adaptive max-pool to the S layout; translation-invariant, trains
            far faster on small data).
        latent_norm: ``none`` (LAPA), ``batch``: BatchNorm (no affine; running statistics at eval) over the D
            channels of the reduced latents before quantizing, or ``batch_l2``: the same, then every latent vector
            scaled to norm sqrt(D) (codes compare directions only). With ``patch_embed=conv`` the latents share a large
            common offset and a spread ~1% of it; a small collective drift then sends every item to one code
            (``batch`` fixes that). ``batch_l2`` also drops the latent's length, which varied with how much of the
            scene moved (a pushed block, the step size), so the 8 motion directions form tight clusters: laq_tiny at
            1000 steps NMI 0.80 vs 0.56, nearest-class-centroid NMI 0.88 vs 0.65 (same harness, same data).
        decoder_residual: Decoder predicts ``o_t + f(o_t, codes)`` (true) or pixels directly (false, LAPA). The
            residual form trains in minutes on CPU; delta-PSNR still proves the codes are used (docs/METRICS.md §5).
        decoder_cond_add: Also add a projection of the (flattened) action tokens to every decoder patch token, beside
            the cross-attention (a direct path for the code; the decoder learns to use it in hundreds of steps on
            CPU instead of thousands). false = LAPA's cross-attention only.
        motion_weight: Extra pixel-loss weight on pixels that change between o_t and o_t+k (> 0.05 in any channel):
            loss = mean((1 + w * moved) * err^2). 0 = LAPA's plain MSE. Moving pixels are ~2% of a tabletop frame, so
            w ~ 10 makes the motion dominate the gradient. ``val/recon_mse`` is always the plain MSE.
        codebook_init: NSVQ codebook start: ``data`` (re-seed from the first training batch's latents, so the
            substituted noise starts at the latents' scale; trains much faster) or ``normal`` (N(0,1), LAPA parity).
        replacement_schedule: NSVQ dead-code replacement ``[[interval, until], ...]``: an event fires when
            ``step < until and step % interval == 0`` (docs/MODELS.md 1.6). Empty = off (a warning; never ship NSVQ so).
        replacement_threshold: A code is dead when its window count < threshold x (window total / K).
        replacement_source: Where an NSVQ dead code restarts: ``codes`` (LAPA: a random used code + 0.02 N(0, 1))
            or ``latents`` (a random latent of the last training batch + 2% of their spread: lands on the data
            whatever its scale; needed with ``patch_embed=conv``, whose latents start 5x narrower than 0.02).
        codebook_refit_steps: NSVQ: steps at which the codebook is refitted by k-means on the latents of the last
            ``codebook_refit_window`` training batches (the best of Lloyd from the current codes and 10 k-means++
            seeds, so a refit never quantizes those latents worse); logged as ``[Codebook] step=N refit``. NSVQ's own
            code updates are online k-means from a random start and can settle with one code between two actions
            and two codes on one (laq_tiny: NMI 0.79 at 1500 steps). Refit once the latents have structure (from a
            third of the run), not at step 0. Empty = off (LAPA).
        codebook_refit_window: Training batches of latents a refit clusters (it needs >= 10 x K latents; fewer:
            the refit is skipped and logged as deferred). The same buffer feeds ``replacement_source=latents``.
        replacement_min_window_factor: An event is deferred (logged, window kept) until the window holds
            >= factor x K assignments, so large codebooks are not judged on too few samples (docs/MODELS.md 1.6 rule 1).
        ema_decay: ``vq_ema`` EMA decay of cluster sizes and sums (lucidrains default 0.8; LAPO 0.999).
        commitment_weight: ``vq_ema`` commitment loss weight (0.25).
        dead_code_threshold: ``vq_ema``: codes whose EMA cluster size falls below this are re-seeded from current
            batch encoder outputs (lucidrains ``threshold_ema_dead_code``; 0 = off).
        fsq_levels: ``fsq`` levels per digit; empty = derived from ``codebook_size`` (powers of 2: 8-level digits
            first, e.g. 4096 -> [8,8,8,8], 8 -> [8]).
    """

    patch_size: int = 8
    patch_embed: str = "linear"
    patch_embed_channels: list[int] = field(default_factory=lambda: [16, 32])
    encoder_pos_embed: bool = True
    dim: int = 64
    heads: int = 2
    dim_head: int = 16
    spatial_depth: int = 2
    temporal_depth: int = 2
    decoder_depth: int = 2
    ff_mult: int = 2
    attn_num_null_kv: int = 2
    code_dim: int = 8
    code_seq_len: int = 4
    codebook_size: int = 8
    quantizer: str = "nsvq"
    reducer: str = "conv"
    latent_norm: str = "none"
    decoder_residual: bool = True
    decoder_cond_add: bool = True
    motion_weight: float = 0.0
    codebook_init: str = "data"
    replacement_schedule: list[list[int]] = field(
        default_factory=lambda: [[10, 100], [100, 1000], [500, 5000]])
    replacement_threshold: float = 0.1
    replacement_min_window_factor: float = 10.0
    replacement_source: str = "codes"
    codebook_refit_steps: list[int] = field(default_factory=list)
    codebook_refit_window: int = 16
    ema_decay: float = 0.8
    commitment_weight: float = 0.25
    dead_code_threshold: float = 2.0
    fsq_levels: list[int] = field(default_factory=list)

    def validate_laq(self, problems: list[str]) -> None:
        """LAQ architecture rules (the 8x8 grid vs ``data.preprocess.image_size`` is checked when the model is built)."""
        check_choice(problems, "model.quantizer", self.quantizer, list(LAQ_QUANTIZERS))
        check_choice(problems, "model.reducer", self.reducer, ["conv", "maxpool"])
        check_choice(problems, "model.patch_embed", self.patch_embed, ["linear", "conv"])
        check_choice(problems, "model.latent_norm", self.latent_norm, ["none", "batch", "batch_l2"])
        check_choice(problems, "model.replacement_source", self.replacement_source, ["codes", "latents"])
        check(problems, not self.codebook_refit_steps or self.quantizer == "nsvq",
              f"model.codebook_refit_steps={list(self.codebook_refit_steps)} needs model.quantizer=nsvq (got "
              f"{self.quantizer}); set model.codebook_refit_steps=[] or model.quantizer=nsvq")
        check(problems, all(int(v) >= 1 for v in self.codebook_refit_steps),
              f"model.codebook_refit_steps={list(self.codebook_refit_steps)} must be steps >= 1, e.g. [500, 1000]")
        check(problems, self.codebook_refit_window >= 1,
              f"model.codebook_refit_window={self.codebook_refit_window} must be >= 1 (training batches)")
        check(problems, len(self.patch_embed_channels) == 2 and all(int(c) >= 1 for c in self.patch_embed_channels),
              f"model.patch_embed_channels={list(self.patch_embed_channels)} must be two positive ints, e.g. [16, 32]")
        check(problems, self.patch_embed != "conv" or self.patch_size % 2 == 0,
              f"model.patch_embed=conv needs an even model.patch_size (got {self.patch_size})")
        check_choice(problems, "model.codebook_init", self.codebook_init, ["data", "normal"])
        check_choice(problems, "model.code_seq_len", self.code_seq_len, [1, 2, 4])
        check(problems, 2 <= self.codebook_size <= 65536,
              f"model.codebook_size={self.codebook_size} must be in [2, 65536] (8 ... 4096 in practice)")
        for key in ("dim", "heads", "dim_head", "code_dim", "patch_size", "ff_mult"):
            check(problems, getattr(self, key) >= 1, f"model.{key}={getattr(self, key)} must be >= 1")
        for pair in self.replacement_schedule:
            check(problems, len(pair) == 2 and pair[0] >= 1,
                  f"model.replacement_schedule entry {pair} must be [interval>=1, until], e.g. [[10,100],[100,1000]]")
        if self.quantizer == "fsq" and self.fsq_levels:
            prod = 1
            for lv in self.fsq_levels:
                prod *= lv
            check(problems, prod == self.codebook_size,
                  f"model.fsq_levels={self.fsq_levels} give {prod} codes but model.codebook_size="
                  f"{self.codebook_size}; set model.codebook_size={prod} or change the levels")
        if self.quantizer == "fsq" and not self.fsq_levels:
            k = self.codebook_size
            check(problems, k & (k - 1) == 0,
                  f"model.quantizer=fsq with model.codebook_size={k} (not a power of 2) needs explicit "
                  "model.fsq_levels, e.g. [7,5,5,5,5] for 4375")
