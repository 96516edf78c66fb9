"""`dynbcdi reconstruct` end to end on a tiny TTE data set (files, no-overwrite, resume)."""

from __future__ import annotations

import csv
import json

import numpy as np

from dynbcdi.cli.main import main
from dynbcdi.io import Dataset, load_result, save_dataset, save_result


def _files(tmp_path, p):
    ds = Dataset(intensity=p["intensity"], valid=p["valid"], geometry=p["geometry"],
                 reflection=p["reflection"], spacing_m=p["spacing"], truth=p["truth"])
    data = save_dataset(ds, tmp_path / "scan.npz")
    init = save_result(tmp_path / "init.npz", p["truth"] * np.exp(0.3j * (np.abs(p["truth"]) > 0)),
                       p["spacing"], metadata={"frame": "grid"})
    return str(data), str(init)


def test_cli_writes_history_and_result_and_refuses_overwrite(tmp_path, au200_plate, capsys):
    data, init = _files(tmp_path, au200_plate)
    out = tmp_path / "run"
    args = ["reconstruct", data, "--init", init, "--out", str(out), "--epochs", "2"]
    assert main(args) == 0
    with open(out / "history.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["epoch"]) for r in rows] == [1, 2] and all(float(r["loss"]) > 0 for r in rows)
    assert json.loads((out / "history.json").read_text())["epochs"] == 2
    result = load_result(out / "reconstruction.cxi")
    assert result.obj.shape == au200_plate["truth"].shape and result.metadata["frame"] == "grid"
    assert main(args) == 2 and "not empty" in capsys.readouterr().err  # no silent overwrite
    assert main(args[:-1] + ["4", "--resume", "--overwrite"]) == 0
    assert json.loads((out / "history.json").read_text())["epochs"] == 4
