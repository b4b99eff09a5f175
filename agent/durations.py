"""Go's time.ParseDuration and Duration.String, the one duration grammar of the agent: config
values and flags, ?wait on the HTTP API, session TTLs and lock delays, CLI flags — as Consul
reads and prints them ("15s", "1m30s", "24h0m0s")."""

from __future__ import annotations

import json
import re
from collections.abc import Callable

NANOSECOND = 1
MICROSECOND = 1_000
MILLISECOND = 1_000_000
SECOND = 1_000_000_000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE

_UNITS = {
    "ns": NANOSECOND,
    "us": MICROSECOND,
    "µs": MICROSECOND,
    "μs": MICROSECOND,
    "ms": MILLISECOND,
    "s": SECOND,
    "m": MINUTE,
    "h": HOUR,
}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)?")


class DurationError(ValueError):
    """Not a Go duration; the message is Go's (`time: invalid duration "x"`)."""


def parse_duration(text: str) -> int:
    """Nanoseconds of a Go duration string such as "10s", "1.5h", "2m30s" or "0"."""
    quoted = '"' + text + '"'
    s = text
    sign = 1
    if s[:1] in "+-" and s:
        sign = -1 if s[0] == "-" else 1
        s = s[1:]
    if s == "0":
        return 0
    if not s:
        raise DurationError(f"time: invalid duration {quoted}")
    total = 0.0
    pos = 0
    while pos < len(s):
        m = _PART.match(s, pos)
        if m is None:
            raise DurationError(f"time: invalid duration {quoted}")
        number, unit = m.group(1), m.group(2)
        if unit is None:
            raise DurationError(f"time: missing unit in duration {quoted}")
        total += float(number) * _UNITS[unit]
        pos = m.end()
    if total > 2**63 - 1:
        raise DurationError(f"time: invalid duration {quoted}")
    return sign * round(total)


def parse_seconds(text: str) -> float:
    """Seconds of a Go duration string, surrounding whitespace ignored; DurationError if invalid."""
    return parse_duration(text.strip()) / SECOND


def json_seconds(value: object, parse: Callable[[str], float] = parse_seconds) -> float:
    """Seconds of a duration as JSON holds one: a string, read by `parse` (parse_seconds by
    default), or a number of nanoseconds, time.Duration's JSON form, which Consul decodes.
    TypeError for any other type, true and false included; for a bad string, `parse`'s error
    (DurationError from parse_seconds)."""
    if isinstance(value, str):
        return parse(value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value) / SECOND
    raise TypeError(f"not a duration: {value!r}")


def _fmt_frac(value: int, unit: int) -> str:
    whole, frac = divmod(value, unit)
    if frac == 0:
        return str(whole)
    digits = len(str(unit)) - 1
    return f"{whole}.{str(frac).rjust(digits, '0').rstrip('0')}"


def format_duration(ns: int) -> str:
    """Go's Duration.String: 0 -> "0s", 15e9 -> "15s", 86400e9 -> "24h0m0s", 1.5e6 -> "1.5ms"."""
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    ns = abs(ns)
    if ns < MICROSECOND:
        return f"{sign}{ns}ns"
    if ns < MILLISECOND:
        return f"{sign}{_fmt_frac(ns, MICROSECOND)}µs"
    if ns < SECOND:
        return f"{sign}{_fmt_frac(ns, MILLISECOND)}ms"
    hours, rest = divmod(ns, HOUR)
    minutes, rest = divmod(rest, MINUTE)
    seconds = _fmt_frac(rest, SECOND)
    if hours:
        return f"{sign}{hours}h{minutes}m{seconds}s"
    if minutes:
        return f"{sign}{minutes}m{seconds}s"
    return f"{sign}{seconds}s"


def config_seconds(text: str) -> float:
    """A config or flag duration ("30s", "1m30s", "500ms") -> seconds; never negative.
    ValueError saying what was expected (the message config errors carry)."""
    try:
        seconds = parse_seconds(text)
    except DurationError:
        seconds = -1.0
    if seconds < 0:
        raise ValueError(f'expected a duration such as "30s" or "1m", got {json.dumps(text)}')
    return seconds
