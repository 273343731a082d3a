"""Procedural tabletop renderer: the known answer (displacement = k x action), determinism, bounds."""

import numpy as np
import pytest

from hlrp_core.data.synth import tabletop as tt


@pytest.mark.parametrize("hw", [(64, 64), (96, 128), (128, 128)])
def test_displacement_equals_k_times_action(hw):
    for pid in range(8):
        ep = tt.render_episode([3, pid], hw, 20, primitive_id=pid)
        c = np.array([tt.gripper_centroid(f) for f in ep.frames])
        assert not np.isnan(c).any()
        for k in (1, 3, 5):
            disp = (c[k:] - c[:-k]) * np.array([hw[1], hw[0]])
            want = k * ep.actions[0] * np.array([hw[1], hw[0]])
            assert np.abs(disp - want).max() < 0.3, (pid, k)
        assert ep.primitive_id == pid
        assert tt.DIRECTION_NAMES[pid] in ep.instruction
        # one speed step is at least 2 px at 64 px: clearly visible
        assert np.abs(ep.actions[0] * np.array([hw[1], hw[0]])).max() >= 2


def test_stays_in_frame_and_deterministic():
    for i in range(40):
        ep = tt.render_episode([0, i], (64, 64), 20)
        assert (ep.positions > 0.05).all() and (ep.positions < 0.95).all()
    a = tt.render_episode([7, 1], (64, 64), 20)
    b = tt.render_episode([7, 1], (64, 64), 20)
    c = tt.render_episode([7, 2], (64, 64), 20)
    assert np.array_equal(a.frames, b.frames) and a.instruction == b.instruction
    assert not np.array_equal(a.frames, c.frames)


def test_codepoints_roundtrip():
    cps = tt.codepoints("push the red block left")
    assert cps.dtype == np.int32 and cps.shape == (512,) and cps[-1] == 0
    assert tt.decode_codepoints(cps) == "push the red block left"


def test_too_long_episode_is_refused():
    with pytest.raises(ValueError, match="fit"):
        tt.render_episode([0], (64, 64), 40, primitive_id=0)
