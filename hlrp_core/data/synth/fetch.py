"""Known-answer episodes from a physics-simulated robot arm: gymnasium-robotics FetchReach (MuJoCo), rendered
offscreen on the CPU (``MUJOCO_GL=egl``, shadows and multisampling off), seen from a workspace camera
(:data:`CAMERA`).

A scripted policy moves the gripper in one of 8 horizontal directions at constant commanded speed; the stored action
is the commanded Fetch action (dx, dy, dz, gripper) in [-1, 1] (x 0.05 m per step), the state the measured gripper
xyz + finger width. Before recording, an unrecorded pre-roll puts the gripper on the opposite side of the workspace
centre so the whole motion stays within reach.

gymnasium-robotics 1.4.2 trips an assertion on mujoco 3.17 (joint-type membership test between numpy ints and
mujoco enums); :func:`_patch_mujoco_utils` gives that module plain-int joint-type constants.
"""

from __future__ import annotations

import os
import types
from dataclasses import dataclass

import numpy as np

from .tabletop import DIRECTION_NAMES, DIRECTIONS

SPEED = 0.25          # commanded action magnitude per axis (x 0.05 m per step = 1.25 cm)
# Workspace camera looking down at the table (60 deg) from 1.1 m: the gripper fills ~1/5 of the frame. Fetch's own
# default camera (2.5 m, 14 deg) shows the whole robot, where one pair moved ~1% of the pixels and a tiny LAQ did
# not find the commanded motion (NMI 0.37, probe R2 -0.35; CHANGELOG.md, 2026-11-26).
CAMERA = {"distance": 1.1, "azimuth": 180.0, "elevation": -60.0, "lookat": (1.34, 0.75, 0.45)}
GL_PACKAGES = {"egl": "libegl1 (and libgl1-mesa-dri for llvmpipe)", "osmesa": "libosmesa6", "glfw": "libglfw3"}
_TEMPLATES = ("move the arm {d}", "move the gripper {d}", "reach {d}")


class GLUnavailableError(RuntimeError):
    """MuJoCo's offscreen GL backend could not start; the message names the Debian package to install."""


@dataclass
class FetchEpisode:
    frames: np.ndarray        # uint8 [T, H, W, 3]
    actions: np.ndarray       # float32 [T, 4] commanded
    states: np.ndarray        # float32 [T, 4] gripper xyz + finger width
    instruction: str
    primitive_id: int


def _patch_mujoco_utils() -> None:
    import mujoco
    from gymnasium_robotics.utils import mujoco_utils as mu

    if getattr(mu, "_hlrp_patched", False):
        return
    joint = types.SimpleNamespace(**{n: int(getattr(mujoco.mjtJoint, n)) for n in
                                     ("mjJNT_FREE", "mjJNT_BALL", "mjJNT_HINGE", "mjJNT_SLIDE")})

    class _Shim(types.ModuleType):
        def __getattr__(self, name):
            return getattr(mujoco, name)

    shim = _Shim("mujoco_shim")
    shim.mjtJoint = joint
    mu.mujoco = shim
    mu._hlrp_patched = True


