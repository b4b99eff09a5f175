"""`?filter=`: Consul 1.x's boolean filter expressions (hashicorp/go-bexpr), on JSON-like data.

Consul's listing endpoints (catalog, health, agent services and checks, ...) take
`?filter=<expression>` and drop every item the expression does not match, server-side. The
language is go-bexpr's, at the version Consul 1.x builds with (v0.1.2, whose `CreateFilter`
takes the Go type of the items): this module is its grammar and its evaluation, on the
dicts and lists a handler is about to serialise instead of on Go structs::

    flt = parse_filter(request.query.get("filter", ""))   # FilterError -> HTTP 400, str(err)
    nodes = filter_list(flt, nodes)                        # or flt.match(one), filter_dict(flt, m)

The language (go-bexpr's grammar.peg, whose rules this module follows token for token):

- match expressions: `Sel == V`, `Sel != V`, `Sel contains V`, `Sel not contains V`,
  `V in Sel`, `V not in Sel`, `Sel matches V`, `Sel not matches V`, `Sel is empty`,
  `Sel is not empty`; joined with `and`, `or`, `not` and parentheses; `not` binds tighter
  than `and`, which binds tighter than `or`. The word operators need whitespace around them
  (`a==1 and b==2` parses, `(a==1)and(b==2)` does not), `==` and `!=` do not.
- selectors: `Name(.Name)*` where a name is `[a-zA-Z][a-zA-Z0-9_]*`, and any part may be a map
  index with a quoted key, `ServiceMeta["a.b"]` (double-quoted or backtick). Names are
  case-sensitive, as go-bexpr's struct-field and map-key lookups are.
- values: `"double quoted"` (Go escapes: `\\n`, `\\t`, `\\xHH`, `\\u00e9`, ...; the grammar
  ends a string at the next `"`, so it can hold no `\\"`), `` `raw` `` (no escapes, `\\r`
  dropped, as Go's strconv.Unquote does), numbers `-?(0|[1-9][0-9]*)(\\.[0-9]+)?` that must
  be followed by whitespace, `)` or the end, and bare selectors, which stand for their
  dotted text (`Status == passing` compares with "passing").

Evaluation (go-bexpr v0.1.2's evaluate.go):

- A selector walks the object: a dict is indexed by the next name; a list met before the
  selector's end is searched, the match being true if it holds for any element (so
  `Checks.Status == critical` on a health entry asks whether any check is critical, and
  an empty list matches nothing, not even `!=`). At the selector's end the operator applies:
  `==`/`!=` compare with the literal read as the field's type (bool as Go's
  strconv.ParseBool reads it: `true`, `True`, `1`, `t`, ...; numbers as strconv.ParseInt with
  base prefixes or ParseFloat; strings as they are); `in`/`contains` is substring on strings,
  membership on lists (each element compared as `==` does) and key membership on dicts;
  `is empty` is length zero of a string, list or dict; `matches` is an RE2 search on strings.
- A missing field. go-bexpr checks every selector against the Go type's schema when the
  filter is created and answers `Selector "X" is not valid`; we have no Go types, so a path
  that does not exist in the object (a missing key, a null, a scalar where a dict was
  needed) takes the disposition go-bexpr gives a missing map key: `==`, `in`, `contains`,
  `matches` and `is not empty` are false; `!=`, `not in`, `not contains`, `not matches` and
  `is empty` are true. (v0.1.2 answered true for `matches` on a missing key too; this module
  follows the later go-bexpr fix, false.)
- An operator the value's type does not support (`Tags == x` on a list, `Port contains 1` on
  a number) and a literal the field's type cannot read (`EnableTagOverride == yes`) are errors
  go-bexpr reports when the filter is created; here they show when `match` meets such a
  value, and raise `FilterError` with go-bexpr's words. Handlers should filter before they
  answer and turn a FilterError from `parse_filter` or from matching into a 400. Numbers are
  compared as numbers whatever JSON made of them (`1` and `1.0` are equal), where go-bexpr
  would refuse a float literal for an int field.
- The empty expression matches everything (go-bexpr's nil filter); one made only of
  whitespace is a syntax error, as it is for go-bexpr.

Errors are worded as Consul words them, `Failed to create boolean expression evaluator:
<go-bexpr error>`, positions as pigeon (go-bexpr's parser generator) prints them,
`line:column (byte offset)`, e.g. `1:4 (3): no match found, expected: "!=", ".", "==", "[",
[ \\t\\r\\n] or [a-zA-Z0-9_]` for `foo`. Where pigeon's backtracking would list what a
keyword-named selector could continue with, the expected list is what the LALR parser could
take; the rule errors (`rule "string": Unterminated string literal`, `rule "number": Invalid
number literal`, `rule "index": Invalid index`, `rule "index": Unclosed index expression`,
`rule "match": Invalid selector`, `rule "grouping": Unmatched parentheses`) are go-bexpr's.
One more difference from the PEG: at the start of an operand, `not` is always the operator,
so a top-level field literally named `not` cannot be selected (`not == 1` is an error).

Not supported (absent from the go-bexpr Consul builds with): JSON-pointer selectors
(`"/Service/Tags"`), `any`/`all` collection expressions, `is nil`.

Bounds: an expression longer than 4096 characters or nested deeper than 64 levels
(parentheses and `not`s) is refused with a FilterError; parsing is LALR and evaluation
iterates over the data, so nothing recurses with the input's size. `matches` uses RE2
(`google-re2`), linear in the text whatever the pattern; a pattern RE2 refuses is a
FilterError when the filter is parsed.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, TypeVar

import re2
from lark import Lark, Token, Tree
from lark.exceptions import LarkError, UnexpectedCharacters, UnexpectedToken
from lark.parsers.lalr_interactive_parser import InteractiveParser

__all__ = [
    "MAX_FILTER_DEPTH",
    "MAX_FILTER_LENGTH",
    "Filter",
    "FilterError",
    "filter_dict",
    "filter_list",
    "parse_filter",
]

#: Longest expression accepted, in characters.
MAX_FILTER_LENGTH: Final = 4096
#: Deepest nesting accepted: parenthesised groups and `not`s, one level each.
MAX_FILTER_DEPTH: Final = 64

#: Consul's wrapping of every go-bexpr error (agent/consul's RPC endpoints and bexpr.CreateFilter).
ERROR_PREFIX: Final = "Failed to create boolean expression evaluator: "

T = TypeVar("T")
K = TypeVar("K")


class FilterError(ValueError):
    """A filter expression Consul would refuse; `str(err)` is the 400 response body.

    `detail` is go-bexpr's own error text (without Consul's prefix) and `position` the
    character index the error points at, when it points at one.
    """

    def __init__(self, detail: str, position: int | None = None) -> None:
        super().__init__(ERROR_PREFIX + detail)
        self.detail = detail
        self.position = position


# --------------------------------------------------------------------------- grammar

# go-bexpr's grammar.peg as LALR(1). Whitespace is skipped by the lexer; where the PEG demands
# it (around the word operators) or forbids it (around `.`, before `[`) the token loop in
# `_parse` checks it. The two-word operators are single tokens so that one token of
# lookahead tells `x not in Tags` from `x not contains y`.
_GRAMMAR: Final = r"""
start: or_expr
or_expr: and_expr (OR and_expr)*
and_expr: not_expr (AND not_expr)*
not_expr: NOT not_expr
        | LPAR or_expr RPAR
        | match
