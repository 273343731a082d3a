"""``hlrp run``: execute a notebook headless with papermill into a fresh run directory (orchestration floor 6:
ladder/ and cluster/ reuse its parameter merging and naming).

    hlrp run notebooks/00_workbench_check.ipynb [-f params/x.yaml ...] [--set data.loader.batch_size=48 ...]

Order of events (so bad input loses nothing and never leaves a RUNNING run behind):
1. merge the notebook's ``parameters`` defaults, the ``-f`` files (papermill's shallow merge: later files replace
   earlier keys) and ``--set`` overrides (appended to ``overrides``);
2. load + validate the config exactly as the notebook will: a ``ConfigError`` exits 2 before any directory exists;
3. create the run directory (exclusive mkdir), write ``params.yaml`` and ``status`` RUNNING;
4. run papermill (kernel ``hlrp``, cwd = repo root), streaming cell output to the terminal and ``unified.log``;
5. a cell that raises -> ``status`` FAILED with the error (a more precise FAILED reason the kernel wrote itself,
   e.g. ``interrupted at step N (resumable)``, is kept), exit 1; success -> DONE, exit 0;
6. SIGINT/SIGTERM/SIGUSR1 to ``hlrp run``: handed to the kernel as ``<run>/stop_request`` (the kernel never gets
   our signals): the training checkpoints at its next step and ends FAILED (resumable); a kernel that does not end
   within ``--stop-grace`` seconds is killed and the run marked FAILED with the signal (``hlrp_core.stopping``).
   Exit code 128 + the signal number.
"""

from __future__ import annotations

import argparse
import ast
import logging
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from . import runs
from .config import ConfigError, load
from .inputs import check_inputs
from .paths import REPO_ROOT, resolve
from .progress import HEADLESS_ENV
from .stopping import STOP_GRACE_S, KernelWatch, StopForwarder, keep_or_fail
from .storage import is_write_error, write_error

KERNEL = os.environ.get("HLRP_KERNEL", "hlrp")
BANDS = [(0, 9, "data"), (10, 19, "train"), (20, 29, "ladders"), (30, 39, "analysis"), (90, 99, "reports")]
log = logging.getLogger("hlrp.launch")


def notebook_defaults(notebook: Path) -> dict[str, Any]:
    """The literal defaults of the notebook's ``parameters`` cell."""
    import papermill

    out = {}
    for name, spec in papermill.inspect_notebook(str(notebook)).items():
        try:
            out[name] = ast.literal_eval(spec["default"])
        except (ValueError, SyntaxError):
            raise ConfigError(f"{notebook}: parameter {name!r} default {spec['default']!r} is not a literal")
    return out


def merge_params(notebook: Path, files: list[str], sets: list[str], extra: dict | None = None) -> dict[str, Any]:
    params = notebook_defaults(notebook)
    defaults = dict(params)
    for f in files:
        path = resolve(f)
        if not path.exists():
            raise ConfigError(f"-f {f}: no such parameter file ({path})")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
            raise ConfigError(f"-f {f}: {path} is not valid YAML{where} ({getattr(exc, 'problem', exc)}); a "
                              "parameter file is a mapping, e.g. `experiment: laq_tiny` and "
                              "`overrides: [\"training.max_steps=5\"]`") from None
        if not isinstance(data, dict):
            raise ConfigError(f"-f {f}: expected a mapping of notebook parameters")
        unknown = set(data) - set(params)
        if unknown:
            raise ConfigError(f"-f {f}: {sorted(unknown)} are not parameters of {notebook.name} "
                              f"(its parameters: {sorted(params)})")
        params.update(data)
    params.update(extra or {})
    check_param_types(params, defaults, notebook)
    if sets:
        params["overrides"] = list(params.get("overrides") or []) + list(sets)
    return params


def check_param_types(params: dict, defaults: dict, notebook: Path) -> None:
    """Each parameter must have its default's type (an int where a float is expected is fine); ``overrides`` and
    ``rung_overrides`` must be lists of strings (a string would be split into characters)."""
    problems = []
    for name, value in params.items():
        default = defaults.get(name)
        if default is None or value is None:
            continue
        want = type(default)
        ok = isinstance(value, want) and not (want is int and isinstance(value, bool))
        ok = ok or (want is float and isinstance(value, int) and not isinstance(value, bool))
        if not ok:
            problems.append(f"parameter {name}={value!r} is a {type(value).__name__}; {notebook.name} expects a "
                            f"{want.__name__} (default {default!r})")
        elif isinstance(value, list) and name.endswith("overrides") and not all(isinstance(v, str) for v in value):
            problems.append(f"parameter {name}={value!r}: every entry must be a quoted KEY=VALUE string")
    if problems:
        raise ConfigError(problems)


def study_for(notebook: Path) -> str:
    try:
        num = int(notebook.name.split("_", 1)[0])
    except ValueError:
        return "scratch"
    return next((s for lo, hi, s in BANDS if lo <= num <= hi), "scratch")


