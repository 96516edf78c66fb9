"""Simulation of BCDI rocking scans under dynamical diffraction (paper Fig. 2 and Fig. 4 samples).

* :mod:`.shapes`, :mod:`.displacement` — crystal shapes s(r) and displacement fields u(r) on the grid.
* :mod:`.noise` — Poisson photon counts and detector defects (flagged in ``valid``).
* :mod:`.config` — typed configuration and TOML loading; :mod:`.presets` — the paper presets.
* :mod:`.scan` — :func:`simulate_dataset`; :mod:`.refraction` — predicted refraction shift.
* :mod:`.figures` — rocking curves (Fig. 2b) and ground-truth slices (Fig. 2c–e).
"""

from dynbcdi.simulate.config import SimulationConfig, load_config
from dynbcdi.simulate.presets import PRESETS, preset, resize, sized_preset
from dynbcdi.simulate.scan import rocking_curve, simulate_dataset

__all__ = ["PRESETS", "SimulationConfig", "load_config", "preset", "resize", "rocking_curve", "simulate_dataset",
           "sized_preset"]