match: path EQ value
     | path NE value
     | path CONTAINS value
     | path NOT_CONTAINS value
     | path MATCHES value
     | path NOT_MATCHES value
     | path IS_EMPTY
     | path IS_NOT_EMPTY
     | value IN path
     | value NOT_IN path
value: path | NUMBER | STRING
path: IDENT segment*
segment: DOT IDENT | LBRACKET STRING RBRACKET

OR: "or"
AND: "and"
NOT: "not"
IN: "in"
CONTAINS: "contains"
MATCHES: "matches"
NOT_IN: /not[ \t\r\n]+in/
NOT_CONTAINS: /not[ \t\r\n]+contains/
NOT_MATCHES: /not[ \t\r\n]+matches/
IS_EMPTY: /is[ \t\r\n]+empty/
IS_NOT_EMPTY: /is[ \t\r\n]+not[ \t\r\n]+empty/
EQ: "=="
NE: "!="
LPAR: "("
RPAR: ")"
DOT: "."
LBRACKET: "["
RBRACKET: "]"
IDENT: /[a-zA-Z][a-zA-Z0-9_]*/
NUMBER: /-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?/
STRING: /"[^"]*"/ | /`[^`]*`/
%ignore /[ \t\r\n]+/
"""

_WS: Final = " \t\r\n"
_WS_CLASS: Final = "[ \\t\\r\\n]"
# `_ "or" _`, `_ "in" _`, `_ "is" _ "empty"`, ...: whitespace the PEG requires.
_WS_BEFORE: Final = frozenset(
    {
        "OR",
        "AND",
        "IN",
        "NOT_IN",
        "CONTAINS",
        "NOT_CONTAINS",
        "MATCHES",
        "NOT_MATCHES",
        "IS_EMPTY",
        "IS_NOT_EMPTY",
    }
)
_WS_AFTER: Final = frozenset(
    {"OR", "AND", "NOT", "IN", "NOT_IN", "CONTAINS", "NOT_CONTAINS", "MATCHES", "NOT_MATCHES"}
)
# How pigeon names what it expected: Go-quoted literals and character classes.
_DISPLAY: Final[dict[str, tuple[str, ...]]] = {
    "OR": ('"or"',),
    "AND": ('"and"',),
    "NOT": ('"not"',),
    "IN": ('"in"',),
    "CONTAINS": ('"contains"',),
    "MATCHES": ('"matches"',),
    "NOT_IN": ('"not"',),
    "NOT_CONTAINS": ('"not"',),
    "NOT_MATCHES": ('"not"',),
    "IS_EMPTY": ('"is"',),
    "IS_NOT_EMPTY": ('"is"',),
    "EQ": ('"=="',),
    "NE": ('"!="',),
    "LPAR": ('"("',),
    "RPAR": ('")"',),
    "DOT": ('"."',),
    "LBRACKET": ('"["',),
    "RBRACKET": ('"]"',),
    "IDENT": ("[a-zA-Z]",),
    "NUMBER": ('"-"', '"0"', "[1-9]"),
    "STRING": ('"\\""', '"`"'),
    "NUMBER_DIGITS": ('"0"', "[1-9]"),  # after a lone `-`
}

# Match operators, named as go-bexpr's MatchOperator.String() names them.
_EQ: Final = "Equal"
_NE: Final = "Not Equal"
_IN: Final = "In"
_NOT_IN: Final = "Not In"
_EMPTY: Final = "Is Empty"
_NOT_EMPTY: Final = "Is Not Empty"
_MATCHES: Final = "Matches"
_NOT_MATCHES: Final = "Not Matches"

_OPERATOR_OF_TOKEN: Final = {
    "EQ": _EQ,
    "NE": _NE,
    "CONTAINS": _IN,
    "NOT_CONTAINS": _NOT_IN,
    "IN": _IN,
    "NOT_IN": _NOT_IN,
    "MATCHES": _MATCHES,
    "NOT_MATCHES": _NOT_MATCHES,
    "IS_EMPTY": _EMPTY,
    "IS_NOT_EMPTY": _NOT_EMPTY,
}
# What an operator answers for a selector that finds nothing (go-bexpr's NotPresentDisposition).
_WHEN_MISSING: Final = {
    _EQ: False,
    _NE: True,
    _IN: False,
    _NOT_IN: True,
    _EMPTY: True,
    _NOT_EMPTY: False,
    _MATCHES: False,
    _NOT_MATCHES: True,
}
_NEGATED: Final = frozenset({_NE, _NOT_IN, _NOT_EMPTY, _NOT_MATCHES})


@functools.cache
def _parser() -> Lark:
    return Lark(_GRAMMAR, parser="lalr", lexer="contextual", keep_all_tokens=True)


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


def _go_unquote_double(body: str) -> str | None:
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
class _Match:
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
class _Not:
    operand: _Node


@dataclass(frozen=True, slots=True)
class _And:
    operands: tuple[_Node, ...]


@dataclass(frozen=True, slots=True)
class _Or:
    operands: tuple[_Node, ...]


_Node = _Match | _Not | _And | _Or

_RE2_OPTIONS: Final = re2.Options()
_RE2_OPTIONS.log_errors = False  # a bad pattern is the user's error, not something to log


def _compile_regex(raw: str) -> Any:
    try:
        return re2.compile(raw.encode("utf-8", "surrogateescape"), _RE2_OPTIONS)
    except re2.error as err:
        reason = err.args[0] if err.args else "invalid pattern"
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        raise FilterError(
            f"Failed to compile regular expression {go_quote(raw)}: error parsing regexp: {reason}"
        ) from None
    except (UnicodeError, ValueError, TypeError) as err:
        raise FilterError(
            f"Failed to compile regular expression {go_quote(raw)}: error parsing regexp: {err}"
        ) from None


def _make_match(operator: str, path: tuple[str, ...], raw: str | None) -> _Match:
    regex = None
    if raw is not None and operator in (_MATCHES, _NOT_MATCHES):
        regex = _compile_regex(raw)
    return _Match(
        operator=operator,
        path=path,
        raw=raw,
        as_bool=None if raw is None else _go_parse_bool(raw),
        as_int=None if raw is None else _go_parse_int(raw),
        as_float=None if raw is None else _go_parse_float(raw),
        regex=regex,
    )


# --------------------------------------------------------------------------- parsing


def _where(text: str, index: int) -> str:
    """pigeon's `line:col (offset)`: col counts characters (a newline is col 0 of the next
    line), offset counts UTF-8 bytes."""
    head = text[:index]
    line = head.count("\n") + 1
    last_nl = head.rfind("\n")
    col = index - last_nl
    if index < len(text) and text[index] == "\n":
        line += 1
        col = 0
    offset = len(head.encode("utf-8", "surrogatepass"))
    return f"{line}:{col} ({offset})"


def _rule_error(text: str, index: int, rule: str, message: str) -> FilterError:
    return FilterError(f'{_where(text, index)}: rule "{rule}": {message}', index)


def _no_match(
    text: str,
    index: int,
    expected: Iterable[str],
    previous: Token | None,
    depth: int,
    *,
    whitespace: bool = True,
) -> FilterError:
    """pigeon's `no match found, expected: ...`, from the terminals the parser could take."""
    items: set[str] = set()
    after_ws = index > 0 and text[index - 1] in _WS
    adjacent = previous is not None and previous.end_pos == index
    # right after a selector's name or `]`, the selector could go on with `.` or `[`
    continues = adjacent and previous is not None and previous.type in ("IDENT", "RBRACKET")
    eof = False
    for name in expected:
        if name == "$END":
            eof = True
        elif (name == "RPAR" and depth <= 0) or (name in ("DOT", "LBRACKET") and not continues):
            continue
        elif name in _WS_BEFORE and not after_ws:
            items.add(_WS_CLASS)
        else:
            items.update(_DISPLAY.get(name, (name,)))
    if continues:
        assert previous is not None
        items.update(('"."', '"["'))
        if previous.type == "IDENT":
            items.add("[a-zA-Z0-9_]")
    if whitespace and not (adjacent and previous is not None and previous.type == "DOT"):
        items.add(_WS_CLASS)
    listed = sorted(items)
    if eof:
        listed.append("EOF")
    if len(listed) > 1:
        joined = ", ".join(listed[:-1]) + " or " + listed[-1]
    else:
        joined = listed[0] if listed else ""
    return FilterError(f"{_where(text, index)}: no match found, expected: {joined}", index)