def run_name(notebook: Path) -> str:
    stem = notebook.stem
    head, _, tail = stem.partition("_")
    return tail if head.isdigit() and tail else stem


def check_kernel(kernel: str) -> None:
    from jupyter_client.kernelspec import KernelSpecManager

    if kernel not in KernelSpecManager().find_kernel_specs():
        raise ConfigError(f"Jupyter kernel {kernel!r} is not installed; run `make setup` (it registers it with "
                          f"`python -m ipykernel install --sys-prefix --name hlrp`) or pass --kernel python3")


def _file_logger(run_dir: Path) -> logging.Handler:
    fh = logging.FileHandler(run_dir / runs.LOG)
    fh.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    return fh


def _logged_kernel_manager(log_path: Path, base: type) -> type:
    """A kernel manager class for headless runs: the kernel gets ``HLRP_HEADLESS=1`` (no widget bar) and writes its
    own stderr (``IPKernelApp`` start-up warnings such as "Kernel is running over TCP without encryption") into
    ``unified.log`` instead of the terminal; cell output still streams through papermill as before."""
    class LoggedKernelManager(base):
        async def start_kernel(self, **kw: Any) -> None:
            if "stderr" not in kw:
                self._hlrp_stderr = open(log_path, "ab", buffering=0)  # noqa: SIM115 - lives as long as the kernel
                kw["stderr"] = self._hlrp_stderr
            # headless kernel: one-line progress in the log, no widget bar (hlrp_core/progress.py)
            kw["env"] = {**kw.get("env", os.environ), HEADLESS_ENV: "1"}
            return await super().start_kernel(**kw)

        async def _async_cleanup_resources(self, restart: bool = False) -> None:
            await super()._async_cleanup_resources(restart=restart)
            fh = getattr(self, "_hlrp_stderr", None)
            if fh is not None and not restart:
                fh.close()

    return LoggedKernelManager


