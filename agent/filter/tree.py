"""The parsed form of a filter expression, go-bexpr's operators, FilterError, and Go's
strconv readings of literals (bool, int, float, quoted strings) that go-bexpr relies on."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Final

import re2

#: Longest expression accepted, in characters.
MAX_FILTER_LENGTH: Final = 4096
#: Deepest nesting accepted: parenthesised groups and `not`s, one level each.
MAX_FILTER_DEPTH: Final = 64

#: Consul's wrapping of every go-bexpr error (agent/consul's RPC endpoints and bexpr.CreateFilter).
ERROR_PREFIX: Final = "Failed to create boolean expression evaluator: "


class FilterError(ValueError):
    """A filter expression Consul would refuse; `str(err)` is the 400 response body.

    `detail` is go-bexpr's own error text (without Consul's prefix) and `position` the
    character index the error points at, when it points at one.
    """

    def __init__(self, detail: str, position: int | None = None) -> None:
        super().__init__(ERROR_PREFIX + detail)
        self.detail = detail
        self.position = position


EQ: Final = "Equal"
NE: Final = "Not Equal"
IN: Final = "In"
NOT_IN: Final = "Not In"
EMPTY: Final = "Is Empty"
NOT_EMPTY: Final = "Is Not Empty"
MATCHES: Final = "Matches"
NOT_MATCHES: Final = "Not Matches"

OPERATOR_OF_TOKEN: Final = {
    "EQ": EQ,
    "NE": NE,
    "CONTAINS": IN,
    "NOT_CONTAINS": NOT_IN,
    "IN": IN,
    "NOT_IN": NOT_IN,
    "MATCHES": MATCHES,
    "NOT_MATCHES": NOT_MATCHES,
    "IS_EMPTY": EMPTY,
    "IS_NOT_EMPTY": NOT_EMPTY,
}
# What an operator answers for a selector that finds nothing (go-bexpr's NotPresentDisposition).
WHEN_MISSING: Final = {
    EQ: False,
    NE: True,
    IN: False,
    NOT_IN: True,
    EMPTY: True,
    NOT_EMPTY: False,
    MATCHES: False,
    NOT_MATCHES: True,
}
NEGATED: Final = frozenset({NE, NOT_IN, NOT_EMPTY, NOT_MATCHES})


# --------------------------------------------------------------------------- Go's strconv


def go_quote(text: str) -> str:
    """Go's strconv.Quote (the `%q` of go-bexpr's messages), near enough for error text."""
    out = ['"']
    for ch in text:
        code = ord(ch)
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch.isprintable():
            out.append(ch)
        elif ch in "\a\b\f\n\r\t\v":
            out.append("\\" + "abfnrtv"["\a\b\f\n\r\t\v".index(ch)])
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\x{code:02x}")
        elif 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8 (surrogateescape)
            out.append(f"\\x{code - 0xDC00:02x}")
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)


_SIMPLE_ESCAPES: Final = {
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "v": "\v",
    "\\": "\\",
    '"': '"',
}


def go_unquote_double(body: str) -> str | None:
    """strconv.Unquote of `"body"`; None where Go answers ErrSyntax.

    `\\xHH` and octal escapes are bytes, as in Go; bytes that do not form UTF-8 come back as
    surrogate escapes, so they equal nothing a JSON document holds.
    """
    if "\n" in body:
        return None
    out = bytearray()
    i, n = 0, len(body)
    while i < n:
        ch = body[i]
        if ch != "\\":
            out += ch.encode("utf-8", "surrogatepass")
            i += 1
            continue
        if i + 1 >= n:
            return None
        esc = body[i + 1]
        i += 2
        if esc in _SIMPLE_ESCAPES:
            out += _SIMPLE_ESCAPES[esc].encode()
        elif esc in "xuU":
            width = {"x": 2, "u": 4, "U": 8}[esc]
            digits = body[i : i + width]
            if len(digits) != width or not all(c in "0123456789abcdefABCDEF" for c in digits):
                return None
            value = int(digits, 16)
            i += width
            if esc == "x":
                out.append(value)
            elif value > 0x10FFFF or 0xD800 <= value <= 0xDFFF:
                return None
            else:
                out += chr(value).encode("utf-8")
        elif esc in "01234567":
            digits = body[i - 1 : i + 2]
            if len(digits) != 3 or not all(c in "01234567" for c in digits):
                return None
            value = int(digits, 8)
            if value > 255:
                return None
            out.append(value)
            i += 2
        else:
            return None
    return out.decode("utf-8", "surrogateescape")


def _go_parse_bool(raw: str) -> bool | None:
    if raw in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if raw in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    return None


# strconv.ParseInt(s, 0, 64) syntax: sign, base prefix, underscores between digits.
_GO_INT: Final = re.compile(
    r"[+-]?(?:0[xX](?:_?[0-9a-fA-F])+|0[bB](?:_?[01])+|0[oO](?:_?[0-7])+|0(?:_?[0-7])*|[1-9](?:_?[0-9])*)"
)
_GO_FLOAT: Final = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_GO_HEX_FLOAT: Final = re.compile(
    r"[+-]?0[xX](?:_?[0-9a-fA-F])*(?:\.[0-9a-fA-F]*)?[pP][+-]?[0-9]+", re.ASCII
)
_GO_SPECIAL_FLOAT: Final = re.compile(r"[+-]?(?:inf|infinity)|nan", re.IGNORECASE)


def _go_parse_int(raw: str) -> int | None:
    """strconv.ParseInt(raw, 0, 64), stretched to uint64's range (the field may be either)."""
    if not _GO_INT.fullmatch(raw):
        return None
    digits = raw.replace("_", "")
    sign = -1 if digits.startswith("-") else 1
    digits = digits.lstrip("+-")
    if len(digits) > 1 and digits[0] == "0" and digits[1] in "0123456789":
        value = int(digits, 8)  # Go reads a leading 0 as octal
    else:
        value = int(digits, 0)
    value *= sign
    if not -(2**63) <= value < 2**64:
        return None
    return value


