"""Type checks of requests against the shapes of Consul's structs, before anything touches
state or the raft log: a value of the wrong type is refused with a message naming the field
(`Service.Tags: expected a list of strings, got 5`), as Go's decoder refuses it, instead of
being replicated to every server and failing at apply.

A spec is `str`, `int` (64 bits), `bool`, `float`, `ListOf(spec)`, `MapOf(spec)` (string
keys) or a `Struct` of field specs. `None` is accepted anywhere (Go's zero value); fields a
struct does not name are not checked (Go's decoder ignores them too).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

_INT_MIN, _INT_MAX = -(1 << 63), (1 << 64) - 1


@dataclass(frozen=True)
class ListOf:
    item: Spec


@dataclass(frozen=True)
class MapOf:
    value: Spec


@dataclass(frozen=True)
class Struct:
    fields: Mapping[str, Spec]


Spec = type | ListOf | MapOf | Struct

_NAMES = {str: "a string", int: "an integer", bool: "true or false", float: "a number"}


class SchemaError(ValueError):
    """What is wrong and where: `field.path: expected ..., got ...`."""


def check(value: Any, spec: Spec, where: str = "") -> None:
    """Raise SchemaError if `value` does not fit `spec`."""
    problem = _problem(value, spec, where)
    if problem is not None:
        raise SchemaError(problem)


def _problem(value: Any, spec: Spec, where: str) -> str | None:
    if value is None or spec is object:
        return None
    if isinstance(spec, Struct):
        if not isinstance(value, dict):
            return _expected(where, "an object", value)
        for name, sub in spec.fields.items():
            if name in value:
                problem = _problem(value[name], sub, f"{where}.{name}" if where else name)
                if problem is not None:
                    return problem
        return None
    if isinstance(spec, ListOf):
        if not isinstance(value, list):
            return _expected(where, f"a list of {_describe(spec.item)}", value)
        for i, item in enumerate(value):
            problem = _problem(item, spec.item, f"{where}[{i}]")
            if problem is not None:
                return problem
        return None
    if isinstance(spec, MapOf):
        if not isinstance(value, dict):
            return _expected(where, f"a map of {_describe(spec.value)}", value)
        for key, item in value.items():
            if not isinstance(key, str):
                return _expected(f"{where} key", "a string", key)
            problem = _problem(item, spec.value, f"{where}[{key!r}]")
            if problem is not None:
                return problem
        return None
    if spec is int:
        if isinstance(value, bool) or not isinstance(value, int):
            return _expected(where, "an integer", value)
        if not _INT_MIN <= value <= _INT_MAX:
            return _expected(where, "a 64-bit integer", value)
        return None
    if spec is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return _expected(where, "a number", value)
        return None
    if not isinstance(value, spec) or (spec is not bool and isinstance(value, bool)):
        return _expected(where, _NAMES.get(spec, spec.__name__), value)
    return None


def _describe(spec: Spec) -> str:
    if isinstance(spec, type):
        return {str: "strings", int: "integers", bool: "booleans", float: "numbers"}.get(
            spec, spec.__name__
        )
    if isinstance(spec, ListOf):
        return "lists"
    if isinstance(spec, MapOf):
        return "maps"
    return "objects"


def _expected(where: str, what: str, got: Any) -> str:
    try:
        shown = json.dumps(got, default=repr)
    except ValueError:
        shown = repr(got)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return f"{where or 'body'}: expected {what}, got {shown}"


def field_names(spec: Struct) -> dict[str, Any]:
    """The names of `spec` as agent/http/decode.py's Spec (a struct, or a list of structs,
    nests; anything else is None), so the HTTP layer decodes the fields this module checks."""
    out: dict[str, Any] = {}
    for name, sub in spec.fields.items():
        if isinstance(sub, ListOf):
            sub = sub.item
        out[name] = field_names(sub) if isinstance(sub, Struct) else None
    return out
