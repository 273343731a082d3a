"""hlrp_core.training.ddp_sync on two real gloo processes (no SLURM): rank 0's quantizer state reaches rank 1."""

import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from hlrp_core.models.laq.quantizers import NSVQ, VQEMA
from hlrp_core.training.ddp_sync import broadcast_module_state, state_digest


def _worker(rank: int, port: int, out: dict) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        torch.manual_seed(rank)
        res = []
        for q in (NSVQ(8, 8, [[2, 100]]), VQEMA(8, 8)):
            q.train()
            q(torch.randn(4, 1, 8) + rank)  # data init / EMA update from this rank's own batch
            before = state_digest(q)
            changed = broadcast_module_state(q)
            res.append((before, state_digest(q), changed, bool(q.initted)))
        out[rank] = res
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_broadcast_makes_rank1_state_equal_to_rank0():
    with mp.Manager() as manager:
        out = manager.dict()
        mp.spawn(_worker, args=(_free_port(), out), nprocs=2, join=True)
        r0, r1 = out[0], out[1]
    for (b0, a0, c0, i0), (b1, a1, c1, i1) in zip(r0, r1):
        assert b0 != b1, "the two ranks' codebooks diverged from their own batches"
        assert a0 == a1 == b0, "after the broadcast both ranks hold rank 0's state"
        assert c0 == 0 and c1 > 0 and i0 and i1


def test_no_process_group_is_a_noop():
    q = NSVQ(8, 8, [[2, 100]])
    before = state_digest(q)
    assert broadcast_module_state(q) == 0 and state_digest(q) == before