def _string_value(token: Token) -> str | None:
    body = str(token)[1:-1]
    if str(token).startswith("`"):
        return body.replace("\r", "")
    return _go_unquote_double(body)


def _parse(text: str) -> _Node:
    ip = _parser().parse_interactive(text)
    last: Token | None = None
    before_last: Token | None = None
    depth = 0
    strings: dict[int, str] = {}
    try:
        for token in ip.iter_parse():
            kind, start, end = token.type, token.start_pos, token.end_pos
            assert start is not None and end is not None
            if kind in _WS_BEFORE and not (start > 0 and text[start - 1] in _WS):
                raise _no_match(text, start, ip.accepts(), last, depth)
            if kind in _WS_AFTER and not (end < len(text) and text[end] in _WS):
                raise _no_match(text, end, (), token, depth)
            if kind in ("DOT", "LBRACKET") and (last is None or last.end_pos != start):
                raise _no_match(text, start, ip.accepts(), last, depth)
            if (
                kind == "IDENT"
                and last is not None
                and last.type == "DOT"
                and last.end_pos != start
            ):
                raise _no_match(text, last.end_pos or 0, ("IDENT",), last, depth)
            if kind == "NUMBER" and end < len(text) and text[end] not in " \t\r\n)":
                raise _rule_error(text, end, "number", "Invalid number literal")
            if kind == "STRING":
                value = _string_value(token)
                if value is None:
                    raise _rule_error(text, start, "string", "invalid syntax")
                strings[start] = value
            if kind == "LPAR":
                depth += 1
                if depth > MAX_FILTER_DEPTH:
                    raise FilterError(
                        f"{_where(text, start)}: expression nested deeper than"
                        f" {MAX_FILTER_DEPTH} levels",
                        start,
                    )
            elif kind == "RPAR":
                depth -= 1
            before_last, last = last, token
        tree = ip.feed_eof(last)
    except UnexpectedCharacters as err:
        index = err.pos_in_stream or 0
        allowed = set(err.allowed or ())
        char = text[index] if index < len(text) else ""
        if char in ('"', "`") and "STRING" in allowed:
            raise _rule_error(text, len(text), "string", "Unterminated string literal") from None
        if char == "-" and "NUMBER" in allowed:
            raise _no_match(
                text, index + 1, ("NUMBER_DIGITS",), None, depth, whitespace=False
            ) from None
        raise _syntax_error(text, index, _accepts(ip, allowed), last, depth) from None
    except UnexpectedToken as err:
        offending = err.token
        if offending.type == "$END":
            index, previous = len(text), last
        else:
            index = offending.start_pos if offending.start_pos is not None else len(text)
            previous = before_last if offending is last else last
        state = err.interactive_parser or ip
        expected = _accepts(state, set(err.expected or ()))
        raise _syntax_error(text, index, expected, previous, depth) from None
    except FilterError:
        raise
    except LarkError as err:  # pragma: no cover - lark's other failures, never seen
        raise FilterError(f"invalid expression: {err}") from None
    return _Converter(text, strings).convert(tree)


