"""VQ-EMA under DDP: 2 CPU ranks (gloo) all-reduce the EMA counts and sums, so both ranks hold the same codebook and
it equals one process's codebook trained on the same global batches."""

from __future__ import annotations

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from hlrp_core.models.laq.quantizers import VQEMA

K, D, STEPS, PER_RANK = 8, 4, 4, 6


def _batches():
    g = torch.Generator().manual_seed(0)
    return [torch.randn(2 * PER_RANK, 3, D, generator=g) for _ in range(STEPS)]  # (global B, S, D) per step


def _fresh(initted: bool) -> VQEMA:
    torch.manual_seed(1)
    q = VQEMA(D, K, decay=0.8, dead_code_threshold=0.0)  # expiry re-seeds by a random draw: tested for equality only
    if initted:
        q.initted.fill_(True)
    return q.train()


def _rank(rank: int, world: int, init_file: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        torch.set_num_threads(1)
        for initted in (True, False):  # the EMA update alone, then with the distributed k-means init
            q = _fresh(initted)
            for b in _batches():
                q(b[rank * PER_RANK:(rank + 1) * PER_RANK])
            torch.save({"embed": q.embed.clone(), "cluster_size": q.cluster_size.clone()},
                       f"{out}.{int(initted)}.rank{rank}")
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not built into this torch")
def test_two_rank_vq_ema_matches_single_process(tmp_path):
    out = str(tmp_path / "q")
    mp.spawn(_rank, args=(2, str(tmp_path / "store"), out), nprocs=2, join=True)
    single = _fresh(True)
    for b in _batches():
        single(b)
    r0, r1 = (torch.load(f"{out}.1.rank{r}") for r in (0, 1))
    assert torch.equal(r0["embed"], r1["embed"]) and torch.equal(r0["cluster_size"], r1["cluster_size"])
    assert torch.allclose(r0["embed"], single.embed, atol=1e-5)
    assert torch.allclose(r0["cluster_size"], single.cluster_size, atol=1e-5)
    assert not torch.allclose(r0["embed"], _fresh(True).embed)  # the EMA did move the codebook
    i0, i1 = (torch.load(f"{out}.0.rank{r}") for r in (0, 1))
    assert torch.equal(i0["embed"], i1["embed"])  # k-means init from rank 0's draw, global counts
