"""Output of a joint multi-reflection fit: u (vector) and ε (tensor) for ParaView, and the strain figure."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from dynbcdi.reconstruct.crystal import CrystalField

__all__ = ["JOINT_OUTPUTS", "write_joint_result"]

#: file names written into the output folder
JOINT_OUTPUTS = {"vti": "field.vti", "figure": "strain_tensor.png"}


def write_joint_result(field: CrystalField, out_dir: str | os.PathLike, threshold: float = 0.5,
                       overwrite: bool = False, dpi: int = 150) -> dict[str, Path]:
    """Write ``field.vti`` (s, support, u vector, strain tensor; :func:`~dynbcdi.reconstruct.multi.write_field_vti`)
    and ``strain_tensor.png`` (the six ε_ij components in central slices) into ``out_dir``.

    field : the fitted :class:`CrystalField` on a sample grid whose axes are the sample frame; u in m.
    threshold : support = s > threshold · max s (both outputs use the same one). Both paths are
    checked before anything is written (FileExistsError unless ``overwrite``). Returns {"vti", "figure"} → path.
    """
    from dynbcdi.analysis.strain import strain_tensor
    from dynbcdi.io.filecheck import check_new_output
    from dynbcdi.plot.strain_tensor_figure import strain_tensor_figure
    from dynbcdi.reconstruct.multi import write_field_vti

    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must lie in (0, 1), got {threshold}")
    out = Path(out_dir)
    paths = {key: check_new_output(out / name, "joint result", overwrite=overwrite,
                                   remedy="pass overwrite=True to replace it")
             for key, name in JOINT_OUTPUTS.items()}
    if not np.allclose(field.grid.frame, np.eye(3)):  # write_field_vti refuses it too, but only after the PNG
        raise ValueError("write_joint_result needs a sample grid whose axes are the sample frame (frame = identity)")
    s = field.s.detach().cpu().numpy()
    u = field.u.detach().cpu().numpy()
    support = s > threshold * s.max()
    eps = strain_tensor(u, field.grid.spacing_m, support)
    out.mkdir(parents=True, exist_ok=True)
    fig = strain_tensor_figure(eps, support, field.grid.spacing_m,
                               title=f"strain tensor, support s > {threshold:g} max s")
    fig.savefig(paths["figure"], dpi=dpi)
    paths["vti"] = Path(write_field_vti(paths["vti"], field, threshold=threshold, overwrite=overwrite))
    return paths