def _accepts(ip: InteractiveParser, fallback: set[str]) -> set[str]:
    """The terminals the parser can take next, exactly (LALR's merged lookaheads, which lark's
    `expected` reports, would list some that lead nowhere)."""
    try:
        return set(ip.accepts()) or fallback
    except LarkError:  # pragma: no cover - defensive
        return fallback


def _syntax_error(
    text: str, index: int, expected: set[str], previous: Token | None, depth: int
) -> FilterError:
    if expected == {"STRING"}:  # after `[`
        return _rule_error(text, index, "index", "Invalid index")
    if expected == {"RBRACKET"}:
        return _rule_error(text, index, "index", "Unclosed index expression")
    if previous is not None and previous.type in ("IN", "NOT_IN"):
        return _rule_error(text, index, "match", "Invalid selector")
    if "RPAR" in expected and depth > 0:
        return _rule_error(text, index, "grouping", "Unmatched parentheses")
    return _no_match(text, index, expected, previous, depth)


class _Converter:
    """Lark's tree (all tokens kept) -> the evaluation tree, with the depth bound."""

    def __init__(self, text: str, strings: dict[int, str]) -> None:
        self.text = text
        self.strings = strings

    def convert(self, tree: Tree[Token]) -> _Node:
        (top,) = tree.children
        assert isinstance(top, Tree)
        return self.or_expr(top, 0)

    def or_expr(self, tree: Tree[Token], depth: int) -> _Node:
        parts = tuple(
            self.and_expr(child, depth) for child in tree.children if isinstance(child, Tree)
        )
        return parts[0] if len(parts) == 1 else _Or(parts)

    def and_expr(self, tree: Tree[Token], depth: int) -> _Node:
        parts = tuple(
            self.not_expr(child, depth) for child in tree.children if isinstance(child, Tree)
        )
        return parts[0] if len(parts) == 1 else _And(parts)

    def not_expr(self, tree: Tree[Token], depth: int) -> _Node:
        first = tree.children[0]
        if isinstance(first, Tree):  # a match
            return self.match(first)
        if depth + 1 > MAX_FILTER_DEPTH:
            start = first.start_pos or 0
            raise FilterError(
                f"{_where(self.text, start)}: expression nested deeper than"
                f" {MAX_FILTER_DEPTH} levels",
                start,
            )
        inner = tree.children[1]
        assert isinstance(inner, Tree)
        if first.type == "LPAR":
            return self.or_expr(inner, depth + 1)
        operand = self.not_expr(inner, depth + 1)
        # `not not x` is x, as go-bexpr's grammar folds it
        return operand.operand if isinstance(operand, _Not) else _Not(operand)

    def match(self, tree: Tree[Token]) -> _Node:
        children = tree.children
        operator_token = children[1]
        assert isinstance(operator_token, Token)
        operator = _OPERATOR_OF_TOKEN[operator_token.type]
        first = children[0]
        assert isinstance(first, Tree)
        value: Tree[Token] | Token | None
        if operator_token.type in ("IN", "NOT_IN"):
            selector, value = children[2], first
        else:
            selector, value = first, (children[2] if len(children) > 2 else None)
        assert isinstance(selector, Tree)
        raw = None if value is None else self.value(value)
        return _make_match(operator, self.path(selector), raw)

    def value(self, tree: Tree[Token] | Token) -> str:
        assert isinstance(tree, Tree)
        (child,) = tree.children
        if isinstance(child, Tree):  # a selector stands for its dotted text
            return ".".join(self.path(child))
        if child.type == "STRING":
            return self.strings[child.start_pos or 0]
        return str(child)

    def path(self, tree: Tree[Token]) -> tuple[str, ...]:
        parts: list[str] = []
        for child in tree.children:
            if isinstance(child, Token):
                parts.append(str(child))
                continue
            key = child.children[1]
            assert isinstance(key, Token)
            parts.append(self.strings[key.start_pos or 0] if key.type == "STRING" else str(key))
        return tuple(parts)


