"""Cluster presets: ``hlrp_core/configs/cluster/<name>.yaml`` read into a typed ``ClusterConfig``."""

from __future__ import annotations

from dataclasses import fields

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from ..config import ConfigError
from ..config.cluster import ClusterConfig
from ..config.errors import closest
from ..config.loader import available
from ..paths import CONFIGS_DIR


def available_presets() -> list[str]:
    return available("cluster")


def load_preset(name: str, overrides: dict | None = None) -> ClusterConfig:
    """The preset ``name`` (plus ``overrides``, e.g. ``{"time": "00:15:00"}``), typed and validated.

    Raises ``ConfigError`` for an unknown preset, an unknown key (with the closest valid one) or a bad value.
    """
    path = CONFIGS_DIR / "cluster" / f"{name}.yaml"
    if not path.exists():
        hint = closest(name, available_presets(), n=1)
        raise ConfigError(f"--cluster {name}: no preset {path.name} in hlrp_core/configs/cluster/; available: "
                          f"{available_presets()}" + (f". Did you mean {hint[0]!r}?" if hint else ""))
    data = yaml.safe_load(path.read_text()) or {}
    data.update({k: v for k, v in (overrides or {}).items() if v is not None})
    valid = [f.name for f in fields(ClusterConfig)]
    bad = [k for k in data if k not in valid]
    if bad:
        raise ConfigError([f"cluster/{name}.yaml: unknown key {k!r}" + (
            f"; did you mean {closest(k, valid, n=1)[0]!r}?" if closest(k, valid, n=1) else "") for k in bad])
    try:
        cfg = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(ClusterConfig), data))
    except OmegaConfBaseException as exc:
        raise ConfigError(f"cluster/{name}.yaml: {str(exc).splitlines()[0]}") from None
    cfg.name = name
    problems: list[str] = []
    cfg.validate(problems)
    if problems:
        raise ConfigError([f"{p} (preset cluster/{name}.yaml)" for p in problems])
    return cfg
