"""Physics inputs: crystals (built-in or CIF) and the two-beam constants of a reflection.

>>> r = reflection_constants("Au", (2, 0, 0), 8000.0, lattice_a_m=4.07e-10)
>>> round(2 * r.bragg_angle_rad * 180 / 3.141592653589793, 2)
44.76
"""

from dynbcdi.materials.library import (
    BUILTIN_MATERIALS,
    DEBYE_TEMPERATURE_K,
    builtin_cif_path,
    load_crystal,
)
from dynbcdi.materials.susceptibility import (
    ROOM_TEMPERATURE_K,
    ReflectionConstants,
    reflection_constants,
)

__all__ = [
    "BUILTIN_MATERIALS",
    "DEBYE_TEMPERATURE_K",
    "ROOM_TEMPERATURE_K",
    "ReflectionConstants",
    "builtin_cif_path",
    "load_crystal",
    "reflection_constants",
]
