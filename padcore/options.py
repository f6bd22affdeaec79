"""Typed, range-checked option dataclasses: one validation for every option, wherever it comes from.

A field declared with `option(...)` carries its help text, its allowed range or
choices; `check_options` verifies the type and range of every field and names
the option, the value and what is allowed. `build_options` is the one way to
make an options object from free-form values (CLI flags, `--set`, KFP
parameters, a saved `config.json`): unknown names are an error, never ignored.
"""

from __future__ import annotations

import dataclasses
import math
import re
import typing
from typing import Any, Callable, Iterable, TypeVar

from padcore.errors import PadError

T = TypeVar("T")
# (regex, what it allows) of a device option: the one spelling every step accepts
DEVICE_PATTERN = (r"auto|cpu|cuda(:\d+)?", "auto, cpu, cuda, cuda:N")


def option(
    default: Any,
    help: str,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    choices: Iterable[str] | Callable[[], Iterable[str]] | None = None,
    pattern: tuple[str, str] | None = None,
) -> Any:
    """A dataclass field with its help and its allowed values.

    `low`/`high` bound numbers (closed unless `*_open`); `choices` are the allowed
    strings (or items of a tuple), or a function giving them (a registry's names);
    `pattern` is (regex a string must match whole, what it allows in words).
    """
    meta = {"help": help, "low": low, "high": high, "low_open": low_open, "high_open": high_open, "choices": choices,
            "pattern": pattern}
    if isinstance(default, (list, dict, set)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _allowed_range(meta: dict) -> str:
    lo = "" if meta["low"] is None else f"{meta['low']:g} {'<' if meta['low_open'] else '<='} "
    hi = "" if meta["high"] is None else f" {'<' if meta['high_open'] else '<='} {meta['high']:g}"
    return f"{lo}value{hi}"


def choices_of(obj_or_cls: Any, name: str) -> tuple[str, ...]:
    """The allowed strings of a field declared with `choices`."""
    meta = {f.name: f.metadata for f in dataclasses.fields(obj_or_cls)}[name]
    c = meta.get("choices")
    return tuple(c() if callable(c) else c or ())


def _coerce(what: str, name: str, value: Any, kind: Any) -> Any:
    """`value` as the field's type, or a PadError naming the option."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if kind is bool:
        if isinstance(value, bool):
            return value
        raise PadError(f"{what} option {name!r} is {value!r}; expected true or false")
    if kind is int:
        if isinstance(value, float) and value.is_integer():
            return int(value)  # JSON and protobuf Structs carry every number as a float
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise PadError(f"{what} option {name!r} is {value!r}; expected a whole number")
    if kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise PadError(f"{what} option {name!r} is {value!r}; expected a finite number")
            return float(value)
        raise PadError(f"{what} option {name!r} is {value!r}; expected a number")
    if kind is str:
        if isinstance(value, str):
            return value
        raise PadError(f"{what} option {name!r} is {value!r}; expected a string")
    if origin is tuple:
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, (list, tuple)) or not all(isinstance(v, str) for v in items):
            raise PadError(f"{what} option {name!r} is {value!r}; expected a list of names")
        return tuple(v.strip() for v in items)
    if origin is list:
        if isinstance(value, list):
            return value
        raise PadError(f"{what} option {name!r} is {value!r}; expected a list")
    if origin is dict or kind is dict:
        if not isinstance(value, dict):
            raise PadError(f"{what} option {name!r} is {value!r}; expected a mapping")
        if args == (str, str) and not all(isinstance(v, str) for kv in value.items() for v in kv):
            raise PadError(f"{what} option {name!r} is {value!r}; expected a mapping of names to strings")
        return value
    return value


def _check_field(what: str, f: dataclasses.Field, value: Any, kind: Any, owner: Any) -> Any:
    """`value` of field `f` coerced to its type and checked against its range, choices and pattern."""
    value = _coerce(what, f.name, value, kind)
    meta = f.metadata
    if not meta:
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        lo, hi = meta["low"], meta["high"]
        if (lo is not None and (value < lo or (meta["low_open"] and value == lo))) or (
            hi is not None and (value > hi or (meta["high_open"] and value == hi))
        ):
            raise PadError(f"{what} option {f.name!r} is {value!r}; allowed: {_allowed_range(meta)}")
    allowed = choices_of(owner, f.name)
    if allowed:
        values = value if isinstance(value, tuple) else (value,)
        bad = [v for v in values if v not in allowed]
        if bad or not values:
            raise PadError(f"{what} option {f.name!r} is {value!r}; allowed: {', '.join(allowed)}")
    if meta.get("pattern") and not re.fullmatch(meta["pattern"][0], value):
        raise PadError(f"{what} option {f.name!r} is {value!r}; allowed: {meta['pattern'][1]}")
    return value


def check_options(obj: Any, what: str) -> None:
    """Coerce and check every field of the dataclass `obj` in place (type, range, choices, pattern)."""
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        object.__setattr__(obj, f.name, _check_field(what, f, getattr(obj, f.name), hints[f.name], obj))


def _unknown(cls: type, what: str, values: dict[str, Any]) -> None:
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise PadError(f"unknown {what} option(s) {unknown}; known: {', '.join(sorted(known))}")


def check_values(cls: type, what: str, values: dict[str, Any]) -> dict[str, Any]:
    """Each of `values` checked on its own against its field of `cls`, coerced; unknown names are an error.

    For options that complete a configuration made elsewhere (a later phase's
    on top of the earlier phase's), before that configuration is at hand.
    """
    _unknown(cls, what, values)
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    return {k: _check_field(what, fields[k], v, hints[k], cls) for k, v in values.items()}


def build_options(cls: type[T], what: str, values: dict[str, Any]) -> T:
    """An instance of the option dataclass `cls` from free-form values; unknown names are an error."""
    _unknown(cls, what, values)
    return cls(**values)


def describe(cls: type) -> list[tuple[str, Any, str]]:
    """(name, default, help) of every field: for help texts and docs."""
    out = []
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        out.append((f.name, default, f.metadata.get("help", "")))
    return out
