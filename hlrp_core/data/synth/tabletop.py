"""Procedural tabletop episodes with a known answer (numpy/PIL, fast).

A dark gripper and a few coloured blocks on a textured table, seen from above. Each episode follows ONE motion
primitive out of 8 directions, named by its instruction ("move the gripper up left", "push the red block down"). The
gripper moves by exactly ``step`` (a fraction of the image width/height per axis) every step, so frame t+k shows the
gripper displaced by k x action. Start positions are chosen so that the gripper (and a pushed block) never leaves
the frame. Everything is a pure function of the seed sequence given.

Coordinates: x to the right, y downwards (image convention), both normalised to [0, 1] of the image width/height.
The gripper is the only dark thing in the image (every channel < 90): its centroid locates it (see
:func:`gripper_centroid`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw

#: The 8 motion primitives: (dx, dy) signs in image coordinates, and their names.
DIRECTIONS: tuple[tuple[int, int], ...] = ((1, 0), (1, -1), (0, -1), (-1, -1), (-1, 0), (-1, 1), (0, 1), (1, 1))
DIRECTION_NAMES: tuple[str, ...] = ("right", "up right", "up", "up left", "left", "down left", "down", "down right")

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (215, 40, 40), "green": (40, 170, 60), "blue": (50, 90, 225), "yellow": (235, 205, 40),
    "purple": (150, 70, 205), "orange": (245, 135, 30), "cyan": (40, 195, 205), "pink": (240, 120, 185),
}
GRIPPER_RGB = (30, 30, 34)
GRIPPER_HALF = 0.07   # half size, fraction of the image side
BLOCK_HALF = 0.06
MARGIN = 0.02
DEFAULT_STEP = 1.0 / 32.0

_MOVE_TEMPLATES = ("move the gripper {d}", "move {d}", "go {d}", "slide the gripper {d}")
_PUSH_TEMPLATES = ("push the {c} block {d}", "push the {c} cube {d}")


@dataclass
class TabletopEpisode:
    """One rendered episode.

    Attributes:
        frames: uint8 [T, H, W, 3].
        actions: float32 [T, 2] normalised displacement (dx, dy) from frame t to t+1 (the last one repeats the
            primitive; it is never executed inside the episode).
        positions: float32 [T, 2] normalised gripper centre (x, y) in frame t.
        instruction: the episode's instruction (constant over steps).
        primitive_id: index into DIRECTIONS.
        pushed_color: colour name of the pushed block, "" when the instruction only moves the gripper.
    """

    frames: np.ndarray
    actions: np.ndarray
    positions: np.ndarray
    instruction: str
    primitive_id: int
    pushed_color: str = ""
    wrist: list = field(default_factory=list)


def _texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    base = rng.uniform(150, 215, size=3)
    tint = rng.uniform(-25, 25, size=3)
    gh, gw = max(2, h // 8), max(2, w // 8)
    noise = rng.normal(0, 1, size=(gh, gw)).astype(np.float32)
    noise_img = Image.fromarray(((noise - noise.min()) / (np.ptp(noise) + 1e-6) * 255).astype(np.uint8))
    smooth = np.asarray(noise_img.resize((w, h), Image.BILINEAR), dtype=np.float32) / 255.0 - 0.5
    # wood-like grain: stripes along a random axis
    freq = rng.uniform(6, 14)
    phase = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    axis = xx / w if rng.random() < 0.5 else yy / h
    grain = np.sin(2 * np.pi * freq * axis + 3.0 * smooth + phase)
    img = base[None, None, :] + tint[None, None, :] * smooth[..., None] * 2 + 8.0 * grain[..., None]
    return np.clip(img, 115, 245).astype(np.uint8)


def _box(cx: float, cy: float, half: float, w: int, h: int) -> tuple[int, int, int, int]:
    side = half * min(w, h)
    return (int(round(cx * w - side)), int(round(cy * h - side)), int(round(cx * w + side)),
            int(round(cy * h + side)))


def _draw_gripper(draw: ImageDraw.ImageDraw, cx: float, cy: float, w: int, h: int) -> None:
    x0, y0, x1, y1 = _box(cx, cy, GRIPPER_HALF, w, h)
    s = max(1, (x1 - x0) // 4)
    draw.rectangle((x0, y0, x1, y0 + s), fill=GRIPPER_RGB)              # palm
    draw.rectangle((x0, y0, x0 + s, y1), fill=GRIPPER_RGB)              # left finger
    draw.rectangle((x1 - s, y0, x1, y1), fill=GRIPPER_RGB)              # right finger
    draw.rectangle((x0 + s, y0 + s, x1 - s, y0 + 2 * s), fill=(70, 70, 78))  # wrist shade (still dark)


def render_episode(seed_seq, hw: tuple[int, int], num_steps: int, *, step: float = DEFAULT_STEP,
                   primitive_id: int | None = None, num_objects: int = 3, push_prob: float = 0.5,
                   wrist_hw: tuple[int, int] | None = None) -> TabletopEpisode:
    """Render one episode at native size ``hw`` (H, W).

    Args:
        seed_seq: anything ``np.random.default_rng`` accepts (e.g. ``[seed, split_id, episode_index]``).
        hw: image (H, W).
        num_steps: T (frames). The gripper travels (T-1) x step per moving axis, which must fit in the frame.
        step: normalised displacement per step and axis.
        primitive_id: the direction (0..7); random when None.
        num_objects: coloured blocks on the table (one of them is pushed when the instruction says so).
        push_prob: probability of a "push the <colour> block" instruction.
        wrist_hw: also render a wrist camera (a crop around the gripper) at this size.
    """
    rng = np.random.default_rng(seed_seq)
    h, w = hw
    pid = int(rng.integers(8)) if primitive_id is None else int(primitive_id) % 8
    dxs, dys = DIRECTIONS[pid]
    travel = (num_steps - 1) * step
    push = rng.random() < push_prob
    ahead = GRIPPER_HALF + BLOCK_HALF + 0.015

    def start_range(sign: int) -> tuple[float, float]:
        lo_ext = GRIPPER_HALF + MARGIN
        hi_ext = GRIPPER_HALF + MARGIN
        if push and sign != 0:
            if sign > 0:
                hi_ext = ahead + BLOCK_HALF + MARGIN
            else:
                lo_ext = ahead + BLOCK_HALF + MARGIN
        lo = lo_ext + (travel if sign < 0 else 0.0)
        hi = 1.0 - hi_ext - (travel if sign > 0 else 0.0)
        return lo, hi

    (xlo, xhi), (ylo, yhi) = start_range(dxs), start_range(dys)
    if xlo > xhi or ylo > yhi:
        if push:
            push = False
            (xlo, xhi), (ylo, yhi) = start_range(dxs), start_range(dys)
        if xlo > xhi or ylo > yhi:
            raise ValueError(f"{num_steps} steps of {step:.4f} do not fit in the frame; use fewer steps")
    x0, y0 = rng.uniform(xlo, xhi), rng.uniform(ylo, yhi)
    # snap the start to the pixel grid so that every displacement is an exact pixel count when step*W is integral
    x0, y0 = round(x0 * w) / w, round(y0 * h) / h

    color_names = list(rng.choice(list(COLORS), size=num_objects, replace=False))
    objects = [(rng.uniform(0.12, 0.88), rng.uniform(0.12, 0.88)) for _ in range(num_objects)]
    pushed = ""
    if push:
        pushed = color_names[0]
        norm = float(np.hypot(dxs, dys))
        objects[0] = None  # moves with the gripper
    templates = _PUSH_TEMPLATES if push else _MOVE_TEMPLATES
    instruction = templates[int(rng.integers(len(templates)))].format(d=DIRECTION_NAMES[pid], c=pushed)
    background = _texture(rng, h, w)

    action = np.array([dxs * step, dys * step], dtype=np.float32)
    positions = np.array([[x0 + t * action[0], y0 + t * action[1]] for t in range(num_steps)], dtype=np.float32)
    frames = np.empty((num_steps, h, w, 3), dtype=np.uint8)
    wrist = []
    for t in range(num_steps):
        img = Image.fromarray(background)
        draw = ImageDraw.Draw(img)
        gx, gy = float(positions[t, 0]), float(positions[t, 1])
        for name, pos in zip(color_names, objects):
            if pos is None:
                bx, by = gx + dxs / norm * ahead, gy + dys / norm * ahead
            else:
                bx, by = pos
            draw.rectangle(_box(bx, by, BLOCK_HALF, w, h), fill=COLORS[name], outline=(90, 90, 90))
        _draw_gripper(draw, gx, gy, w, h)
        frames[t] = np.asarray(img)
        if wrist_hw is not None:
            half = 0.25
            crop = img.crop((int((gx - half) * w), int((gy - half) * h), int((gx + half) * w), int((gy + half) * h)))
            wrist.append(np.asarray(crop.resize((wrist_hw[1], wrist_hw[0]), Image.BILINEAR)))
    actions = np.repeat(action[None], num_steps, axis=0)
    return TabletopEpisode(frames=frames, actions=actions, positions=positions, instruction=instruction,
                           primitive_id=pid, pushed_color=pushed, wrist=wrist)


def gripper_centroid(frame: np.ndarray, threshold: int = 90) -> np.ndarray:
    """Normalised (x, y) centroid of the dark gripper pixels in an HxWx3 frame (works on JPEG-decoded frames)."""
    mask = frame.max(axis=-1) < threshold
    if not mask.any():
        return np.array([np.nan, np.nan], dtype=np.float32)
    ys, xs = np.nonzero(mask)
    h, w = mask.shape
    return np.array([(xs.mean() + 0.5) / w, (ys.mean() + 0.5) / h], dtype=np.float32)


def resize_frames(frames: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Cheap bilinear upscale of [T, h, w, 3] frames to (H, W)."""
    h, w = hw
    if frames.shape[1:3] == (h, w):
        return frames
    return np.stack([np.asarray(Image.fromarray(f).resize((w, h), Image.BILINEAR)) for f in frames])


def codepoints(text: str, length: int = 512) -> np.ndarray:
    """language_table encoding: an int32 array holding the instruction's UTF-8 bytes, NUL padded to ``length``
    (bytes, not Unicode code points: the two agree only for ASCII)."""
    cps = np.zeros(length, dtype=np.int32)
    arr = np.frombuffer(text.encode("utf-8")[:length], dtype=np.uint8).astype(np.int32)
    cps[: len(arr)] = arr
    return cps


def decode_codepoints(cps) -> str:
    arr = np.asarray(cps).reshape(-1)
    nz = np.nonzero(arr == 0)[0]
    end = int(nz[0]) if len(nz) else len(arr)
    return bytes(int(c) & 0xFF for c in arr[:end]).decode("utf-8", "replace")
