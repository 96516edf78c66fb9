"""Forward models of a Bragg rocking scan on the grid frame (docs/CONVENTIONS.md, dynbcdi.forward).

- :mod:`.base`: the :class:`~.base.ForwardModel` interface, :class:`~.base.TwoBeamModel` (construction
  from a geometry and reflection) and the far-field helper.
- :mod:`.tte`: the two-beam Takagi–Taupin solver (:func:`~.tte.exit_waves`, :class:`~.tte.TTEModel`).
- :mod:`.integrators`: its z-marching kernels (Strang split-step, Lawson RK4).
- :mod:`.kinematic`: :class:`~.kinematic.KinematicModel` and :class:`~.kinematic.RefractionKinematicModel`.
"""

from .base import ForwardModel, TwoBeamModel, far_field, far_field_intensity
from .kinematic import KinematicModel, RefractionKinematicModel
from .tte import TTEModel, exit_waves, min_transverse_width

__all__ = ["ForwardModel", "TwoBeamModel", "far_field", "far_field_intensity", "TTEModel", "exit_waves", "min_transverse_width",
           "KinematicModel", "RefractionKinematicModel"]
