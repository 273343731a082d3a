"""Where each dataset lives (``local`` / ``gcs`` / ``auto``) and its split layout, read from ``dataset_info.json``.

No silent fallback: ``auto`` uses the local mirror when ``<root>/<dir>/<ver>`` exists and
falls back to GCS only with ``data.adapter.tf.tfds_read.allow_gcs=true``; every resolution is logged and lands in the
startup report. A missing dataset names the path that was looked at and the fix.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from ..paths import embedded_data_root, resolve
from .registry import DatasetSpec
from .tfrecord import is_remote

log = logging.getLogger(__name__)


#: How long a ``gs://`` existence probe may take before it is reported as "no access".
GCS_PROBE_TIMEOUT_S = 20.0


class DataSourceError(RuntimeError):
    """A dataset cannot be found or read; the message names the path and the fix."""


@dataclass
class SplitLayout:
    """One split of one dataset: its shard files (in order) and the episodes per shard."""

    name: str
    files: list[str]
    shard_lengths: list[int]

    @property
    def num_episodes(self) -> int:
        return int(sum(self.shard_lengths))


@dataclass
class ResolvedSource:
    """Args:
        name: Registry name.
        path: Resolved dataset directory (``<root>/<dir>/<ver>`` or ``gs://...``).
        version: Version directory actually used.
        how: How it resolved (e.g. ``local``, ``auto->local``, ``auto->gcs``).
        splits: Split name -> layout.
    """

    name: str
    path: str
    version: str
    how: str
    splits: dict[str, SplitLayout] = field(default_factory=dict)


def data_root_of(cfg_data: Any) -> str:
    """The mirror root for a ``DataConfig``: ``tfds_read.local_root``, else ``data.root``, else the embedded root."""
    root = cfg_data.adapter.tf.tfds_read.local_root or cfg_data.root
    return str(resolve(root)) if root else str(embedded_data_root())


def _exists(p: str, timeout_s: float | None = None) -> bool:
    if not is_remote(p):
        return Path(p).is_dir()
    from .tfenv import import_tf

    tf = import_tf()
    out: dict = {}

    def probe():
        try:
            out["ok"] = bool(tf.io.gfile.exists(p))
        except Exception as exc:  # noqa: BLE001 - any access failure is reported with the path
            out["err"] = exc

    th = threading.Thread(target=probe, daemon=True, name="hlrp-gcs-probe")
    th.start()
    th.join(GCS_PROBE_TIMEOUT_S if timeout_s is None else timeout_s)
    if th.is_alive() or "err" in out:
        why = "timed out" if th.is_alive() else f"{type(out['err']).__name__}: {str(out['err']).splitlines()[0]}"
        raise DataSourceError(f"cannot access {p} ({why}); GCS needs network access and credentials "
                              "(gcloud auth application-default login). Use a local mirror instead: "
                              "data.adapter.tf.tfds_read.source=local data.root=/path/to/mirror")
    return out.get("ok", False)


def _read_text(p: str) -> str:
    if not is_remote(p):
        return Path(p).read_text()
    from .tfenv import import_tf

    with import_tf().io.gfile.GFile(p, "r") as f:
        return f.read()


def _listdir(p: str) -> list[str]:
    if not is_remote(p):
        return sorted(x.name for x in Path(p).iterdir()) if Path(p).is_dir() else []
    from .tfenv import import_tf

    return sorted(x.rstrip("/") for x in import_tf().io.gfile.listdir(p))


def _version_dir(base: str, version: str, name: str = "", chosen: str = "") -> Optional[str]:
    """The version directory to read: ``chosen`` (``data.adapter.versions.<name>``) when given;
    else the registry's ``version`` when it is the only complete one; else the only complete version present.
    Several complete versions side by side without a choice is an error listing them and naming the knob."""
    if chosen:
        if _exists_file(f"{base}/{chosen}/dataset_info.json"):
            return chosen
        raise DataSourceError(f"data.adapter.versions.{name}={chosen!r}: {base}/{chosen}/dataset_info.json does not "
                              "exist; pick one of the version directories present")
    versions = [v for v in _listdir(base) if re.match(r"^\d+\.\d+\.\d+$", v)] if _exists(base) else []
    complete = [v for v in versions if _exists_file(f"{base}/{v}/dataset_info.json")]
    if len(complete) > 1:
        raise DataSourceError(f"{base} holds {len(complete)} complete versions of {name or 'this dataset'}: "
                              f"{complete} (the registry names {version}); select one with "
                              f"data.adapter.versions.{name}=<version> (e.g. {complete[-1]}) or remove the others")
    if version in complete:
        return version
    if len(complete) == 1:
        log.warning("%s: version %s not found, using the only version present: %s", base, version, complete[0])
        return complete[0]
    return None


def _exists_file(p: str) -> bool:
    if not is_remote(p):
        return Path(p).is_file()
    from .tfenv import import_tf

    return bool(import_tf().io.gfile.exists(p))


def _layout(path: str, tfds_dir: str) -> dict[str, SplitLayout]:
    info_path = f"{path}/dataset_info.json"
    try:
        info = json.loads(_read_text(info_path))
    except (OSError, ValueError) as exc:
        raise DataSourceError(f"{info_path}: unreadable dataset_info.json ({exc}); rebuild or re-sync this dataset")
    name = info.get("name") or tfds_dir
    files_here = set(_listdir(path))
    out = {}
    for s in info.get("splits", []):
        split = s["name"]
        lengths = [int(x) for x in s.get("shardLengths", [])]
        n = len(lengths)
        fmt = info.get("fileFormat", "tfrecord") or "tfrecord"
        files = [f"{name}-{split}.{fmt}-{i:05d}-of-{n:05d}" for i in range(n)]
        missing = [f for f in files if f not in files_here]
        if missing:
            present = sorted(f for f in files_here if f.startswith(f"{name}-{split}."))
            raise DataSourceError(
                f"{path}: split {split!r} lists {n} shards in dataset_info.json but {len(missing)} are missing "
                f"(e.g. {missing[0]}); {len(present)} shard files are present. The dataset is incomplete or broken "
                "(re-sync it or drop it from the list: weight: 0)")
        out[split] = SplitLayout(split, [f"{path}/{f}" for f in files], lengths)
    return out


def resolve_source(spec: DatasetSpec, tfds_read: Any, root: str, version: str = "") -> ResolvedSource:
    """Resolve one dataset per ``tfds_read.source`` (``version``: an explicit version directory); raises
    ``DataSourceError`` naming the path and the fix."""
    source = tfds_read.source
    local_base = f"{root}/{spec.tfds_dir}"
    gcs_base = f"{tfds_read.gcs_root.rstrip('/')}/{spec.tfds_dir}"
    fix_local = (f"build or sync it there (stand-in: hlrp data mirror --datasets {spec.name} --root {root}), or set "
                 "data.root=/path/to/mirror; embedded data: hlrp data make-demo")
    if source in ("local", "auto"):
        if not _exists(root):
            if source == "local" or not tfds_read.allow_gcs:
                raise DataSourceError(f"data root {root} does not exist (looked for {spec.name} at "
                                      f"{local_base}/{spec.version}); {fix_local}")
        else:
            ver = _version_dir(local_base, spec.version, spec.name, version)
            if ver is not None:
                path = f"{local_base}/{ver}"
                how = "local" if source == "local" else "auto->local"
                return ResolvedSource(spec.name, path, ver, how, _layout(path, spec.tfds_dir))
            if source == "local" or not tfds_read.allow_gcs:
                extra = ("" if source == "local" else
                         "; source=auto falls back to GCS only with data.adapter.tf.tfds_read.allow_gcs=true")
                raise DataSourceError(f"dataset {spec.name!r} not found: no {local_base}/{spec.version}/dataset_info"
                                      f".json; {fix_local}{extra}")
    # gcs, or auto with explicit opt-in
    ver = version or spec.version
    path = f"{gcs_base}/{ver}"
    if not _exists(path):
        raise DataSourceError(f"dataset {spec.name!r} not found at {path}; check tfds_read.gcs_root and the version")
    how = "gcs" if source == "gcs" else "auto->gcs"
    log.warning("data source %s: %s resolved to %s (%s)", spec.name, source, path, how)
    return ResolvedSource(spec.name, path, ver, how, _layout(path, spec.tfds_dir))
