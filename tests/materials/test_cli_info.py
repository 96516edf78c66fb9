"""`dynbcdi info` through dynbcdi.cli.main.main."""

from __future__ import annotations

import pytest

from dynbcdi.cli.info import parse_energy_eV, parse_length_m
from dynbcdi.cli.main import main


def test_info_table_au200(capsys):
    assert main(["info", "--material", "Au", "--hkl", "2", "0", "0", "--energy", "8keV", "--lattice-a", "4.07A"]) == 0
    out = capsys.readouterr().out
    lines = {line.split("  ")[0].strip(): line for line in out.splitlines() if line.strip()}
    assert "44.7649" in lines["2θB"] and "deg" in lines["2θB"]
    assert "2.035000" in lines["d-spacing"] and "Å" in lines["d-spacing"]
    assert "255.9" in lines["extinction length, sym. Bragg σ / π"]
    assert "1952.4" in lines["Pendellösung distance, sym. Laue σ / π"]
    for key in ("wavelength", "|h| = 2π/d", "Bragg angle θB", "Re χ0", "Im χ0", "Re χh", "Im χh",
                "Re χh̄", "Im χh̄", "|χh|", "C σ / π", "absorption length 1/μ"):
        assert key in lines, key
    assert float(lines["Im χ0"].split()[-1]) > 0


def test_info_static_and_energy_forms(capsys):
    assert main(["info", "--material", "si", "--hkl", "2", "2", "0", "--energy", "8048", "--static"]) == 0
    a = capsys.readouterr().out
    assert main(["info", "--material", "Si", "--hkl", "2", "2", "0", "--energy", "8.048 keV", "--static"]) == 0
    b = capsys.readouterr().out
    assert a == b and "static lattice" in a


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--material", "Xx", "--hkl", "1", "1", "1", "--energy", "8keV"], "Au, Si, Ge, Pt, Pb, Sr2IrO4"),
        (["--material", "Au", "--hkl", "1", "0", "0", "--energy", "8keV"], "forbidden"),
        (["--material", "Au", "--hkl", "2", "0", "0", "--energy", "3keV"], "minimum energy"),
        (["--material", "Au", "--hkl", "2", "0", "0", "--energy", "8MeV"], "'8MeV'"),
        (["--material", "Au", "--hkl", "2", "0", "0", "--energy=-8keV"], "-8000"),
    ],
)
def test_info_bad_input(capsys, argv, message):
    assert main(["info", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and "error" in err


def test_unit_parsers():
    assert parse_energy_eV("8keV") == 8000.0
    assert parse_energy_eV("8000eV") == 8000.0
    assert parse_energy_eV("8000") == 8000.0
    assert parse_energy_eV(" 12.4 KEV ") == pytest.approx(12400.0)
    assert parse_length_m("4.07A") == pytest.approx(4.07e-10)
    assert parse_length_m("4.07Å") == pytest.approx(4.07e-10)
    assert parse_length_m("0.407nm") == pytest.approx(4.07e-10)
    assert parse_length_m("4.07e-10m") == pytest.approx(4.07e-10)
    with pytest.raises(ValueError, match="'4.07 parsecs'"):
        parse_length_m("4.07 parsecs")
