"""Known-answer episode generators: procedural tabletop (numpy/PIL) and a MuJoCo simulated arm (lazy import)."""

from .tabletop import (DIRECTION_NAMES, DIRECTIONS, TabletopEpisode, codepoints, decode_codepoints,
                       gripper_centroid, render_episode, resize_frames)

__all__ = ["DIRECTIONS", "DIRECTION_NAMES", "TabletopEpisode", "render_episode", "gripper_centroid",
           "resize_frames", "codepoints", "decode_codepoints"]