def execute(notebook: str | Path, params_files: list[str] = (), sets: list[str] = (), *, run_dir: str = "",
            study: str = "", kernel: str = KERNEL, extra_params: dict | None = None,
            timeout_s: float | None = None, stop_grace_s: float = STOP_GRACE_S,
            time_limit_grace_s: float | None = None, resume: bool = False) -> tuple[int, Path | None]:
    """Run one notebook into a new run directory (``resume``: into the existing ``run_dir`` as its next segment,
    see ``hlrp_core.resume_run``). Returns (exit code, run dir or None)."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    nb = resolve(notebook)
    if not nb.exists():
        print(f"error: notebook {notebook} not found", file=sys.stderr)
        return 2, None
    try:
        params = merge_params(nb, list(params_files), list(sets), extra_params)
        overrides = list(params.get("overrides") or []) + list(params.get("rung_overrides") or [])
        cfg = load(params.get("experiment", ""), overrides, smoke=bool(params.get("smoke", False)),
                   seed=params.get("seed"))
        problems = check_inputs(cfg)  # data root, artifact, checkpoint: before any run directory exists
        if problems:
            raise ConfigError(problems)
        check_kernel(kernel)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2, None

    try:
        if resume:
            out = Path(run_dir)
        elif run_dir:
            out = Path(run_dir)
            try:
                out.mkdir(parents=True)
            except FileExistsError:
                print(f"error: run directory {out} already exists; runs are never overwritten", file=sys.stderr)
                return 3, None
        else:
            out = runs.new_run_dir(study or cfg.experiment.study or study_for(nb), cfg.experiment.name or run_name(nb))
    except OSError as exc:
        if not is_write_error(exc):
            raise
        print(f"error: {write_error(exc.filename or run_dir or runs.output_root(), exc, 'run directory')}",
              file=sys.stderr)
        return 2, None
    params["run_dir"] = str(out)
    if resume:
        keep_segment_files(out)
    else:
        runs.atomic_write_text(out / runs.PARAMS, yaml.safe_dump(params, sort_keys=False))
        runs.atomic_write_json(out / "launch.json", {  # what `hlrp resume` needs to run this notebook again
            "notebook": str(nb.relative_to(REPO_ROOT) if nb.is_relative_to(REPO_ROOT) else nb), "kernel": kernel,
            "params_files": list(params_files), "sets": list(sets)})
    runs.write_status(out, runs.RUNNING)
    handler = _file_logger(out)
    pm_log = logging.getLogger("papermill")
    pm_log.addHandler(handler)
    t0 = time.time()
    os.environ.setdefault("TQDM_DISABLE", "1")
    os.environ["HLRP_COMMAND"] = " ".join(shlex.quote(a) for a in sys.argv)
    print(f"hlrp run: {nb.relative_to(REPO_ROOT) if nb.is_relative_to(REPO_ROOT) else nb} -> {out}", flush=True)
    code = 0
    stops = StopForwarder(out, grace_s=stop_grace_s, log=pm_log, time_limit_grace_s=time_limit_grace_s).install()
    watch = KernelWatch()
    try:
        papermill.execute_notebook(str(nb), str(out / "notebook.ipynb"), parameters=params, kernel_name=kernel,
                                   log_output=True, progress_bar=False, cwd=str(REPO_ROOT),
                                   autosave_cell_every=60, execution_timeout=timeout_s,
                                   kernel_manager_class=_logged_kernel_manager(out / runs.LOG,
                                                                               watch.kernel_manager_class()))
        state, _ = runs.read_status(out)
        if state == runs.RUNNING:
            runs.write_status(out, runs.DONE)
        elif state == runs.FAILED:  # the notebook finished but recorded a failure (e.g. a RAM-guard stop)
            code = 1
    except PapermillExecutionError as exc:
        reason = f"{exc.ename}: {exc.evalue} (cell {exc.exec_count})"
        pm_log.error("notebook failed: %s\n%s", reason, "\n".join(exc.traceback))
        keep_or_fail(out, reason)
        code = 1
    except Exception as exc:  # kernel death (e.g. OOM kill -> DeadKernelError), timeouts, ...
        reason = f"{type(exc).__name__}: {exc}"
        if stops.signal_name:
            reason = stops.unclean_reason()
        elif is_write_error(exc):  # e.g. papermill cannot save notebook.ipynb on a full disk
            reason = str(write_error(getattr(exc, "filename", None) or out / "notebook.ipynb", exc, "file"))
        elif "DeadKernel" in type(exc).__name__:
            reason += f" ({watch.dead_kernel_reason()})"  # evidence: exit signal + cgroup OOM counter
        pm_log.error("notebook failed: %s", reason)
        keep_or_fail(out, reason)
        code = 1
    finally:
        stops.uninstall()
        pm_log.removeHandler(handler)
        handler.close()
    if stops.signal_name and runs.read_status(out)[0] == runs.FAILED:
        code = 128 + int(stops.signum)  # the shell convention for "ended by signal N"
    state, reason = runs.read_status(out)
    print(f"hlrp run: {state}{' (' + reason + ')' if reason else ''} in {time.time() - t0:.1f} s", flush=True)
    print(f"run directory: {out}", flush=True)
    return code, out


def keep_segment_files(run_dir: Path) -> None:
    """Before a resumed segment: the previous executed notebook moves to ``segments/notebook.seg<N>.ipynb``."""
    seg = run_dir / "segments"
    seg.mkdir(exist_ok=True)
    old = run_dir / "notebook.ipynb"
    if old.exists():
        n = len(list(seg.glob("notebook.seg*.ipynb")))
        os.replace(old, seg / f"notebook.seg{n}.ipynb")


def _cmd_run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    logging.getLogger("papermill").setLevel(logging.INFO)
    extra = {}
    for item in args.param or []:
        key, _, value = item.partition("=")
        extra[key] = yaml.safe_load(value)
    code, _ = execute(args.notebook, args.file or [], args.set or [], run_dir=args.run_dir or "",
                      study=args.study or "", kernel=args.kernel, extra_params=extra,
                      timeout_s=args.cell_timeout or None, stop_grace_s=args.stop_grace,
                      time_limit_grace_s=args.time_limit_grace)
    return code


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="execute a notebook headless (papermill) into a new run directory")
    p.add_argument("notebook")
    p.add_argument("-f", "--file", action="append", help="papermill parameter YAML (repeatable; later wins)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="config override appended to `overrides` (repeatable), e.g. data.loader.batch_size=48")
    p.add_argument("-p", "--param", action="append", metavar="NAME=VALUE",
                   help="set a notebook parameter directly (YAML-typed), e.g. -p smoke=false")
    p.add_argument("--run-dir", help="exact run directory to create (must not exist)")
    p.add_argument("--study", help="folder under outputs/ (default: from the notebook's number band)")
    p.add_argument("--kernel", default=KERNEL, help="Jupyter kernel (default: hlrp)")
    p.add_argument("--cell-timeout", type=float, default=0, metavar="SECONDS",
                   help="fail the run when one cell runs longer (papermill execution_timeout; 0 = no limit)")
    p.add_argument("--stop-grace", type=float, default=STOP_GRACE_S, metavar="SECONDS",
                   help="on SIGINT/SIGTERM/SIGUSR1: how long the training may take to checkpoint before the kernel is "
                        f"killed (default {STOP_GRACE_S:g})")
    add_time_limit_grace(p)
    p.set_defaults(func=_cmd_run)


def add_time_limit_grace(p: argparse.ArgumentParser) -> None:
    p.add_argument("--time-limit-grace", type=float, default=None, metavar="SECONDS",
                   help="on SIGUSR1 (a SLURM time-limit lead): how long the kernel may run on before it is killed "
                        "(default: --stop-grace; SLURM jobs pass nearly all of cluster.signal_lead_s)")
