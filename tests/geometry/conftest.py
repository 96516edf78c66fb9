"""Shared fixtures for the geometry tests: a stand-in reflection independent of dynbcdi.materials."""

from dataclasses import dataclass

import numpy as np
import pytest
from scipy import constants


@dataclass(frozen=True)
class StandInReflection:
    """Minimal ReflectionLike: Au (200), a = 4.07 Å (the paper's value), cubic d = a/2."""

    energy_eV: float
    wavelength_m: float
    h_norm: float
    bragg_angle_rad: float


def au200(energy_eV: float = 8000.0) -> StandInReflection:
    lam = constants.h * constants.c / (energy_eV * constants.e)
    d = 4.07e-10 / 2
    return StandInReflection(energy_eV, lam, 2 * np.pi / d, float(np.arcsin(lam / (2 * d))))


@pytest.fixture
def reflection() -> StandInReflection:
    return au200()


@pytest.fixture
def scan() -> np.ndarray:
    """The paper's rocking range ±0.2°, here with 9 angles (small, uniform, symmetric)."""
    return np.radians(np.linspace(-0.2, 0.2, 9))