def _go_parse_float(raw: str) -> float | None:
    """strconv.ParseFloat(raw, 64); None for bad syntax and for overflow."""
    try:
        if _GO_FLOAT.fullmatch(raw):
            value = float(raw)
        elif _GO_HEX_FLOAT.fullmatch(raw):
            value = float.fromhex(raw.replace("_", ""))
        elif _GO_SPECIAL_FLOAT.fullmatch(raw):
            return float(raw)
        else:
            return None
    except (ValueError, OverflowError):
        return None
    return None if math.isinf(value) else value


# --------------------------------------------------------------------------- the tree


@dataclass(frozen=True, slots=True)
class Match:
    operator: str
    path: tuple[str, ...]
    raw: str | None  # the value as go-bexpr's MatchValue.Raw holds it
    as_bool: bool | None
    as_int: int | None
    as_float: float | None
    regex: Any  # re2._Regexp for the matches operators

    @property
    def selector(self) -> str:
        return ".".join(self.path)


@dataclass(frozen=True, slots=True)
class Not:
    operand: Node


@dataclass(frozen=True, slots=True)
class And:
    operands: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Or:
    operands: tuple[Node, ...]


Node = Match | Not | And | Or

_RE2_OPTIONS: Final = re2.Options()
_RE2_OPTIONS.log_errors = False  # a bad pattern is the user's error, not something to log


def compile_re2(raw: str) -> Any:
    """`raw` compiled by RE2 (as bytes, matched against UTF-8 bytes); ValueError carries RE2's
    reason when it refuses the pattern. Every user-supplied pattern goes through here."""
    try:
        return re2.compile(raw.encode("utf-8", "surrogateescape"), _RE2_OPTIONS)
    except re2.error as err:
        reason = err.args[0] if err.args else "invalid pattern"
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        raise ValueError(str(reason)) from None
    except (UnicodeError, ValueError, TypeError) as err:
        raise ValueError(str(err)) from None


def _compile_regex(raw: str) -> Any:
    try:
        return compile_re2(raw)
    except ValueError as err:
        raise FilterError(
            f"Failed to compile regular expression {go_quote(raw)}: error parsing regexp: {err}"
        ) from None


def make_match(operator: str, path: tuple[str, ...], raw: str | None) -> Match:
    regex = None
    if raw is not None and operator in (MATCHES, NOT_MATCHES):
        regex = _compile_regex(raw)
    return Match(
        operator=operator,
        path=path,
        raw=raw,
        as_bool=None if raw is None else _go_parse_bool(raw),
        as_int=None if raw is None else _go_parse_int(raw),
        as_float=None if raw is None else _go_parse_float(raw),
        regex=regex,
    )
