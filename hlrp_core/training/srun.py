"""Training outside the notebook kernel: ``python -m hlrp_core.training.srun --run-dir DIR [--experiment NAME] [--smoke]
[--seed N] [KEY=VALUE ...]``.

Launched by ``srun --ntasks-per-node=N [--nodes=M]`` (see ``hlrp_core.cluster.ddp.srun_train``) every task runs this
module; Lightning DDP then uses ``SLURMEnvironment`` with ``strategy="ddp"``, ``devices`` = tasks per node and
``num_nodes`` = nodes (gloo on CPU, NCCL on GPU). Without srun it trains in one process, exactly like a notebook.

The run directory follows the run contract (``hlrp_core.runs``); only global rank 0 writes its files:

- ``DIR`` without ``config.yaml``: rank 0 creates the run (``runs.start``: config.yaml, params.yaml, env.json, status,
  unified.log) and marks it DONE / FAILED at the end.
- ``DIR`` with ``config.yaml`` (a notebook made the run, then handed training to srun): rank 0 *adopts* it, loading
  ``config.yaml`` (+ the ``KEY=VALUE`` overrides, if any), appending to ``unified.log`` and merging into
  ``metrics.json``; it leaves ``status`` to the notebook, which analyses the run afterwards and finishes it.

Other ranks load the same config from ``config.yaml`` (they wait for rank 0 to write it), write no run files (no
time series, checkpoints, artifact, predictions or figures), and log to ``DIR/ranks/rank<r>.log``. Rank 0 records
``ddp/*`` (world size, per-rank batches and samples, shard overlap, parameter agreement) into ``metrics.json`` and
``env.json`` (key ``train``) and logs one ``[DDP] rank r ...`` line per rank.

Under DDP the LAQ quantizer's parameters and buffers are broadcast from rank 0 after every training step
(``hlrp_core.training.ddp_sync.BroadcastModuleState``): DDP averages gradients but not the codebook's data init and
dead-code replacement, which each rank would otherwise do on its own batch. ``ddp/quantizer_state_equal`` and the
per-rank ``ddp/rank<r>_quantizer_sha`` record that the codebooks ended identical.

Stage 1 (``model.name=laq``) is supported; Stage 2 (``model.name=policy``) is not yet (see the error it raises).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import operator
import os
import socket
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Optional, Sequence

from .. import runs
from ..config import ConfigError, load_run
from ..config.loader import checked
from ..io import atomic_write_json, read_json

log = logging.getLogger("hlrp.train")
CONFIG_WAIT_S = 300.0


# ---------------------------------------------------------------- where am I
@dataclasses.dataclass
class DistInfo:
    """This process's place in a multi-process launch (srun, or torchrun-style ``RANK``/``WORLD_SIZE``)."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    ntasks_per_node: int = 1
    num_nodes: int = 1
    launcher: str = "none"

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _first_int(value: str, default: int = 1) -> int:
    """``SLURM_*`` task counts may read ``2`` or ``2(x3)``; take the leading number."""
    digits = ""
    for ch in str(value or ""):
        if not ch.isdigit():
            break
        digits += ch
    return int(digits) if digits else default