# --------------------------------------------------------------------------- evaluation

_MISSING: Final = object()


def _operator_error(node: _Match) -> FilterError:
    return FilterError(
        f"Invalid match operator {go_quote(node.operator)} for selector {go_quote(node.selector)}"
    )


def _coerce_error(node: _Match, parser: str) -> FilterError:
    raw = node.raw or ""
    return FilterError(
        f"Failed to coerce value {go_quote(raw)} for selector {go_quote(node.selector)}:"
        f" strconv.{parser}: parsing {go_quote(raw)}: invalid syntax"
    )


def _equal(node: _Match, value: Any) -> bool:
    """`value == literal`, the literal read as value's type (go-bexpr's coercion)."""
    if isinstance(value, str):
        return value == node.raw
    if isinstance(value, bool):
        if node.as_bool is None:
            raise _coerce_error(node, "ParseBool")
        return value is node.as_bool
    if isinstance(value, int):
        if node.as_int is not None:
            return value == node.as_int
        if node.as_float is not None:
            return value == node.as_float
        raise _coerce_error(node, "ParseInt")
    if isinstance(value, float):
        if node.as_float is not None:
            return value == node.as_float
        if node.as_int is not None:
            return value == node.as_int
        raise _coerce_error(node, "ParseFloat")
    raise _operator_error(node)