class FetchRenderer:
    """One FetchReach environment, reused across episodes."""

    def __init__(self, hw: tuple[int, int] = (96, 96)):
        os.environ.setdefault("MUJOCO_GL", "egl")
        backend = os.environ["MUJOCO_GL"]
        try:
            import gymnasium as gym
            import gymnasium_robotics

            _patch_mujoco_utils()
            gym.register_envs(gymnasium_robotics)
            cam = {**CAMERA, "lookat": np.asarray(CAMERA["lookat"], float)}
            self.env = gym.make("FetchReach-v4", render_mode="rgb_array", width=hw[1], height=hw[0],
                                default_camera_config=cam)
            model = self.env.unwrapped.model
            model.vis.quality.shadowsize = 0
            model.vis.quality.offsamples = 0
            self.env.reset(seed=0)
            frame = self.env.render()
        except Exception as exc:  # GL/EGL failures surface as many exception types
            pkg = GL_PACKAGES.get(backend, "libegl1 or libosmesa6")
            raise GLUnavailableError(
                f"MuJoCo offscreen rendering (MUJOCO_GL={backend}) could not start: {type(exc).__name__}: {exc}. "
                f"Install the Debian package {pkg} (apt-get install {pkg.split()[0]}), or set MUJOCO_GL=osmesa "
                f"after installing libosmesa6.") from exc
        if frame is None or np.asarray(frame).shape[:2] != tuple(hw):
            raise GLUnavailableError(f"MuJoCo rendered no frame of size {hw} (MUJOCO_GL={backend}); install libegl1")
        self.hw = hw

    def close(self) -> None:
        self.env.close()

    def _state(self, obs) -> np.ndarray:
        o = obs["observation"]
        return np.array([o[0], o[1], o[2], o[3] + o[4]], dtype=np.float32)

    def episode(self, seed_seq, num_steps: int, primitive_id: int | None = None) -> FetchEpisode:
        rng = np.random.default_rng(seed_seq)
        pid = int(rng.integers(8)) if primitive_id is None else int(primitive_id) % 8
        dx, dy = DIRECTIONS[pid]
        obs, _ = self.env.reset(seed=int(rng.integers(2**31)))
        centre = obs["observation"][:3].copy()
        # pre-roll (not recorded): move to the start point opposite the direction of travel, with a random offset
        half = (num_steps - 1) * SPEED * 0.05 / 2
        # image convention -> world: image right = world -y, image up = world -x for the default Fetch camera
        world_dir = np.array([dy, -dx, 0.0])
        start = centre - world_dir * half + np.array([*rng.uniform(-0.03, 0.03, size=2), 0.0])
        for _ in range(25):
            err = (start - obs["observation"][:3]) / 0.05
            obs, *_ = self.env.step(np.array([*np.clip(err, -1, 1), 0.0], dtype=np.float32))
        command = np.array([world_dir[0] * SPEED, world_dir[1] * SPEED, 0.0, 0.0], dtype=np.float32)
        frames = np.empty((num_steps, *self.hw, 3), dtype=np.uint8)
        states = np.empty((num_steps, 4), dtype=np.float32)
        for t in range(num_steps):
            frames[t] = self.env.render()
            states[t] = self._state(obs)
            if t < num_steps - 1:
                obs, *_ = self.env.step(command)
        instruction = _TEMPLATES[int(rng.integers(len(_TEMPLATES)))].format(d=DIRECTION_NAMES[pid])
        return FetchEpisode(frames=frames, actions=np.repeat(command[None], num_steps, 0), states=states,
                            instruction=instruction, primitive_id=pid)


def render_episodes_subprocess(hw: tuple[int, int], episodes: int, steps: int, seed: int, crc: int,
                               split_id: int = 0, timeout: float = 600) -> dict:
    """Render Fetch episodes in a child process and return them as arrays.

    TensorFlow and MuJoCo's EGL context crash (segfault) when they share a process, so the data writer (which needs
    TF) never renders MuJoCo itself. Raises GLUnavailableError (with the Debian package to install) when the child
    cannot render.
    """
    import subprocess
    import sys
    import tempfile

    with tempfile.TemporaryDirectory(prefix="hlrp-fetch-") as tmp:
        out = os.path.join(tmp, "episodes.npz")
        cmd = [sys.executable, "-m", "hlrp_core.data.synth.fetch", out, str(hw[0]), str(hw[1]), str(episodes),
               str(steps), str(seed), str(crc), str(split_id)]
        env = dict(os.environ)
        env.setdefault("MUJOCO_GL", "egl")
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
        if proc.returncode != 0 or not os.path.exists(out):
            lines = [ln for ln in proc.stderr.splitlines() if "GLUnavailableError" in ln or "MuJoCo" in ln]
            detail = lines[-1] if lines else proc.stderr.strip().splitlines()[-1:] or [f"exit {proc.returncode}"]
            detail = detail if isinstance(detail, str) else detail[0]
            pkg = GL_PACKAGES.get(env["MUJOCO_GL"], "libegl1 or libosmesa6")
            raise GLUnavailableError(f"MuJoCo rendering subprocess failed (exit {proc.returncode}): {detail}. "
                                     f"If the GL backend is missing, install the Debian package {pkg}.")
        with np.load(out, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}


def _main(argv) -> int:
    out, h, w, n, steps, seed, crc, split_id = argv
    renderer = FetchRenderer((int(h), int(w)))
    eps = [renderer.episode([int(seed), int(crc), int(split_id), i], int(steps), primitive_id=(i + int(seed)) % 8)
           for i in range(int(n))]
    renderer.close()
    np.savez(out, frames=np.stack([e.frames for e in eps]), actions=np.stack([e.actions for e in eps]),
             states=np.stack([e.states for e in eps]), instructions=np.array([e.instruction for e in eps]),
             primitive_ids=np.array([e.primitive_id for e in eps], dtype=np.int32))
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(_main(sys.argv[1:]))
