"""Analysis of reconstructions: displacement, strain, supports, alignment and error metrics."""

from dynbcdi.analysis.metrics import (AlignmentResult, ComparisonMetrics, align_to, compare, fourier_shift, metrics_of,
                                     twin)
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
    "AlignmentResult",
    "ComparisonMetrics",
    "Isosurface",
    "PhaseRamp",
    "StrainResult",
    "align_to",
    "compare",
    "displacement",
    "fourier_shift",
    "isosurface",
    "metrics_of",
    "remove_phase_ramp",
    "strain",
    "strain_analysis",
    "support_from_amplitude",
    "twin",
    "unwrap_phase",
]
