"""Multi-process training under a real SLURM (tests/slurm_fixture.py): a notebook-style run hands Stage-1 training to
``srun --ntasks-per-node=2 python -m hlrp_core.training.srun`` (Lightning DDP, 2 CPU ranks, gloo) via
``hlrp_core.cluster.srun_train``; metrics and checkpoints come back to the notebook's run directory."""

from __future__ import annotations

import csv
import json
import os
import re
import time

import pytest
import torch

import hlrp_core.runs as runs
from hlrp_core.cluster import srun_train

from slurm_fixture import FAST  # the slurm_cluster fixture comes from conftest.py (one session-wide cluster)

pytestmark = [pytest.mark.slurm, pytest.mark.integration]

STEPS, B, WORLD = 4, 8, 2


@pytest.fixture(scope="module")
def ddp_run(slurm_cluster, embedded_root, tmp_path_factory):  # noqa: F811
    saved = os.environ.get("HLRP_OUTPUT_ROOT")
    os.environ["HLRP_OUTPUT_ROOT"] = str(tmp_path_factory.mktemp("ddp-outputs"))
    try:
        cfg, run = runs.start("laq_tiny", [f"data.root={embedded_root}", f"training.max_steps={STEPS}",
                                           "training.validation.check_interval=2",
                                           "training.checkpoint.every_n_train_steps=2",
                                           f"data.loader.batch_size={B}", "training.validation.limit_batches=2",
                                           "data.adapter.threads=1",
                                           # a dead-code replacement event at step 2 (besides the data init at 0)
                                           "model.replacement_schedule=[[2,100]]",
                                           "model.replacement_min_window_factor=1.0",
                                           "model.replacement_threshold=0.9"], smoke=True)
        t0 = time.monotonic()
        result = srun_train(cfg, run, ntasks_per_node=WORLD, partition=FAST, time_limit="5", mem="4G",
                            cpus_per_task=1, timeout=240)
        result["wall_s"] = time.monotonic() - t0
        yield cfg, run, result
        run.finish({})
    finally:
        if saved is None:
            os.environ.pop("HLRP_OUTPUT_ROOT", None)
        else:
            os.environ["HLRP_OUTPUT_ROOT"] = saved


def test_two_ranks_trained_one_model_into_the_notebooks_run_dir(ddp_run):
    cfg, run, result = ddp_run
    print(f"srun_train: {result['seconds']} s ({result['command']})")
    assert result["returncode"] == 0
    m = json.loads((run.dir / "metrics.json").read_text())
    # both ranks took part: each trained every step on its own shard, and DDP kept their weights identical
    assert m["ddp/world_size"] == WORLD and m["ddp/ranks_reported"] == WORLD
    assert m["ddp/rank0_batches"] == m["ddp/rank1_batches"] == STEPS
    assert m["ddp/samples_total"] == STEPS * B * WORLD
    assert m["ddp/shard_overlap"] == 0 and m["ddp/shards_contiguous"] is True
    # DDP kept every gradient-trained weight identical on both ranks, and the quantizer's codebook (data init at
    # step 0, replacement at step 2, each rank on its own batch) was broadcast from rank 0 after every step
    print("params out of sync:", m["ddp/params_out_of_sync"], "of", m["ddp/params_total"],
          m["ddp/params_out_of_sync_names"])
    assert m["ddp/params_total"] > 10 and m["ddp/params_out_of_sync"] == 0, m["ddp/params_out_of_sync_names"]
    assert m["ddp/quantizer_state_equal"] is True
    assert m["ddp/rank0_quantizer_sha"] == m["ddp/rank1_quantizer_sha"] == m["ddp/quantizer_sha_rank0"]
    assert m["ddp/quantizer_syncs"] == STEPS + 1  # train start + every step
    # the broadcast did work: rank 1's own codebook (data-initialised from its batch at step 0) was replaced
    assert m["ddp/rank0_quantizer_diverged_steps"] == 0 and m["ddp/rank1_quantizer_diverged_steps"] >= 1
    assert "0" in str(m["ddp/rank1_quantizer_diverged_at"]).split(","), m["ddp/rank1_quantizer_diverged_at"]
    assert m["global_step"] == STEPS and "val/recon_mse" in m
    # rank 0 adopted the notebook's run: status untouched (the notebook finishes it), env.json says DDP
    assert runs.read_status(run.dir)[0] == runs.RUNNING
    env = json.loads((run.dir / "env.json").read_text())
    assert env["train"]["adopted"] is True and env["train"]["ddp"]["world_size"] == WORLD
    assert env["train"]["ddp"]["launcher"] == "srun" and env["train"]["slurm"]["SLURM_STEP_NUM_TASKS"] == "2"
    log = (run.dir / "unified.log").read_text()
    assert "[DDP] rank 0/2" in log and "[DDP] rank 1/2" in log
    events = [int(x) for x in re.findall(r"\[Codebook\] step=2 replaced=(\d+)", log)]
    assert events and events[0] > 0, "the replacement event at step 2 must re-seed codes (what the sync must cover)"
    assert "rank 1 quantizer sync" in log
    assert "rank 1 of 2" in (run.dir / "ranks" / "rank1.log").read_text()
    assert not (run.dir / "ranks" / "rank0.log").exists()  # rank 0 logs into unified.log


def test_checkpoint_holds_the_codebook_every_rank_ended_with(ddp_run):
    """rank 0 saved last.ckpt; its quantizer tensors hash to the digest both ranks reported at the end of training"""
    from hlrp_core.training.ddp_sync import state_digest
    from hlrp_core.training.laq.module import LAQModule

    cfg, run, _ = ddp_run
    m = json.loads((run.dir / "metrics.json").read_text())
    state = torch.load(run.dir / "ckpt" / "last.ckpt", map_location="cpu", weights_only=False)["state_dict"]
    module = LAQModule(cfg)
    module.load_state_dict(state)
    assert state_digest(module.model.quantizer)[:16] == m["ddp/rank1_quantizer_sha"]


def test_checkpoints_and_time_series_land_in_the_run_dir(ddp_run):
    cfg, run, _ = ddp_run
    ck = run.dir / "ckpt"
    assert {p.name for p in ck.iterdir()} >= {"last.ckpt", "step_000002.ckpt", "step_000004.ckpt"}
    state = torch.load(ck / "last.ckpt", map_location="cpu", weights_only=False)
    assert state["global_step"] == STEPS
    pos = state["hlrp"]["data_position"]
    assert pos["next_index"] == STEPS * B * WORLD and pos["world_size"] == WORLD  # resume continues the shared stream
    with open(run.dir / "timeseries.csv") as f:
        rows = list(csv.DictReader(f))
    assert rows and any(r.get("val/recon_mse") for r in rows)  # rank 0 wrote the CSV time series
    assert (run.dir / "artifacts" / "laq_artifact.pt").exists()
