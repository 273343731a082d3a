"""Ladder definitions (``params/ladders/<name>/ladder.yaml``) and their expansion into rung files.

``ladder.yaml`` keys:

| key | meaning |
|---|---|
| ``notebook`` | the notebook every rung runs (``notebooks/20_speed_ladder.ipynb``) |
| ``experiment`` / ``smoke`` / ``seed`` | notebook parameters shared by every rung |
| ``baseline`` | list of overrides: rung 0; passed as the notebook's ``overrides`` |
| ``axes`` | {knob: [values]}; with ``mode: one_knob`` (default) each value is one rung = baseline + that knob |
| ``mode`` | ``one_knob`` (default), ``product`` (every combination) or ``zip`` (i-th values together) |
| ``extra`` | explicit multi-knob rungs (lists of overrides), e.g. the seed's "tfds interleave 2 + decode 2" |
| ``baseline_repeats`` | how many times rung 0 runs (its spread is the noise band of the report); default 3 |
| ``timeout_s`` | per-cell time limit of a rung (papermill ``execution_timeout``); default 900 |

``expand`` loads every rung's config exactly as the notebook will (``hlrp_core.config.load``): a ``ConfigError``
marks the rung ``invalid-config`` with the reason and it is never launched. Rungs whose *effective* config
(``hlrp_core.config.data.effective_knobs`` replaces the data knobs it clamps or derives, and no-op knobs are dropped)
equals an earlier rung's are flagged ``duplicate`` (``no-op`` when the earlier rung is the baseline).
Rung files hold ``rung_id`` + ``rung_overrides`` only; the expand verdict is in their
comment header, so a reviewer sees it in the diff.
"""

from __future__ import annotations

import itertools
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..config import ConfigError, flatten, load, to_dict
from ..paths import PARAMS_DIR, resolve

LADDERS_DIR = PARAMS_DIR / "ladders"
LADDER_FILE = "ladder.yaml"
MODES = ("one_knob", "product", "zip")
OK, INVALID, DUPLICATE = "ok", "invalid-config", "duplicate"
#: Keys that never make two rungs different (names, bookkeeping).
_REQUESTED = re.compile(r"\s*\(requested [^)]*\)")
_IGNORED_KEYS = ("experiment.name", "experiment.study", "experiment.description", "experiment.preset")


@dataclass
class LadderSpec:
    """A parsed ``ladder.yaml``."""

    name: str
    dir: Path
    notebook: str
    baseline: list[str]
    axes: dict[str, list[Any]] = field(default_factory=dict)
    mode: str = "one_knob"
    extra: list[list[str]] = field(default_factory=list)
    experiment: str = ""
    smoke: bool = False
    seed: int = 0
    baseline_repeats: int = 3
    timeout_s: float = 900.0
    description: str = ""

    def notebook_params(self) -> dict[str, Any]:
        """The notebook parameters every rung shares (``rung_overrides`` is added per rung)."""
        return {"experiment": self.experiment, "overrides": list(self.baseline), "smoke": self.smoke,
                "seed": self.seed}


@dataclass
class Rung:
    """One point of a ladder."""

    index: int
    rung_id: str
    overrides: list[str]          # the rung_overrides (empty for the baseline)
    kind: str                     # baseline | one_knob | product | zip | extra
    knob: str = ""                # the changed knob(s), comma-joined
    value: str = ""               # the value(s), comma-joined
    status: str = OK              # ok | invalid-config | duplicate
    reason: str = ""              # the ConfigError message, or "same effective config as rNNN"
    duplicate_of: str = ""
    effective: dict[str, Any] = field(default_factory=dict)   # effective value of each changed knob
    signature: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def launchable(self) -> bool:
        return self.status == OK

    @property
    def filename(self) -> str:
        return f"rung_{self.index:03d}.yaml"


