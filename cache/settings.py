"""Typed settings: one flat dataclass per concern, read from TOML and overridden by command-line flags.

A field `patch_size_vox` is the TOML key `patch_size_vox` and the flag `--patch-size-vox` (`cache.cli` makes the
flags). Precedence: dataclass default < TOML preset < flag. An unknown TOML key is an error naming it and the file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

T = TypeVar("T")


class SettingsError(ValueError):
    """A preset file or value that does not fit its settings dataclass."""


def read_toml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise SettingsError(f"settings file {path} not found") from None
    except tomllib.TOMLDecodeError as error:
        raise SettingsError(f"{path}: not valid TOML: {error}") from None


def _field_type(cls: type, name: str) -> Any:
    return typing.get_type_hints(cls)[name]


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """Check a TOML value against a field's type hint; ints are accepted for floats, lists for tuples."""
    origin = typing.get_origin(hint)
    if origin is typing.Literal:
        if value not in typing.get_args(hint):
            raise SettingsError(f"{where}: {value!r} is not one of {typing.get_args(hint)}")
        return value
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None:
            return None
        for arg in args[:-1]:  # the first member that accepts the value (`int | Literal["auto"]`)
            try:
                return _coerce(value, arg, where)
            except SettingsError:
                continue
        return _coerce(value, args[-1], where)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise SettingsError(f"{where}: expected a list, got {value!r}")
        item = typing.get_args(hint)[0]
        return tuple(_coerce(v, item, where) for v in value)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in (int, float, str, bool) and not isinstance(value, hint):
        raise SettingsError(f"{where}: expected {hint.__name__}, got {value!r}")
    if hint is int and isinstance(value, bool):
        raise SettingsError(f"{where}: expected int, got {value!r}")
    return value


def values_from_mapping(cls: type, mapping: dict[str, Any], source: str) -> dict[str, Any]:
    """Check a mapping of TOML values against the fields of `cls`; unknown keys are errors."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(mapping) - names)
    if unknown:
        raise SettingsError(
            f"{source}: unknown setting(s) {', '.join(unknown)} for {cls.__name__}; "
            f"known: {', '.join(sorted(names))}"
        )
    return {k: _coerce(v, _field_type(cls, k), f"{source}, key {k!r}") for k, v in mapping.items()}


def from_toml(cls: type[T], path: str | Path, table: str | None = None) -> T:
    """Build `cls` from a TOML file (or one table of it), defaults for keys not given."""
    data = read_toml(path)
    if table is not None:
        data = data.get(table, {})
    return cls(**values_from_mapping(cls, data, str(path)))


def settings_dict(*settings: Any) -> dict[str, Any]:
    """Plain dict of one or more settings dataclasses, keyed by class name (paths as strings)."""
    return {type(s).__name__: json.loads(json.dumps(dataclasses.asdict(s), default=str)) for s in settings}


def settings_hash(*settings: Any) -> str:
    """Stable hex digest of settings, for caches and runs keyed by the settings that made them."""
    text = json.dumps(settings_dict(*settings), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def format_settings(*settings: Any) -> str:
    """Human-readable effective settings, printed at the start of every run."""
    lines = []
    for name, values in settings_dict(*settings).items():
        lines.append(f"[{name}]")
        lines.extend(f"  {key} = {value!r}" for key, value in values.items())
    return "\n".join(lines)
