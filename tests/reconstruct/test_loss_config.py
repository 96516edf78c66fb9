"""Loss kernels, configuration loading and input validation of dynbcdi.reconstruct."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dynbcdi.reconstruct import (ReconstructionConfig, amplitude_loss, atv, config_from_dict,
                                 load_config, poisson_loss)
from dynbcdi.reconstruct.validation import validate_inputs


def test_amplitude_loss_value_and_mask():
    I = torch.tensor([[[4.0, 9.0], [16.0, 1.0]]], dtype=torch.float64)
    D = torch.tensor([[[1.0, 9.0], [16.0, 100.0]]], dtype=torch.float64)
    valid = torch.tensor([[True, True], [True, False]])
    # (√1 − √4)² = 1 on the first pixel, 0 on the next two, last pixel masked: 1/3 (floor 0 exact)
    assert amplitude_loss(D, I, valid, floor=1e-300).item() == pytest.approx(1 / 3, rel=1e-12)
    D2 = D.clone()
    D2[0, 1, 1] = 1e9  # a masked pixel must not change the loss at all
    assert torch.equal(amplitude_loss(D2, I, valid), amplitude_loss(D, I, valid))


def test_poisson_loss_minimum_at_data():
    I = torch.rand(2, 4, 4, dtype=torch.float64) * 50 + 1
    D = I.clone().requires_grad_(True)
    poisson_loss(D, I, torch.ones(4, 4, dtype=torch.bool), floor=1e-12).sum().backward()
    # ∂/∂D (D − I ln D) = 1 − I/D = 0 at D = I, up to the 1e-12 photon floor
    assert D.grad.abs().max() < 1e-12


def test_atv_constant_and_ramp():
    eps = 1e-8
    S = torch.full((4, 5, 6), 2 + 1j, dtype=torch.complex128)
    assert atv(S, eps).item() == pytest.approx(np.sqrt(eps), rel=1e-12)
    x = torch.arange(6, dtype=torch.float64)
    ramp = (0.5 * x).expand(4, 5, 6).to(torch.complex128)
    # forward differences 0.5 on 5 of 6 x-planes, 0 on the last: mean of (0.25+ε)^½ and ε^½
    expected = (5 * np.sqrt(0.25 + eps) + np.sqrt(eps)) / 6
    assert atv(ramp, eps).item() == pytest.approx(expected, rel=1e-12)


def test_config_toml_roundtrip(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('epochs = 7\n[optimizer]\nlr = 0.1\nbetas = [0.8, 0.99]\n[loss]\nkind = "poisson"\n'
                    "atv_weight = 1e-3\n[shrinkwrap]\nevery = 5\n")
    cfg = load_config(path)
    assert cfg.epochs == 7 and cfg.optimizer.lr == 0.1 and cfg.optimizer.betas == (0.8, 0.99)
    assert cfg.loss.kind == "poisson" and cfg.shrinkwrap.every == 5
    assert config_from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize("data, match", [
    ({"epoch": 3}, "unknown config key"),
    ({"optimizer": {"learning_rate": 0.1}}, r"optimizer\.learning_rate"),
    ({"epochs": "10"}, "must be int"),
    ({"loss": {"kind": "l2"}}, "must be one of"),
    ({"optimizer": {"lr": -1.0}}, "lr must be > 0"),
])
def test_config_rejects_bad_keys(data, match):
    with pytest.raises(ValueError, match=match):
        config_from_dict(data)


def _good():
    n = 4
    return {"intensity": np.ones((3, n, n)), "valid": np.ones((n, n), bool),
            "dq": np.zeros((3, 3)), "init": np.ones((5, n, n), complex)}


@pytest.mark.parametrize("key, value, match", [
    ("intensity", np.ones((3, 4)), "shape"),
    ("intensity", -np.ones((3, 4, 4)), "negative"),
    ("intensity", np.full((3, 4, 4), np.nan), "NaN"),
    ("intensity", np.zeros((3, 4, 4)), "zero on every valid pixel"),
    ("valid", np.zeros((4, 4), bool), "hides every pixel"),
    ("valid", np.ones((4, 4), int), "bool"),
    ("valid", np.ones((5, 5), bool), "valid shape"),
    ("dq", np.zeros((2, 3)), r"dq must have shape \(N, 3\)"),
    ("init", np.ones((5, 4, 6), complex), "init shape"),
    ("init", np.zeros((5, 4, 4), complex), "zero everywhere"),
])
def test_validation_rejects_bad_input(key, value, match):
    args = _good()
    args[key] = value
    with pytest.raises(ValueError, match=match):
        validate_inputs(**args)


def test_validation_checks_model_grid():
    class Model:
        grid_shape = (6, 4, 4)
    with pytest.raises(ValueError, match="forward model grid"):
        validate_inputs(**_good(), model=Model())


def test_default_config_follows_paper():
    cfg = ReconstructionConfig()
    assert cfg.optimizer.lr == 0.15 and cfg.optimizer.n_batches == 5


def test_toml_on_top_of_tuned_defaults(tmp_path):
    """A TOML holding only ``epochs`` changes nothing else of the base it is read on (issue 15: the CLI
    used to start from ReconstructionConfig(), silently changing lr and five other settings)."""
    from dynbcdi.reconstruct import default_config, load_config

    path = tmp_path / "run.toml"
    path.write_text("epochs = 100\n[optimizer]\nlr = 0.05\n")
    base = default_config(measured=True)
    cfg = load_config(path, base)
    assert cfg.epochs == 100 and cfg.optimizer.lr == 0.05
    assert cfg.optimizer.chunk_size == base.optimizer.chunk_size and cfg.terms == base.terms
    assert cfg.stopping == base.stopping and cfg.loss == base.loss
    assert load_config(path).optimizer.chunk_size == ReconstructionConfig().optimizer.chunk_size