# ------------------------------------------------------------------------------------------------ loading
def ladder_dir(name: str | Path) -> Path:
    """``name`` is a ladder under ``params/ladders/`` or a path to a ladder directory / ladder.yaml."""
    p = Path(name)
    if p.name == LADDER_FILE:
        return resolve(p.parent)
    if (LADDERS_DIR / str(name) / LADDER_FILE).exists():
        return LADDERS_DIR / str(name)
    rp = resolve(p)
    if (rp / LADDER_FILE).exists():
        return rp
    have = sorted(d.name for d in LADDERS_DIR.glob("*") if (d / LADDER_FILE).exists()) if LADDERS_DIR.is_dir() else []
    raise ConfigError(f"ladder {name!r}: no {LADDERS_DIR.relative_to(PARAMS_DIR.parent)}/{name}/{LADDER_FILE}; "
                      f"available ladders: {have}")


def load_spec(name: str | Path) -> LadderSpec:
    d = ladder_dir(name)
    raw = yaml.safe_load((d / LADDER_FILE).read_text()) or {}
    where = f"{d / LADDER_FILE}"
    known = {"notebook", "baseline", "axes", "mode", "extra", "experiment", "smoke", "seed", "baseline_repeats",
             "timeout_s", "description"}
    unknown = set(raw) - known
    if unknown:
        raise ConfigError(f"{where}: unknown keys {sorted(unknown)}; allowed: {sorted(known)}")
    if not raw.get("notebook"):
        raise ConfigError(f"{where}: 'notebook' is required (e.g. notebooks/20_speed_ladder.ipynb)")
    mode = raw.get("mode", "one_knob")
    if mode not in MODES:
        raise ConfigError(f"{where}: mode={mode!r}; use one of {list(MODES)}")
    axes = raw.get("axes") or {}
    if not isinstance(axes, dict) or any(not isinstance(v, list) or not v for v in axes.values()):
        raise ConfigError(f"{where}: 'axes' must map each knob to a non-empty list of values")
    if mode == "zip" and len({len(v) for v in axes.values()}) > 1:
        raise ConfigError(f"{where}: mode=zip needs every axis to have the same number of values "
                          f"(got {{{', '.join(f'{k}: {len(v)}' for k, v in axes.items())}}})")
    reps = int(raw.get("baseline_repeats", 3))
    if reps < 1:
        raise ConfigError(f"{where}: baseline_repeats={reps} must be >= 1")
    return LadderSpec(name=d.name, dir=d, notebook=str(raw["notebook"]), baseline=[str(o) for o in
                      raw.get("baseline") or []], axes={str(k): list(v) for k, v in axes.items()}, mode=mode,
                      extra=[[str(o) for o in e] for e in raw.get("extra") or []],
                      experiment=str(raw.get("experiment") or ""), smoke=bool(raw.get("smoke", False)),
                      seed=int(raw.get("seed", 0)), baseline_repeats=reps,
                      timeout_s=float(raw.get("timeout_s", 900)), description=str(raw.get("description", "")))


# ------------------------------------------------------------------------------------------------ expansion
def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _short(knob: str) -> str:
    parts = knob.split(".")
    return "_".join(parts[-2:]) if len(parts) >= 2 else parts[0]


def _rung_id(index: int, pairs: list[tuple[str, str]]) -> str:
    if not pairs:
        return f"r{index:03d}_baseline"
    body = "__".join(f"{_short(k)}_{v}" for k, v in pairs)
    return f"r{index:03d}_" + re.sub(r"[^A-Za-z0-9_.-]+", "_", body).strip("_")[:80]


def _pairs_of(overrides: list[str]) -> list[tuple[str, str]]:
    out = []
    for o in overrides:
        k, _, v = o.partition("=")
        out.append((k.lstrip("+").strip(), v.strip()))
    return out


def _points(spec: LadderSpec) -> list[tuple[str, list[str]]]:
    """(kind, rung_overrides) for every rung after the baseline, in file order."""
    pts: list[tuple[str, list[str]]] = []
    keys = list(spec.axes)
    if spec.mode == "one_knob":
        for k in keys:
            for v in spec.axes[k]:
                pts.append(("one_knob", [f"{k}={_fmt(v)}"]))
    elif spec.mode == "product":
        for combo in itertools.product(*(spec.axes[k] for k in keys)):
            pts.append(("product", [f"{k}={_fmt(v)}" for k, v in zip(keys, combo)]))
    else:
        for combo in zip(*(spec.axes[k] for k in keys)):
            pts.append(("zip", [f"{k}={_fmt(v)}" for k, v in zip(keys, combo)]))
    pts += [("extra", list(e)) for e in spec.extra]
    return pts


