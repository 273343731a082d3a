"""Contact sheets: one PNG with a few episodes (first / middle / last frame) per dataset, for a quick look."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw

THUMB_H = 72
LABEL_W = 260


def episode_thumbs(frames: Sequence[np.ndarray]) -> list[np.ndarray]:
    """First, middle and last frame of an episode."""
    n = len(frames)
    return [frames[0], frames[n // 2], frames[n - 1]]


def save_contact_sheet(rows: Sequence[tuple[str, Sequence[np.ndarray]]], path) -> Path:
    """Write a PNG: one row per (label, frames) with the frames as thumbnails of height 72, label on the left."""
    thumbs_rows = []
    for label, frames in rows:
        thumbs = []
        for f in frames:
            img = Image.fromarray(np.asarray(f, dtype=np.uint8))
            w = max(1, round(img.width * THUMB_H / img.height))
            thumbs.append(img.resize((w, THUMB_H), Image.BILINEAR))
        thumbs_rows.append((label, thumbs))
    width = LABEL_W + max((sum(t.width + 4 for t in th) for _, th in thumbs_rows), default=0)
    sheet = Image.new("RGB", (max(width, LABEL_W + 10), max(1, len(rows)) * (THUMB_H + 6)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for r, (label, thumbs) in enumerate(thumbs_rows):
        y = r * (THUMB_H + 6) + 3
        for i, line in enumerate(str(label).split("\n")[:5]):
            draw.text((4, y + 2 + 12 * i), line[:42], fill=(0, 0, 0))
        x = LABEL_W
        for t in thumbs:
            sheet.paste(t, (x, y))
            x += t.width + 4
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.png")
    sheet.save(tmp)
    tmp.replace(path)
    return path
