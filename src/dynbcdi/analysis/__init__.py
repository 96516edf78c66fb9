"""Analysis of reconstructions: displacement, strain, supports, alignment and error metrics."""

from dynbcdi.analysis.metrics import (
    Agreement,
    AlignmentResult,
    ComparisonMetrics,
    agreement,
    align_to,
    compare,
    fourier_shift,
    invert_about_centre,
    metrics_of,
    twin,
)
from dynbcdi.analysis.strain import (
    PhaseRamp,
    StrainResult,
    displacement,
    remove_phase_ramp,
    strain,
    strain_analysis,
    unwrap_phase,
)
from dynbcdi.analysis.support import Isosurface, isosurface, support_from_amplitude

__all__ = [
    "Agreement",
    "AlignmentResult",
    "ComparisonMetrics",
    "Isosurface",
    "PhaseRamp",
    "StrainResult",
    "agreement",
    "align_to",
    "compare",
    "displacement",
    "fourier_shift",
    "invert_about_centre",
    "isosurface",
    "metrics_of",
    "remove_phase_ramp",
    "strain",
    "strain_analysis",
    "support_from_amplitude",
    "twin",
    "unwrap_phase",
]