def _search(node: _Match, value: str) -> bool:
    try:
        return node.regex.search(value) is not None
    except UnicodeEncodeError:  # lone surrogates, as json.loads can leave them
        return node.regex.search(value.encode("utf-8", "surrogatepass")) is not None


def _apply(node: _Match, value: Any) -> bool:
    """The operator on the value the selector found (go-bexpr's doMatch*)."""
    operator = node.operator
    if operator in (_EQ, _NE):
        if isinstance(value, Mapping | list | tuple):
            raise _operator_error(node)
        result = _equal(node, value)
    elif operator in (_IN, _NOT_IN):
        raw = node.raw or ""
        if isinstance(value, str | Mapping):  # substring; key of a map
            result = raw in value
        elif isinstance(value, list | tuple):
            result = False
            for element in value:
                if element is None:
                    continue
                if isinstance(element, Mapping | list | tuple):
                    raise _operator_error(node)
                if _equal(node, element):
                    result = True
                    break
        else:
            raise _operator_error(node)
    elif operator in (_EMPTY, _NOT_EMPTY):
        if not isinstance(value, str | Mapping | list | tuple):
            raise _operator_error(node)
        result = len(value) == 0
    else:  # matches
        if not isinstance(value, str):
            raise _operator_error(node)
        result = _search(node, value)
    return not result if operator in _NEGATED else result


