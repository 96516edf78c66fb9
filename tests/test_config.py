"""The shared TOML/dataclass loader: every rule of STYLE.md §4 (unknown keys, missing keys, types)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pytest

from dynbcdi.config import from_dict, load_toml


@dataclass(frozen=True)
class Inner:
    kind: Literal["a", "b"] = "a"
    centre_m: tuple[float, float, float] | None = None


@dataclass(frozen=True)
class Outer:
    size: int
    scale: float = 1.0
    items: tuple[Inner, ...] = ()
    inner: Inner = field(default_factory=Inner)
    value: str | float = "auto"


def test_builds_nested_config_with_coercion():
    cfg = from_dict(Outer, {"size": 3, "scale": 2, "items": [{"kind": "b", "centre_m": [0, 1, 2]}],
                            "inner": {"kind": "b"}, "value": 4})
    assert cfg == Outer(3, 2.0, (Inner("b", (0.0, 1.0, 2.0)),), Inner("b"), 4.0)
    assert isinstance(cfg.scale, float) and isinstance(cfg.items[0].centre_m[0], float)


@pytest.mark.parametrize("data, match", [
    ({"size": 1, "colour": 2}, r"unknown config key\(s\) \['colour'\]"),
    ({"size": 1, "inner": {"knd": "a"}}, r"\['inner\.knd'\]"),
    ({}, r"missing required key\(s\) \['size'\]"),
    ({"size": "3"}, "'size' must be int"),
    ({"size": True}, "'size' must be int"),
    ({"size": 1, "inner": {"kind": "c"}}, "must be one of"),
    ({"size": 1, "inner": {"centre_m": [1, 2]}}, "must have 3 elements"),
    ({"size": 1, "value": [1]}, "fits none of"),
    ({"size": 1, "inner": 5}, r"\[inner\] must be a table"),
])
def test_rejects_bad_configuration(data, match):
    with pytest.raises(ValueError, match=match):
        from_dict(Outer, data)


def test_load_toml_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_toml(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("size = = 3")
    with pytest.raises(ValueError, match="invalid TOML"):
        load_toml(bad)
    good = tmp_path / "good.toml"
    good.write_text("size = 3\n[inner]\nkind = 'b'\n")
    assert from_dict(Outer, load_toml(good)) == Outer(3, inner=Inner("b"))
