"""Built-in crystals and CIF loading, on top of xrayutilities' materials database.

Built-in materials (`BUILTIN_MATERIALS`):

* Au, Si, Ge, Pt: lattice and basis from ``xrayutilities.materials`` (Au a = 4.0782 Å,
  Si a = 5.43104 Å, Ge a = 5.65785 Å, Pt a = 3.9242 Å).
* Pb: fcc Fm-3m, a = 4.9502 Å at room temperature (Wyckoff, *Crystal Structures*, 2nd ed.,
  Vol. 1, 1963); not in xrayutilities' database, so built here from the space group.
* Sr2IrO4: tetragonal I4₁/acd (origin choice 2), a = 5.4994 Å, c = 25.7841 Å, atomic positions of
  Crawford et al., Phys. Rev. B 49, 9198 (1994); shipped as ``data/Sr2IrO4.cif``.

The elemental crystals carry a Debye temperature (`DEBYE_TEMPERATURE_K`, Kittel, *Introduction to
Solid State Physics*, 8th ed., Table 5.1) so that a Debye–Waller factor can be computed at any
temperature with xrayutilities' Debye model. Any other material is read from a CIF file with
``xrayutilities.materials.Crystal.fromCIF``; its isotropic displacement parameters, if present,
give its Debye–Waller factors.

Lattice-constant overrides (`lattice_a_m`, `lattice_c_m`, metres) replace the free lattice
parameters of the space group, e.g. Au with the paper's a = 4.07 Å:
``load_crystal("Au", lattice_a_m=4.07e-10)``.
"""

from __future__ import annotations

import copy
import logging
import math
import os
from importlib import resources
from pathlib import Path

import xrayutilities as xu

logger = logging.getLogger(__name__)

BUILTIN_MATERIALS: tuple[str, ...] = ("Au", "Si", "Ge", "Pt", "Pb", "Sr2IrO4")

# Debye temperatures θD (K) of the elemental built-ins (Kittel, ISSP 8th ed., Table 5.1).
DEBYE_TEMPERATURE_K: dict[str, float] = {
    "Au": 165.0,
    "Si": 645.0,
    "Ge": 374.0,
    "Pt": 240.0,
    "Pb": 105.0,
}

_PB_LATTICE_A_ANGSTROM = 4.9502
_CIF_BUILTINS = {"Sr2IrO4": "Sr2IrO4.cif"}


def _canonical_builtin(name: str) -> str | None:
    """Built-in name matching `name` case-insensitively, or None."""
    for builtin in BUILTIN_MATERIALS:
        if builtin.lower() == name.strip().lower():
            return builtin
    return None


def _elemental_crystal(name: str) -> xu.materials.Crystal:
    if name == "Pb":
        lattice = xu.materials.SGLattice(
            225, _PB_LATTICE_A_ANGSTROM, atoms=[xu.materials.elements.Pb], pos=["4a"]
        )
    else:
        lattice = copy.deepcopy(getattr(xu.materials, name).lattice)
    return xu.materials.Crystal(name, lattice, thetaDebye=DEBYE_TEMPERATURE_K[name])


def _cif_crystal(path: Path, name: str | None = None) -> xu.materials.Crystal:
    try:
        crystal = xu.materials.Crystal.fromCIF(str(path))
    except Exception as err:  # xrayutilities raises assorted errors on malformed files
        raise ValueError(f"cannot read a crystal structure from CIF file {str(path)!r}: {err}") from err
    if crystal.lattice.nsites == 0:
        raise ValueError(f"CIF file {str(path)!r} defines no atoms")
    if name is not None:
        crystal.name = name
    return crystal


def builtin_cif_path(name: str) -> Path:
    """Path of the CIF file shipped for the built-in material `name` (only Sr2IrO4 has one)."""
    canonical = _canonical_builtin(name)
    if canonical not in _CIF_BUILTINS:
        raise ValueError(f"no CIF file is shipped for material {name!r}; CIF built-ins: {tuple(_CIF_BUILTINS)}")
    return Path(str(resources.files("dynbcdi.materials") / "data" / _CIF_BUILTINS[canonical]))


def material_label(material: str | os.PathLike) -> str:
    """Name used for `material` in results: the built-in's name or the CIF path as given."""
    if isinstance(material, str):
        canonical = _canonical_builtin(material)
        if canonical is not None:
            return canonical
    return os.fspath(material)


def _apply_lattice_overrides(
    crystal: xu.materials.Crystal, lattice_a_m: float | None, lattice_c_m: float | None
) -> None:
    for label, value, attr in (("lattice_a_m", lattice_a_m, "a"), ("lattice_c_m", lattice_c_m, "c")):
        if value is None:
            continue
        if not (math.isfinite(value) and 0 < value < 1e-7):
            raise ValueError(f"{label} must be a positive length in metres (< 100 nm), got {value!r}")
        try:
            setattr(crystal.lattice, attr, value * 1e10)
        except Exception as err:
            raise ValueError(
                f"{label}={value!r} cannot be applied to {crystal.name} "
                f"({crystal.lattice.name}): {err}"
            ) from err


def load_crystal(
    material: str | os.PathLike,
    *,
    lattice_a_m: float | None = None,
    lattice_c_m: float | None = None,
) -> xu.materials.Crystal:
    """Return an xrayutilities Crystal for a built-in name or a CIF file path.

    Parameters
    ----------
    material : a name of `BUILTIN_MATERIALS` (case-insensitive) or the path of a CIF file.
    lattice_a_m, lattice_c_m : optional lattice constants a and c (metres) replacing the
        defaults; a sets a = b = c for cubic crystals, c only exists for tetragonal/hexagonal ones.

    Returns a fresh object each call (callers may modify it). Raises ValueError for an unknown
    material (the message lists the built-ins), an unreadable CIF, or an impossible override.
    """
    canonical = _canonical_builtin(material) if isinstance(material, str) else None
    if canonical in DEBYE_TEMPERATURE_K:
        crystal = _elemental_crystal(canonical)
    elif canonical in _CIF_BUILTINS:
        crystal = _cif_crystal(builtin_cif_path(canonical), name=canonical)
    else:
        path = Path(os.fspath(material))
        if not path.is_file():
            raise ValueError(
                f"unknown material {os.fspath(material)!r}: not a built-in "
                f"({', '.join(BUILTIN_MATERIALS)}) and not an existing CIF file"
            )
        crystal = _cif_crystal(path)
    _apply_lattice_overrides(crystal, lattice_a_m, lattice_c_m)
    logger.debug("loaded %s: %s", crystal.name, crystal.lattice.name)
    return crystal


def static_lattice_copy(crystal: xu.materials.Crystal) -> xu.materials.Crystal:
    """Copy of `crystal` with every displacement parameter set to zero (no Debye–Waller factor).

    The copy is described in space group P1 (same cell, same expanded atomic positions), which
    leaves every structure factor unchanged apart from the Debye–Waller factors.
    """
    lat = crystal.lattice
    atoms, positions, occupancies = [], [], []
    for atom, position, occupancy, _b in lat.base():
        atoms.append(atom)
        positions.append(("1a", tuple(position)))
        occupancies.append(occupancy)
    p1 = xu.materials.SGLattice(
        1, lat.a, lat.b, lat.c, lat.alpha, lat.beta, lat.gamma,
        atoms=atoms, pos=positions, occ=occupancies, b=[0.0] * len(atoms),
    )
    return xu.materials.Crystal(crystal.name, p1)
