"""Load a config: schema defaults -> experiment preset -> group selections -> smoke profile -> overrides.

Override grammar (the one researchers already type):
- ``a.b.c=value``: a leaf assignment; the value is parsed by OmegaConf against the typed field. A leading ``+`` is
  tolerated when the key exists (seed commands use ``+submit.time=...``); ``~key`` (deletion) is refused.
- ``group=name`` for a group in ``GROUPS``: merge ``hlrp_core/configs/<group>/<name>.yaml`` into that node first.
  ``experiment=name`` merges ``configs/experiment/<name>.yaml`` at the root.

No Hydra runtime (no cwd change, no logging takeover): OmegaConf structured configs do the typing and struct mode.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import MISSING, fields, is_dataclass
from pathlib import Path
from typing import Any, Iterable

import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException, ValidationError

from ..paths import CONFIGS_DIR
from .errors import ConfigError, closest
from .schema import Config

log = logging.getLogger(__name__)

#: Group name -> node it merges into ("" = root).
GROUPS = {"experiment": "", "data": "data", "cluster": "cluster", "model": "model"}
SMOKE_PROFILE = CONFIGS_DIR / "smoke.yaml"


def schema_keys(node: Any = Config, prefix: str = "") -> list[str]:
    """Every leaf and section key of the schema, dotted (used for typo suggestions)."""
    out = []
    for f in fields(node):
        key = f"{prefix}{f.name}"
        out.append(key)
        ftype = f.type if isinstance(f.type, type) else None
        if ftype is None and f.default_factory is not MISSING:  # type: ignore[misc]
            ftype = type(f.default_factory())  # type: ignore[misc]
        if ftype is not None and is_dataclass(ftype):
            out.extend(schema_keys(ftype, key + "."))
    return out


def available(group: str) -> list[str]:
    d = CONFIGS_DIR / group
    return sorted(p.stem for p in d.glob("*.yaml")) if d.is_dir() else []


def _group_file(group: str, name: str) -> Path:
    path = CONFIGS_DIR / group / f"{name}.yaml"
    if not path.exists():
        choices = available(group)
        hint = closest(name, choices, n=1)
        did = f" Did you mean {hint[0]!r}?" if hint else ""
        raise ConfigError(f"{group}={name!r}: no preset {path.relative_to(CONFIGS_DIR.parent.parent)}; "
                          f"available: {choices}.{did}")
    return path


def _read_yaml(path: Path) -> dict:
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def _explain(exc: OmegaConfBaseException, source: str) -> str:
    """Turn an OmegaConf error into 'knob, value, fix'."""
    key = getattr(exc, "full_key", None) or ""
    if isinstance(exc, (ConfigAttributeError, ConfigKeyError)):
        hint = closest(key, schema_keys(), n=3)
        did = f"; did you mean {' or '.join(repr(h) for h in hint)}?" if hint else ""
        return f"{key}: unknown key (from {source}){did}"
    if isinstance(exc, ValidationError):
        msg = str(exc).splitlines()[0]
        return f"{key}: {msg} (from {source}); fix the value's type"
    return f"{key or source}: {str(exc).splitlines()[0]}"


def _merge(base: DictConfig, other: Any, source: str, node: str = "") -> DictConfig:
    try:
        if node:
            target = OmegaConf.select(base, node)
            merged = OmegaConf.merge(target, other)
            OmegaConf.update(base, node, merged, merge=False)
            return base
        return OmegaConf.merge(base, other)  # type: ignore[return-value]
    except OmegaConfBaseException as exc:
        if node and getattr(exc, "full_key", None):
            exc.full_key = f"{node}.{exc.full_key}"  # type: ignore[attr-defined]
        raise ConfigError(_explain(exc, source)) from None


def _apply_preset(cfg: DictConfig, group: str, name: str) -> DictConfig:
    data = _read_yaml(_group_file(group, name))
    data.pop("_smoke", None)
    for sel in data.pop("defaults", []) or []:  # nested group selections, e.g. defaults: [{data: embedded}]
        for g, n in dict(sel).items():
            cfg = _apply_preset(cfg, g, n)
    cfg = _merge(cfg, data, f"{group}/{name}.yaml", GROUPS[group])
    if group == "experiment":
        cfg.experiment.preset = name
    return cfg


def _split(overrides: Iterable[str]) -> tuple[list[tuple[str, str]], list[str]]:
    groups, leaves = [], []
    for raw in overrides:
        item = str(raw).strip()
        if not item:
            continue
        if item.startswith("~"):
            raise ConfigError(f"{item!r}: deleting keys is not supported; set the knob to a value instead")
        if "=" not in item:
            raise ConfigError(f"{item!r}: an override must look like key=value (e.g. data.loader.batch_size=48)")
        key, value = item.split("=", 1)
        key = key.lstrip("+").strip()
        if key in GROUPS and "." not in key:
            groups.append((key, value.strip()))
        else:
            leaves.append(f"{key}={value}")
    return groups, leaves


def load(experiment: str = "", overrides: Iterable[str] = (), *, smoke: bool = False, seed: int | None = None,
         validate: bool = True) -> Config:
    """Build, merge and validate a config. Raises ``ConfigError`` naming every bad knob; nothing else starts."""
    overrides = list(overrides)
    cfg: DictConfig = OmegaConf.structured(Config)
    groups, leaves = _split(overrides)
    smoke_extra: dict = {}
    exp_names = [experiment] if experiment else []
    exp_names += [n for g, n in groups if g == "experiment"]
    for name in exp_names:
        cfg = _apply_preset(cfg, "experiment", name)
        smoke_extra = _read_yaml(_group_file("experiment", name)).get("_smoke") or smoke_extra
    for group, name in groups:
        if group != "experiment":
            cfg = _apply_preset(cfg, group, name)
    if seed is not None:
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ConfigError(f"seed={seed!r} ({type(seed).__name__}) must be an integer, e.g. seed: 0")
        cfg.seed = seed
    if smoke:
        cfg.smoke = True
    # smoke may also be switched on by an override; the profile applies either way, before the leaf overrides
    smoke_on = bool(cfg.smoke) or any(l.split("=", 1)[0] == "smoke" and l.split("=", 1)[1].strip().lower()
                                      in ("true", "1", "yes") for l in leaves)
    if smoke_on:
        cfg = _merge(cfg, _read_yaml(SMOKE_PROFILE), "configs/smoke.yaml")
        if smoke_extra:
            cfg = _merge(cfg, smoke_extra, "experiment _smoke block")
    for leaf in leaves:
        try:
            cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist([leaf]))  # type: ignore[assignment]
        except OmegaConfBaseException as exc:
            raise ConfigError(_explain(exc, f"override {leaf!r}")) from None
        except (TypeError, ValueError, IndexError) as exc:  # e.g. a list index: key[0]=v or key.0=v
            key = re.sub(r"(\[\d+\]|\.\d+)+$", "", leaf.split("=", 1)[0])
            raise ConfigError(f"override {leaf!r}: list elements cannot be set one by one ({exc}); give the whole "
                              f"list, e.g. {key}=[a,b]") from None
    try:
        obj: Config = OmegaConf.to_object(cfg)  # type: ignore[assignment]
    except OmegaConfBaseException as exc:
        raise ConfigError(_explain(exc, "the merged config")) from None
    return checked(obj) if validate else obj


def checked(obj: Config) -> Config:
    """``obj`` after its cross-knob checks (``validate``); every problem in one ``ConfigError``."""
    problems: list[str] = []
    obj.validate(problems)
    if problems:
        raise ConfigError(problems)
    return obj


def to_yaml(cfg: Config) -> str:
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))


def to_dict(cfg: Config) -> dict:
    return OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)  # type: ignore[return-value]


def flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dict -> {"a.b.c": leaf}. Lists stay leaves."""
    out: dict[str, Any] = {}
    if isinstance(d, dict):
        for k, v in d.items():
            out.update(flatten(v, f"{prefix}{k}."))
    else:
        out[prefix[:-1]] = d
    return out


def diff(cfg: Config, reference: Config | None = None) -> dict[str, tuple[Any, Any]]:
    """Keys whose value differs from ``reference`` (default: the schema defaults): {key: (reference, value)}."""
    a = flatten(to_dict(reference if reference is not None else Config()))
    b = flatten(to_dict(cfg))
    derived = ("data.effective.", "data.effective")  # recorded by runs.start, not chosen by the user
    return {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b))
            if a.get(k) != b.get(k) and not k.startswith(derived)}


def load_run(run_dir: str | os.PathLike, validate: bool = False) -> Config:
    """Reload the resolved ``config.yaml`` of a run directory."""
    path = Path(run_dir) / "config.yaml"
    if not path.exists():
        raise ConfigError(f"{path}: no config.yaml; is {run_dir} a run directory?")
    cfg = OmegaConf.merge(OmegaConf.structured(Config), OmegaConf.load(path))
    obj: Config = OmegaConf.to_object(cfg)  # type: ignore[assignment]
    return checked(obj) if validate else obj
