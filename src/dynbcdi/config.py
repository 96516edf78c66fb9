"""Typed configuration dataclasses from nested dicts and TOML files (shared by every CLI command).

Configurations are frozen dataclasses nested per concern; a TOML file mirrors the nesting. The rules
(STYLE.md): required fields have no defaults, unknown keys are errors, values of the wrong type are
errors. Each error is a ``ValueError`` naming the dotted key (``optimizer.lr``) so a user can fix the
file without reading the source.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, Literal


def load_toml(path: str | os.PathLike) -> dict[str, Any]:
    """The parsed TOML file; FileNotFoundError if it is missing, ValueError if it is not valid TOML."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"no configuration file {p}")
    try:
        return tomllib.loads(p.read_text())
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"{p}: invalid TOML: {err}") from None


def from_dict(cls: type, data: Any, where: str = "") -> Any:
    """Build the dataclass ``cls`` from nested dicts, checking keys and value types.

    where : dotted path of ``data`` inside the whole configuration (for messages).
    """
    if not isinstance(data, dict):
        raise ValueError(f"config section [{where or cls.__name__}] must be a table, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ValueError(f"unknown config key(s) {[_join(where, k) for k in unknown]}; "
                         f"allowed in [{where or 'top level'}]: {sorted(fields)}")
    missing = [name for name, f in fields.items() if name not in data and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ValueError(f"missing required key(s) {missing} in [{where or 'top level'}]")
    kwargs = {key: coerce(hints[key], value, _join(where, key)) for key, value in data.items()}
    try:
        return cls(**kwargs)
    except TypeError as err:
        raise ValueError(f"[{where or cls.__name__}]: {err}") from None


def coerce(hint: Any, value: Any, name: str) -> Any:
    """``value`` converted to the annotated type ``hint`` (lists → tuples, int → float), or ValueError."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, name)
    if hint is Any:
        return value
    if origin is Literal:
        if value not in args:
            raise ValueError(f"config key {name!r} must be one of {args}, got {value!r}")
        return value
    if origin in (typing.Union, types.UnionType):
        return _coerce_union(args, value, name)
    if origin is tuple:
        return _coerce_tuple(args, value, name)
    if origin is dict:
        return _coerce_dict(args, value, name)
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if hint is type(None) and value is None:
        return None
    if not isinstance(hint, type) or not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
        raise ValueError(f"config key {name!r} must be {getattr(hint, '__name__', hint)}, got {value!r}")
    return value


def _coerce_union(args: tuple, value: Any, name: str) -> Any:
    errors = []
    for arm in args:
        try:
            return coerce(arm, value, name)
        except ValueError as err:
            errors.append(str(err))
    raise ValueError(f"config key {name!r}: {value!r} fits none of "
                     f"{[getattr(a, '__name__', str(a)) for a in args]} ({'; '.join(errors)})")


def _coerce_tuple(args: tuple, value: Any, name: str) -> tuple:
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"config key {name!r} must be a list, got {value!r}")
    if len(args) == 2 and args[1] is Ellipsis:
        return tuple(coerce(args[0], v, f"{name}[{i}]") for i, v in enumerate(value))
    if len(value) != len(args):
        raise ValueError(f"config key {name!r} must have {len(args)} elements, got {value!r}")
    return tuple(coerce(t, v, f"{name}[{i}]") for i, (t, v) in enumerate(zip(args, value)))


def _coerce_dict(args: tuple, value: Any, name: str) -> dict:
    """A TOML table read into ``dict[str, V]``: string keys, each value coerced to V."""
    if not isinstance(value, dict):
        raise ValueError(f"config key {name!r} must be a table, got {value!r}")
    key_type, value_type = args if args else (str, Any)
    if key_type is not str or not all(isinstance(k, str) for k in value):
        raise ValueError(f"config key {name!r} must have string keys, got {list(value)!r}")
    return {k: coerce(value_type, v, f"{name}.{k}") for k, v in value.items()}


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``override`` applied on top of ``base`` (nested dicts merged key by key; other values replaced).

    Used to read a TOML file on top of tuned defaults, so that a file holding only ``epochs = 100``
    changes nothing else.
    """
    out = dict(base)
    for key, value in override.items():
        nested = isinstance(value, dict) and isinstance(out.get(key), dict)
        out[key] = deep_merge(out[key], value) if nested else value
    return out


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key
