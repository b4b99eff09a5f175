"""Request bodies decoded as Consul decodes them: field names match case-insensitively and
with or without underscores (`TTL`, `ttl`, `LockDelay`, `lock_delay`, `lockdelay` are one
field), as Consul's decodeBody does with mapstructure and lib.TranslateKeys; durations come as
Go duration strings ("15s") or numbers of nanoseconds. Unknown fields are ignored, as
Consul's JSON decoder ignores them.

`fields(body, spec)` returns a dict keyed by the canonical names of `spec`; a nested spec
decodes a nested object (or list of objects) the same way. Every type error is a 400 naming
the field, never a 500.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Union

from agent.durations import DurationError, parse_seconds
from agent.http.common import HTTPError
from agent.local.checks import normalise_key

#: canonical field name -> None (any value) or the spec of a nested object / list of objects
Spec = Mapping[str, Union["Spec", None]]


def _bad(what: str) -> HTTPError:
    return HTTPError(400, f"Request decode failed: {what}")


def fields(body: Any, spec: Spec, where: str = "body") -> dict[str, Any]:
    """`body`'s fields under their canonical names (see the module docstring)."""
    if not isinstance(body, dict):
        raise _bad(f"{where}: expected a JSON object")
    canon = {normalise_key(name): name for name in spec}
    out: dict[str, Any] = {}
    for key, value in body.items():
        name = canon.get(normalise_key(str(key)))
        if name is None:
            continue
        sub = spec[name]
        if sub is not None and value is not None:
            if isinstance(value, list):
                value = [fields(v, sub, f"{name}[{i}]") for i, v in enumerate(value)]
            else:
                value = fields(value, sub, name)
        out[name] = value
    return out


def duration_ns(value: Any, name: str) -> int:
    """A Go duration string or a number of nanoseconds -> nanoseconds (never negative)."""
    if isinstance(value, bool):
        raise _bad(f"{name}: expected a duration, got {value!r}")
    if isinstance(value, (int, float)):
        ns = int(value)
    elif isinstance(value, str):
        try:
            ns = round(parse_seconds(value) * 1e9) if value else 0
        except DurationError:
            raise _bad(f"{name}: time: invalid duration {value!r}") from None
    else:
        raise _bad(f"{name}: expected a duration, got {value!r}")
    if ns < 0:
        raise _bad(f"{name}: a duration must not be negative")
    return ns


def string(value: Any, name: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _bad(f"{name}: expected a string, got {value!r}")
    return value


def string_list(value: Any, name: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _bad(f"{name}: expected a list of strings")
    return list(value)


def string_map(value: Any, name: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise _bad(f"{name}: expected an object of strings")
    return {str(k): v for k, v in value.items()}


def uint(value: Any, name: str) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1 << 64:
        raise _bad(f"{name}: expected an unsigned integer, got {value!r}")
    return value