def effective_signature(cfg: Any) -> dict[str, Any]:
    """The config as the code will see it: data knobs replaced by their effective values (clamped/derived), no-op
    knobs and bookkeeping names dropped. Two rungs with equal signatures measure the same thing."""
    flat = flatten(to_dict(cfg))
    for k in _IGNORED_KEYS:
        flat.pop(k, None)
    try:
        from ..config import data as data_cfg

        eff = data_cfg.effective_knobs(cfg)
        noop = set(getattr(data_cfg, "_NOOP_DEFAULTS", {}))
    except (ImportError, AttributeError):  # data adapter config not there: compare the plain config
        return flat
    for k in list(flat):
        if k.startswith("data.adapter."):
            short = k[len("data.adapter."):]
            if short in eff or short in noop:
                flat.pop(k)
    for k, v in eff.items():
        if k != "no_op_knobs_set":
            # budget knobs report "shared pool of 3 (requested 2)": the request alone changes nothing
            flat[f"effective.{k}"] = _REQUESTED.sub("", v) if isinstance(v, str) else v
    return flat


def effective_value(cfg: Any, knob: str) -> Any:
    """The value a knob has after clamping/derivation (its config value when nothing changes it)."""
    try:
        from ..config.data import effective_knobs

        eff = effective_knobs(cfg)
        if knob.startswith("data.adapter.") and knob[len("data.adapter."):] in eff:
            return eff[knob[len("data.adapter."):]]
    except (ImportError, AttributeError):
        pass
    flat = flatten(to_dict(cfg))
    return flat.get(knob.lstrip("+"), "")


def _quiet_load(spec: LadderSpec, rung_overrides: list[str]):
    # validation warnings (inert knobs) repeat for every rung; expand reports them once per ladder at most
    lg = logging.getLogger("hlrp_core.config.data")
    old = lg.level
    lg.setLevel(logging.ERROR)
    try:
        return load(spec.experiment, list(spec.baseline) + list(rung_overrides), smoke=spec.smoke, seed=spec.seed)
    finally:
        lg.setLevel(old)


def baseline_flat(spec: LadderSpec) -> dict[str, Any]:
    return flatten(to_dict(_quiet_load(spec, [])))


def expand(spec: LadderSpec) -> list[Rung]:
    """Every rung with its verdict; loads each config (fast, no data touched)."""
    rungs = [Rung(0, _rung_id(0, []), [], "baseline")]
    for i, (kind, ovs) in enumerate(_points(spec), start=1):
        pairs = _pairs_of(ovs)
        rungs.append(Rung(i, _rung_id(i, pairs), ovs, kind, knob=",".join(k for k, _ in pairs),
                          value=",".join(v for _, v in pairs)))
    seen: dict[str, str] = {}
    for r in rungs:
        try:
            cfg = _quiet_load(spec, r.overrides)
        except ConfigError as exc:
            if r.index == 0:
                raise ConfigError(f"ladder {spec.name}: the baseline itself is invalid: {exc}") from None
            r.status, r.reason = INVALID, " | ".join(exc.problems)
            continue
        r.effective = {k: effective_value(cfg, k) for k, _ in _pairs_of(r.overrides)}
        r.signature = effective_signature(cfg)
        key = yaml.safe_dump(r.signature, sort_keys=True, default_flow_style=True)
        if key in seen:
            r.status, r.duplicate_of = DUPLICATE, seen[key]
            what = "no-op: same effective config as the baseline" if seen[key].startswith("r000") else \
                f"same effective config as {seen[key]}"
            r.reason = what  # machine-independent (effective values go to the table, not the committed file)
        else:
            seen[key] = r.rung_id
    return rungs