_JSON_VALUES: Final = (str, int, float, Mapping, list, tuple)


def _match_one(node: _Match, obj: Any) -> bool:
    """Walk the selector through obj; a list before the selector's end matches if any
    element does. Iterative, so deep data costs no recursion."""
    path = node.path
    end = len(path)
    stack: list[tuple[Any, int]] = [(obj, 0)]
    while stack:
        value, depth = stack.pop()
        if depth < end and isinstance(value, list | tuple):
            stack.extend((item, depth) for item in reversed(value))
            continue
        if depth < end:
            if isinstance(value, Mapping):
                child = value.get(path[depth], _MISSING)
                if child is not _MISSING:
                    stack.append((child, depth + 1))
                    continue
            if _WHEN_MISSING[node.operator]:
                return True
            continue
        if not isinstance(value, _JSON_VALUES):  # None, or no JSON type
            hit = _WHEN_MISSING[node.operator]
        else:
            hit = _apply(node, value)
        if hit:
            return True
    return False


def _evaluate(node: _Node, obj: Any) -> bool:
    if isinstance(node, _Match):
        return _match_one(node, obj)
    if isinstance(node, _Not):
        return not _evaluate(node.operand, obj)
    if isinstance(node, _And):
        return all(_evaluate(part, obj) for part in node.operands)
    return any(_evaluate(part, obj) for part in node.operands)


# --------------------------------------------------------------------------- public API


class Filter:
    """A parsed `?filter=` expression; `match(obj)` says whether obj passes it."""

    __slots__ = ("_root", "expression")

    def __init__(self, expression: str, root: _Node | None) -> None:
        self.expression = expression
        self._root = root

    def match(self, obj: Any) -> bool:
        """Whether the JSON-like obj (dicts, lists, str, int, float, bool, None) matches.

        Raises FilterError where go-bexpr would have refused the expression for the type of
        the data (an operator the value's type lacks, a literal the field cannot read).
        """
        if self._root is None:
            return True
        return _evaluate(self._root, obj)

    __call__ = match

    def __repr__(self) -> str:
        return f"Filter({self.expression!r})"


def parse_filter(text: str) -> Filter:
    """Parse a `?filter=` expression; FilterError (Consul's 400 body) if it is not one."""
    if not isinstance(text, str):
        raise TypeError(f"filter expression must be str, not {type(text).__name__}")
    if text == "":
        return Filter(text, None)
    if len(text) > MAX_FILTER_LENGTH:
        raise FilterError(
            f"expression is {len(text)} characters long, longer than the"
            f" {MAX_FILTER_LENGTH} allowed"
        )
    return Filter(text, _parse(text))


def filter_list(flt: Filter | None, items: Iterable[T]) -> list[T]:
    """The items flt matches, in order (all of them when flt is None): bexpr's Filter.Execute
    on a slice."""
    if flt is None:
        return list(items)
    keep: Callable[[Any], bool] = flt.match
    return [item for item in items if keep(item)]


def filter_dict(flt: Filter | None, items: Mapping[K, T]) -> dict[K, T]:
    """The entries whose values flt matches (all when flt is None): Filter.Execute on a map,
    as /v1/agent/services and /v1/agent/checks use it."""
    if flt is None:
        return dict(items)
    return {key: value for key, value in items.items() if flt.match(value)}
