"""Beam directions from frame rotations carry ~1e-17 rounding: kh ∥ ẑ must still be recognised."""

import numpy as np
import pytest

from dynbcdi.forward.tte import _unit


def test_rounding_level_transverse_components_are_zeroed():
    kh = _unit((1.8e-18, -3e-17, 1.0), "kh_dir")
    assert kh[0] == 0.0 and kh[1] == 0.0 and kh[2] == 1.0


def test_real_tilts_are_kept():
    k0 = _unit((np.sin(0.78), 1e-9, np.cos(0.78)), "k0_dir")
    assert k0[1] == pytest.approx(1e-9 / np.hypot(np.sin(0.78), np.cos(0.78)), rel=1e-12)
    assert np.linalg.norm(k0) == pytest.approx(1.0, abs=1e-15)