def dist_info(environ: Optional[dict] = None) -> DistInfo:
    """Read the launch from the environment. An srun *step* sets ``SLURM_STEP_NUM_TASKS`` (a batch script alone
    does not, so ``python -m hlrp_core.training.srun`` inside an sbatch job without srun trains in one process)."""
    env = os.environ if environ is None else environ
    if "SLURM_STEP_NUM_TASKS" in env and "SLURM_PROCID" in env:
        world = _first_int(env["SLURM_STEP_NUM_TASKS"])
        nodes = _first_int(env.get("SLURM_STEP_NUM_NODES") or env.get("SLURM_JOB_NUM_NODES") or "1")
        per_node = _first_int(env.get("SLURM_STEP_TASKS_PER_NODE") or env.get("SLURM_NTASKS_PER_NODE") or "",
                              default=max(1, world // max(1, nodes)))
        return DistInfo(int(env["SLURM_PROCID"]), int(env.get("SLURM_LOCALID", 0)), world, per_node, nodes, "srun")
    if "RANK" in env and "WORLD_SIZE" in env:
        world = int(env["WORLD_SIZE"])
        per_node = int(env.get("LOCAL_WORLD_SIZE", world))
        return DistInfo(int(env["RANK"]), int(env.get("LOCAL_RANK", 0)), world, per_node,
                        max(1, world // max(1, per_node)), "torchrun")
    return DistInfo()


# ---------------------------------------------------------------- the run object on non-zero ranks
class RankRun:
    """The run handle (``run_handle.RunHandle``) of a non-zero rank: the same ``dir`` (Lightning only writes
    checkpoints and the time series on rank 0), a logger into ``dir/ranks/rank<r>.log``, and no-op recording hooks."""

    def __init__(self, run_dir: Path, rank: int, level: str = "INFO"):
        self.dir, self.rank = Path(run_dir), rank
        self.log = logging.getLogger(f"hlrp.rank{rank}")
        self.log.setLevel(getattr(logging, level.upper(), logging.INFO))
        (self.dir / "ranks").mkdir(exist_ok=True)
        fh = logging.FileHandler(self.dir / "ranks" / f"rank{rank}.log")
        fh.setFormatter(logging.Formatter(f"%(asctime)s %(levelname)s [rank {rank}] %(name)s: %(message)s"))
        self.log.addHandler(fh)
        logging.getLogger().addHandler(fh)  # library logs (data loader, Lightning) of this rank go there too
        self.log.propagate = False

    @property
    def name(self) -> str:
        return self.dir.name

    def record(self, metrics: dict, final: bool = False) -> dict:
        return dict(metrics)

    def heartbeat(self) -> None:
        pass

    def save_figure(self, fig: Any, name: str, dpi: int = 100) -> None:
        return None

    def finish(self, metrics: Optional[dict] = None) -> dict:
        return dict(metrics or {})

    def fail(self, reason: str, step: Optional[int] = None) -> None:
        self.log.error("rank %d failed: %s", self.rank, reason)


# ---------------------------------------------------------------- config
def apply_overrides(cfg: Any, overrides: Sequence[str]) -> Any:
    """``KEY=VALUE`` strings on top of a loaded ``Config`` (typed merge; unknown keys raise ``ConfigError``)."""
    if not overrides:
        return cfg
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    bad = [o for o in overrides if "=" not in o]
    if bad:
        raise ConfigError([f"override {o!r}: expected KEY=VALUE" for o in bad])
    try:
        merged = OmegaConf.merge(OmegaConf.structured(cfg), OmegaConf.from_dotlist(list(overrides)))
    except OmegaConfBaseException as exc:
        raise ConfigError(f"overrides {list(overrides)}: {str(exc).splitlines()[0]}") from None
    return checked(OmegaConf.to_object(merged))


def _wait_for_config(run_dir: Path, timeout: float = CONFIG_WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while not (run_dir / runs.CONFIG).exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{run_dir / runs.CONFIG} did not appear within {timeout:.0f} s (rank 0 failed?)")
        time.sleep(0.2)


def adopt(run_dir: Path, overrides: Sequence[str] = ()) -> tuple[Any, runs.Run]:
    """Rank 0 on a run directory a notebook created: its config (+ overrides), a ``Run`` appending to its log."""
    cfg = apply_overrides(load_run(run_dir), overrides)
    logger = runs.attach_log(run_dir, cfg.logging.level)
    sampler = runs.MemorySampler(cfg.logging.memory_sample_interval_s, logging.getLogger("hlrp.mem")).start()
    run = runs.Run(run_dir, cfg, logger, sampler)
    logger.info("train: adopted run dir %s%s", run_dir, f" with overrides {list(overrides)}" if overrides else "")
    return cfg, run


def setup(args: argparse.Namespace, info: DistInfo) -> tuple[Any, Any, bool]:
    """(cfg, run, adopted). Rank 0 creates or adopts the run directory; other ranks wait for its config.yaml."""
    run_dir = Path(args.run_dir).expanduser().resolve()
    overrides = list(args.overrides)
    if info.rank == 0:
        if (run_dir / runs.CONFIG).exists():
            cfg, run = adopt(run_dir, overrides)
            return cfg, run, True
        cfg, run = runs.start(args.experiment, overrides, seed=args.seed, run_dir=str(run_dir), smoke=args.smoke)
        return cfg, run, False
    _wait_for_config(run_dir)
    cfg = apply_overrides(load_run(run_dir), overrides)  # rank 0's resolved config; overrides are idempotent
    # only rank 0 writes run files: the artifact, validation predictions and figures stay with it
    cfg.training.save_artifact = False
    cfg.training.validation.save_predictions = False
    cfg.training.validation.figures = False
    return cfg, RankRun(run_dir, info.rank, cfg.logging.level), (run_dir / runs.CONFIG).exists()


# ---------------------------------------------------------------- DDP bookkeeping
def ddp_trainer_overrides(cfg: Any, info: DistInfo) -> dict:
    """``L.Trainer`` arguments for this launch: DDP over the srun tasks, or nothing (build_trainer's defaults)."""
    if not info.distributed:
        return {}
    from lightning.pytorch.plugins.environments import LightningEnvironment, SLURMEnvironment

    from .trainer import resolve_accelerator

    env = SLURMEnvironment(auto_requeue=False) if info.launcher == "srun" else LightningEnvironment()
    return dict(accelerator=resolve_accelerator(cfg.training), strategy="ddp", devices=info.ntasks_per_node,
                num_nodes=info.num_nodes, plugins=[env])


def _report_callback(sync: Any = None, state_path: str = "model.quantizer"):
    import lightning as L
    import torch

    from .ddp_sync import state_digest

    class DDPReport(L.Callback):
        """Counts this rank's train batches and sample indices; at the end gathers every rank's report on all ranks
        (``self.reports``), including a checksum of the parameters (equal on every rank when DDP synchronised), the
        sha256 of the ``state_path`` submodule's parameters and buffers (the LAQ codebook state) and the counters of
        the ``sync`` callback (``BroadcastModuleState``), if any."""

        def __init__(self):
            self.batches, self.indices, self.reports = 0, [], []

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            self.batches += 1
            if isinstance(batch, dict) and "index" in batch:
                self.indices += [int(i) for i in torch.as_tensor(batch["index"]).reshape(-1).tolist()]

        def on_train_end(self, trainer, pl_module) -> None:
            with torch.no_grad():
                per_param = {n: float(p.detach().double().sum().item()) for n, p in pl_module.named_parameters()}
            checksum = float(sum(per_param.values()))
            try:
                state_sha = state_digest(operator.attrgetter(state_path)(pl_module))
            except AttributeError:
                state_sha = ""
            mine = {"rank": int(trainer.global_rank), "host": socket.gethostname(), "pid": os.getpid(),
                    "batches": self.batches, "samples": len(self.indices), "indices": self.indices,
                    "param_checksum": checksum, "param_checksums": per_param, "world_size": int(trainer.world_size),
                    "state_sha": state_sha, "sync": sync.report() if sync is not None else None}
            if trainer.world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
                out: list = [None] * trainer.world_size
                torch.distributed.all_gather_object(out, mine)
                self.reports = sorted(out, key=lambda r: r["rank"])
            else:
                self.reports = [mine]

    return DDPReport()


def summarise(reports: list[dict], info: DistInfo) -> dict:
    """Flat ``ddp/*`` scalars from the gathered per-rank reports."""
    sets = [set(r["indices"]) for r in reports]
    overlap = sum(len(a & b) for i, a in enumerate(sets) for b in sets[i + 1:])
    union = set().union(*sets) if sets else set()
    contiguous = bool(union) and max(union) - min(union) + 1 == len(union)
    sums = [r["param_checksum"] for r in reports]
    names = sorted(set().union(*[r.get("param_checksums", {}) for r in reports])) if reports else []
    ref = reports[0].get("param_checksums", {}) if reports else {}
    unsynced = [n for n in names if max(abs(r.get("param_checksums", {}).get(n, 0.0) - ref.get(n, 0.0))
                                        for r in reports) > 1e-6 * max(1.0, abs(ref.get(n, 0.0)))]
    out: dict[str, Any] = {
        "ddp/world_size": info.world_size, "ddp/num_nodes": info.num_nodes,
        "ddp/ntasks_per_node": info.ntasks_per_node, "ddp/ranks_reported": len(reports),
        "ddp/samples_total": sum(r["samples"] for r in reports), "ddp/shard_overlap": overlap,
        "ddp/shards_contiguous": contiguous,
        "ddp/param_checksum_max_diff": (max(sums) - min(sums)) if sums else 0.0,
        "ddp/hosts": ",".join(sorted({r["host"] for r in reports})),
        "ddp/params_total": len(names), "ddp/params_out_of_sync": len(unsynced),
        "ddp/params_out_of_sync_names": ",".join(unsynced[:20]),
    }
    shas = [r.get("state_sha", "") for r in reports]
    if any(shas):  # the quantizer (codebook) state: identical on every rank when BroadcastModuleState ran
        out["ddp/quantizer_state_equal"] = len(set(shas)) == 1
        out["ddp/quantizer_sha_rank0"] = shas[0][:16]
    syncs = [r.get("sync") for r in reports if r.get("sync")]
    if syncs:
        out["ddp/quantizer_syncs"] = syncs[0]["syncs"]
        out["ddp/quantizer_sync_s"] = max(s["seconds"] for s in syncs)
    for r in reports:
        out[f"ddp/rank{r['rank']}_batches"] = r["batches"]
        out[f"ddp/rank{r['rank']}_samples"] = r["samples"]
        if r.get("state_sha"):
            out[f"ddp/rank{r['rank']}_quantizer_sha"] = r["state_sha"][:16]
        if r.get("sync"):
            out[f"ddp/rank{r['rank']}_quantizer_diverged_steps"] = r["sync"]["changed_steps"]
            out[f"ddp/rank{r['rank']}_quantizer_diverged_at"] = ",".join(map(str, r["sync"]["changed_at"]))
    return out


def _record_env(run_dir: Path, info: DistInfo, adopted: bool, overrides: Sequence[str]) -> None:
    path = run_dir / runs.ENV
    env = read_json(path, default={}) or {}
    env["train"] = {"command": " ".join(sys.argv), "adopted": adopted, "overrides": list(overrides),
                    "ddp": dataclasses.asdict(info),
                    "slurm": {k: v for k, v in os.environ.items() if k.startswith("SLURM_") and k in (
                        "SLURM_JOB_ID", "SLURM_STEP_ID", "SLURM_STEP_NUM_TASKS", "SLURM_STEP_NUM_NODES",
                        "SLURM_STEP_TASKS_PER_NODE", "SLURM_NODELIST", "SLURM_JOB_PARTITION")},
                    "host": socket.gethostname(), "started": time.strftime("%Y-%m-%dT%H:%M:%S")}
    atomic_write_json(path, env)


# ---------------------------------------------------------------- entry point
def train(cfg: Any, run: Any, info: DistInfo) -> dict:
    """Run the configured stage with this launch's DDP settings; returns the stage's metrics (+ ``ddp/*``)."""
    name = cfg.model.name
    if name != "laq":
        raise ConfigError(f"model.name={name!r}: python -m hlrp_core.training.srun runs Stage 1 (model.name=laq) "
                          "only so far (Stage 2 under DDP is untested); train Stage 2 in the notebook (devices=1)")
    from .ddp_sync import BroadcastModuleState
    from .laq.fit import fit_laq

    # DDP does not synchronise the quantizer's data-dependent codebook init / dead-code replacement: rank 0's state
    # is broadcast after every step (hlrp_core/training/ddp_sync.py)
    sync = BroadcastModuleState("model.quantizer") if info.distributed else None
    report = _report_callback(sync, "model.quantizer")
    callbacks = [c for c in (sync, report) if c is not None]
    metrics = fit_laq(cfg, run, extra_callbacks=callbacks, **ddp_trainer_overrides(cfg, info))
    summary = summarise(report.reports, info)
    if summary["ddp/params_out_of_sync"] or summary.get("ddp/quantizer_state_equal") is False:
        run.log.warning("[DDP] %d of %d parameters differ between ranks after training (not synchronised by DDP): "
                        "%s; quantizer state equal on all ranks: %s", summary["ddp/params_out_of_sync"],
                        summary["ddp/params_total"], summary["ddp/params_out_of_sync_names"],
                        summary.get("ddp/quantizer_state_equal"))
    for r in report.reports:
        if r.get("sync"):
            run.log.info("[DDP] rank %d quantizer sync: %d broadcasts (%.3f s), rank 0's state replaced a diverged "
                         "one after steps %s", r["rank"], r["sync"]["syncs"], r["sync"]["seconds"],
                         r["sync"]["changed_at"] or "none")
    for r in report.reports:
        run.log.info("[DDP] rank %d/%d host %s pid %d: %d batches, %d samples, param checksum %.6f", r["rank"],
                     r["world_size"], r["host"], r["pid"], r["batches"], r["samples"], r["param_checksum"])
    return {**metrics, **summary}


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m hlrp_core.training.srun", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run-dir", required=True, help="run directory to create, or to adopt when it has config.yaml")
    p.add_argument("--experiment", default="", help="experiment preset (ignored when adopting)")
    p.add_argument("--smoke", action="store_true", help="merge the smoke profile (ignored when adopting)")
    p.add_argument("--seed", type=int, default=0, help="run seed (ignored when adopting)")
    p.add_argument("overrides", nargs="*", help="KEY=VALUE config overrides")
    return p.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    info = dist_info()
    try:
        cfg, run, adopted = setup(args, info)
    except (ConfigError, FileExistsError, TimeoutError) as exc:
        print(f"[rank {info.rank}] hlrp_core.training.srun: {exc}", file=sys.stderr)
        return 2
    if info.rank == 0:
        _record_env(run.dir, info, adopted, args.overrides)
    run.log.info("train: rank %d of %d (%s, %d node(s) x %d task(s)), local rank %d, host %s, pid %d", info.rank,
                 info.world_size, info.launcher, info.num_nodes, info.ntasks_per_node, info.local_rank,
                 socket.gethostname(), os.getpid())
    try:
        metrics = train(cfg, run, info)
    except BaseException as exc:  # noqa: BLE001 - record, then fail the process
        reason = f"{type(exc).__name__}: {exc}"
        run.log.error("train failed on rank %d: %s\n%s", info.rank, reason, traceback.format_exc())
        if info.rank == 0 and not adopted:
            run.fail(reason)
        elif info.rank == 0:
            run.record({"train_failed": reason})
        return 1
    if info.rank == 0:
        if adopted:
            run.record(metrics)
        else:
            run.finish(metrics)
        run.log.info("train: done, %d steps, world size %d", metrics.get("global_step", -1), info.world_size)
    return 0


if __name__ == "__main__":
    sys.exit(main())
