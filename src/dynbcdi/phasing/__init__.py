"""Kinematic phase retrieval (ER/HIO/RAAR/shrink-wrap/ML) and detector→grid frame conversion."""

from dynbcdi.analysis import twin as twin_image  # the one twin (analysis.twin), kept under its phasing name
from dynbcdi.phasing.frames import check_grid_z, detector_to_grid, grid_shape_for, grid_to_lab
from dynbcdi.phasing.postprocess import center_support, remove_phase_offset, remove_twin
from dynbcdi.phasing.recipes import PRESETS, Recipe, parse_recipe
from dynbcdi.phasing.retrieval import PhasingResult, ProgressInfo, phase_retrieval

__all__ = [
    "PRESETS",
    "PhasingResult",
    "ProgressInfo",
    "Recipe",
    "center_support",
    "check_grid_z",
    "detector_to_grid",
    "grid_shape_for",
    "grid_to_lab",
    "parse_recipe",
    "phase_retrieval",
    "remove_phase_offset",
    "remove_twin",
    "twin_image",
]
