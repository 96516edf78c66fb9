"""dynbcdi: Bragg coherent X-ray diffraction imaging under dynamical diffraction.

The package models a BCDI rocking scan with the two-beam Takagi-Taupin equations on an
orthogonal grid and reconstructs crystal shape and displacement by automatic differentiation
(Wu et al., "Unveiling nano-scale crystal deformation using coherent X-ray dynamical diffraction").
SI units inside: metres, radians, rad/m for wave vectors; energies in eV at the edges.
"""

__version__ = "0.1.0"