def changed_keys(spec: LadderSpec, rung: Rung, base: dict[str, Any] | None = None) -> list[str]:
    """Config keys whose value differs between the baseline and this rung (raw config, not effective).
    ``base``: the flattened baseline config, when the caller already has it."""
    base = base if base is not None else flatten(to_dict(_quiet_load(spec, [])))
    other = flatten(to_dict(_quiet_load(spec, rung.overrides)))
    return sorted(k for k in set(base) | set(other) if base.get(k) != other.get(k) and k not in _IGNORED_KEYS)


# ------------------------------------------------------------------------------------------------ rung files
def render_rung_file(spec: LadderSpec, rung: Rung) -> str:
    verdict = rung.status + (f": {rung.reason}" if rung.reason else "")
    head = [
        f"# Ladder {spec.name}, rung {rung.index} ({rung.kind}). GENERATED by `hlrp ladder expand {spec.name}`;",
        "# edit ladder.yaml, not this file (a unit test re-expands and fails on drift).",
        f"#   hlrp ladder run {spec.name} --backend local",
        f"# Changes vs baseline: {', '.join(rung.overrides) if rung.overrides else '(none: the baseline)'}",
        f"# Expand verdict: {verdict}",
    ]
    body = yaml.safe_dump({"rung_id": rung.rung_id, "rung_overrides": list(rung.overrides)}, sort_keys=False,
                          default_style=None, width=1000)
    # quote every override string
    lines = []
    for line in body.splitlines():
        if line.startswith("- "):
            lines.append("- " + _dq(line[2:]))
        else:
            lines.append(line)
    return "\n".join(head) + "\n" + "\n".join(lines) + "\n"


def _dq(item: str) -> str:
    val = yaml.safe_load(item)
    return '"' + str(val).replace("\\", "\\\\").replace('"', '\\"') + '"'


def rung_files(spec: LadderSpec, rungs: list[Rung]) -> dict[str, str]:
    return {r.filename: render_rung_file(spec, r) for r in rungs}


def write_rungs(spec: LadderSpec, rungs: list[Rung]) -> list[Path]:
    """Write ``rung_NNN.yaml`` files, removing stale ones from an earlier, longer expansion."""
    files = rung_files(spec, rungs)
    for old in spec.dir.glob("rung_*.yaml"):
        if old.name not in files:
            old.unlink()
    out = []
    for name, text in files.items():
        p = spec.dir / name
        if not p.exists() or p.read_text() != text:
            p.write_text(text)
        out.append(p)
    return out


def drift(spec: LadderSpec, rungs: list[Rung] | None = None) -> list[str]:
    """Committed rung files that differ from a fresh expansion (missing, stale or edited)."""
    files = rung_files(spec, rungs if rungs is not None else expand(spec))
    problems = []
    for name, text in files.items():
        p = spec.dir / name
        if not p.exists():
            problems.append(f"{name}: missing")
        elif p.read_text() != text:
            problems.append(f"{name}: differs from a fresh expansion")
    for p in spec.dir.glob("rung_*.yaml"):
        if p.name not in files:
            problems.append(f"{p.name}: stale (not produced by ladder.yaml any more)")
    return problems


def read_rung_file(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(Path(path).read_text()) or {}
    return {"rung_id": str(data.get("rung_id", "")), "rung_overrides": [str(o) for o in
                                                                        data.get("rung_overrides") or []]}


def expand_table(rungs: list[Rung]) -> str:
    """A plain-text table for the terminal."""
    rows = [("rung", "status", "changed knob", "value", "effective", "note")]
    for r in rungs:
        eff = ",".join(str(v) for v in r.effective.values()) if r.effective else ""
        rows.append((r.rung_id, r.status, r.knob or "(baseline)", r.value, eff[:40],
                     (f"duplicate of {r.duplicate_of}; " if r.duplicate_of else "") + r.reason))
    w = [max(len(str(row[i])) for row in rows) for i in range(5)]
    return "\n".join("  ".join(str(c).ljust(w[i]) for i, c in enumerate(row[:5])) + "  " + row[5] for row in rows)
