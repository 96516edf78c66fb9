"""Figures (matplotlib, backend-independent ``Figure`` objects; callers save them).

Functions never call pyplot, so they run headless and leave no global state.
"""

from dynbcdi.plot.complex_slices import complex_slices, complex_to_rgb
from dynbcdi.plot.curves import convergence, peak_position, rocking_curves
from dynbcdi.plot.isosurface import crystal_isosurface, diffraction_isosurface
from dynbcdi.plot.strain_figure import strain_figure
from dynbcdi.plot.strain_tensor_figure import strain_tensor_figure
from dynbcdi.plot.uncertainty_figure import uncertainty_figure

__all__ = [
    "complex_slices",
    "complex_to_rgb",
    "convergence",
    "crystal_isosurface",
    "diffraction_isosurface",
    "peak_position",
    "rocking_curves",
    "strain_figure",
    "strain_tensor_figure",
    "uncertainty_figure",
]
