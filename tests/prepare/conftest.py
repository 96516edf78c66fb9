"""A small synthetic 34-ID-C RawScan (Au 111 at 9 keV, scan 54's detector angles) for the prepare tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dynbcdi.io.readers.base import RawScan
from dynbcdi.materials import reflection_constants

N, ROWS, COLS = 15, 40, 48
PEAK = (7, 22, 30)  # (frame, row, col) of the Bragg peak in the raw stack
STEP_DEG = 0.005
SCAN54 = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "aps34idc-scan54"


def synthetic_frames(seed: int = 0) -> np.ndarray:
    """(N, ROWS, COLS) Poisson counts: a Gaussian Bragg peak with fringes on a weak background."""
    j, r, c = np.meshgrid(np.arange(N), np.arange(ROWS), np.arange(COLS), indexing="ij")
    d2 = ((j - PEAK[0]) / 2.0) ** 2 + ((r - PEAK[1]) / 3.0) ** 2 + ((c - PEAK[2]) / 4.0) ** 2
    fringes = 1 + 0.5 * np.cos(1.3 * (c - PEAK[2]))
    return np.random.default_rng(seed).poisson(3000 * np.exp(-d2 / 2) * fringes + 0.1).astype(float)


def make_raw(frames: np.ndarray | None = None, jitter_deg: float = 5e-6, **kwargs) -> RawScan:
    """RawScan of :func:`synthetic_frames` with jittery read-backs and the nominal step in the metadata."""
    frames = synthetic_frames() if frames is None else frames
    n = frames.shape[0]
    theta = -0.02 + STEP_DEG * np.arange(n) + jitter_deg * np.sin(1.7 * np.arange(n))
    fields = dict(
        frames=frames, beamline="34idc",
        positions_deg={"theta": theta, "chi": 90.0, "phi": -5.0, "delta": 32.174, "gamma": 12.6346},
        rocking_motor="theta", energy_eV=9000.0, detector_distance_m=0.5, pixel_size_m=55e-6,
        frames_offset_px=(-40.0, -48.0),  # frames end on the chip corner (256, 256)
        metadata={"rocking_positions": "file", "rocking_motor_file": "Theta",
                  "command_parsed": {"motor": "th", "step": STEP_DEG}, "detector_roi_data": (216, 256, 208, 256)},
    )
    fields.update(kwargs)
    return RawScan(**fields)


@pytest.fixture(scope="session")
def au111():
    return reflection_constants("Au", (1, 1, 1), 9000.0)


@pytest.fixture(scope="session")
def synth():
    """The synthetic scan's constants and factories (tests import nothing from conftest: importlib mode)."""
    from types import SimpleNamespace

    return SimpleNamespace(N=N, ROWS=ROWS, COLS=COLS, PEAK=PEAK, STEP_DEG=STEP_DEG, make_raw=make_raw,
                           frames=synthetic_frames, scan54=SCAN54)
