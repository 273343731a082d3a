"""What a loader rung runs: the data adapter's loader when it is installed, otherwise a stand-in decode loader.

``loader_batches(cfg)`` returns ``(name, make_batches)`` for ``measure.measure_loop``:

- ``adapter`` (default whenever ``hlrp_core.data.loader.PairLoader`` exists): the data adapter's train stream
  (``PairLoader(cfg, split="train", with_val=False)``: the constructor is inside the first-batch time; its RAM
  guard raises ``RamGuardError`` -> status ``ram-guard``); every ``data.*`` knob acts as docs/DATA.md
  describes. Needs the data (``data.root``, or the embedded data: ``hlrp data make-demo``).
- ``standin``: real JPEG work without TFDS: ``STANDIN_FRAMES`` procedural frames encoded once (JPEG q90, 160x120),
  then every batch decodes ``batch_size`` pairs (2 frames each) and resizes them to ``data.preprocess.image_size``
  in a thread pool of ``effective_knobs(cfg)["threads"]`` workers (the data adapter's one global thread budget),
  one task per chunk of pairs. Knobs that move it: ``data.loader.batch_size``, ``data.preprocess.image_size``,
  ``data.adapter.threads``. The pool is shut down when the iterator is closed.
"""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterable, Iterator

import numpy as np

STANDIN_FRAMES = 48
STANDIN_HW = (120, 160)


class AdapterStream:
    """The data adapter's train stream as a closable iterator (``close()`` joins the loader's threads)."""

    def __init__(self, cfg: Any):
        from ..data.loader import PairLoader

        self.loader = PairLoader(cfg, split="train", with_val=False)
        self._it = iter(self.loader)

    def __iter__(self) -> "AdapterStream":
        return self

    def __next__(self) -> Any:
        return next(self._it)

    def close(self) -> None:
        self.loader.close()


def _adapter_factory(cfg: Any) -> Callable[[], Iterable[Any]] | None:
    try:
        from ..data.loader import PairLoader  # noqa: F401
    except ImportError:
        return None
    return lambda: AdapterStream(cfg)


def _threads(cfg: Any) -> int:
    try:
        from ..config.data import effective_knobs

        return int(effective_knobs(cfg)["threads"])
    except (ImportError, KeyError, AttributeError):
        return 1


def standin_frames(n: int = STANDIN_FRAMES, hw: tuple[int, int] = STANDIN_HW, seed: int = 0) -> list[bytes]:
    """``n`` JPEG-encoded procedural frames (smooth gradients + boxes + a little noise, like a tabletop)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    h, w = hw
    yy, xx = np.mgrid[0:h, 0:w]
    out = []
    for _ in range(n):
        img = np.stack([(xx * rng.uniform(0.5, 1.5) + yy * rng.uniform(0.2, 1.0)) % 256 for _ in range(3)], -1)
        for _ in range(3):
            y0, x0 = rng.integers(0, h - 20), rng.integers(0, w - 20)
            img[y0:y0 + 20, x0:x0 + 20] = rng.integers(0, 255, 3)
        img = np.clip(img + rng.normal(0, 6, img.shape), 0, 255).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="JPEG", quality=90)
        out.append(buf.getvalue())
    return out


def _decode_chunk(frames: list[bytes], idx: list[tuple[int, int]], size: int) -> np.ndarray:
    from PIL import Image

    out = np.empty((len(idx), 3, 2, size, size), np.uint8)
    for j, pair in enumerate(idx):
        for f, k in enumerate(pair):
            im = Image.open(io.BytesIO(frames[k])).convert("RGB").resize((size, size), Image.BILINEAR)
            out[j, :, f] = np.asarray(im).transpose(2, 0, 1)
    return out


class StandinLoader:
    """An infinite iterator of ``{"frames": uint8[B,3,2,S,S], "sample_key": int64[B,2]}`` batches."""

    def __init__(self, cfg: Any, seed: int = 0):
        self.batch_size = int(cfg.data.loader.batch_size)
        self.size = int(cfg.data.preprocess.image_size)
        self.threads = max(1, _threads(cfg))
        self.frames = standin_frames(seed=seed)
        self.rng = np.random.default_rng(seed)
        self.pool = ThreadPoolExecutor(self.threads, thread_name_prefix="hlrp-standin")

    def __iter__(self) -> Iterator[dict]:
        return self

    def __next__(self) -> dict:
        n = len(self.frames)
        starts = self.rng.integers(0, n - 3, self.batch_size)
        idx = [(int(s), int(s) + 3) for s in starts]
        chunks = np.array_split(np.arange(self.batch_size), self.threads)
        parts = list(self.pool.map(lambda c: _decode_chunk(self.frames, [idx[i] for i in c], self.size),
                                   [c for c in chunks if len(c)]))
        return {"frames": np.concatenate(parts), "sample_key": np.asarray(idx, np.int64)}

    def close(self) -> None:
        self.pool.shutdown(wait=True)


def loader_batches(cfg: Any, standin: bool = False) -> tuple[str, Callable[[], Iterable[Any]]]:
    """(workload name, factory of the batch iterator) for a loader-only rung; ``standin=True`` forces the stand-in."""
    factory = None if standin else _adapter_factory(cfg)
    if factory is not None:
        return "adapter", factory
    return "standin", lambda: StandinLoader(cfg, seed=int(getattr(cfg, "seed", 0)))
