"""VTK .vti round trip: values, dtype, (z, y, x) axis order and spacing."""

import numpy as np
import pytest
from vtkmodules.vtkIOXML import vtkXMLImageDataReader

from dynbcdi.io.vtk import read_vti, write_vti


def test_vti_round_trip_axis_order(tmp_path):
    shape = (3, 4, 5)  # (Z, Y, X), all different so a transposition cannot go unnoticed
    z, y, x = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    ramp = (100 * z + 10 * y + x).astype(np.float32)  # value encodes its own (z, y, x) index
    obj = (1 + ramp) * np.exp(1j * 0.01 * ramp)
    strain = np.where(ramp > 50, ramp * 1e-4, np.nan)
    path = write_vti(
        tmp_path / "s.vti",
        {"ramp": ramp, "obj": obj, "strain": strain, "support": ramp > 20},
        spacing_m=(3e-9, 2e-9, 1e-9),
        origin_m=(1e-6, 0, 0),
    )
    arrays, spacing = read_vti(path)
    assert spacing == pytest.approx((3e-9, 2e-9, 1e-9), rel=1e-12)
    assert arrays["ramp"].dtype == np.float32 and arrays["ramp"].shape == shape
    np.testing.assert_array_equal(arrays["ramp"], ramp)
    np.testing.assert_allclose(arrays["obj_amplitude"], np.abs(obj), rtol=1e-12)
    np.testing.assert_allclose(arrays["obj_phase"], np.angle(obj), rtol=1e-12)
    np.testing.assert_array_equal(np.isnan(arrays["strain"]), np.isnan(strain))
    np.testing.assert_array_equal(arrays["support"], (ramp > 20).astype(np.uint8))

    # Independent check of VTK's own view: point (i, j, k) = (x, y, z) index, x fastest.
    reader = vtkXMLImageDataReader()
    reader.SetFileName(str(path))
    reader.Update()
    image = reader.GetOutput()
    assert image.GetDimensions() == (5, 4, 3)
    assert image.GetSpacing() == pytest.approx((1e-9, 2e-9, 3e-9))
    assert image.GetOrigin() == pytest.approx((1e-6, 0, 0))
    pid = image.ComputePointId([4, 1, 2])  # x=4, y=1, z=2
    assert image.GetPointData().GetArray("ramp").GetValue(pid) == 214


def test_vti_refuses_overwrite_and_bad_input(tmp_path):
    a = np.zeros((2, 3, 4))
    p = write_vti(tmp_path / "a.vti", {"a": a}, (1, 1, 1))
    with pytest.raises(FileExistsError):
        write_vti(p, {"a": a}, (1, 1, 1))
    write_vti(p, {"a": a + 1}, (1, 1, 1), overwrite=True)
    assert read_vti(p)[0]["a"].max() == 1
    with pytest.raises(ValueError, match="grid shape"):
        write_vti(tmp_path / "b.vti", {"a": a, "b": np.zeros((2, 3, 5))}, (1, 1, 1))
    with pytest.raises(ValueError, match="spacing_m"):
        write_vti(tmp_path / "c.vti", {"a": a}, (1, 0, 1))
