"""go-bexpr's grammar on lark (LALR), and the error texts pigeon's parser gives, with
line:col (offset) positions."""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Final

from lark import Lark, Token, Tree
from lark.exceptions import LarkError, UnexpectedCharacters, UnexpectedToken
from lark.parsers.lalr_interactive_parser import InteractiveParser

from agent.filter.tree import (
    MAX_FILTER_DEPTH,
    OPERATOR_OF_TOKEN,
    And,
    FilterError,
    Node,
    Not,
    Or,
    go_unquote_double,
    make_match,
)

# --------------------------------------------------------------------------- grammar

# go-bexpr's grammar.peg as LALR(1). Whitespace is skipped by the lexer; where the PEG demands
# it (around the word operators) or forbids it (around `.`, before `[`) the token loop in
# `parse_tree` checks it. The two-word operators are single tokens so that one token of
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


@functools.cache
def _parser() -> Lark:
    return Lark(_GRAMMAR, parser="lalr", lexer="contextual", keep_all_tokens=True)


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
    return go_unquote_double(body)


def parse_tree(text: str) -> Node:
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

    def convert(self, tree: Tree[Token]) -> Node:
        (top,) = tree.children
        assert isinstance(top, Tree)
        return self.or_expr(top, 0)

    def or_expr(self, tree: Tree[Token], depth: int) -> Node:
        parts = tuple(
            self.and_expr(child, depth) for child in tree.children if isinstance(child, Tree)
        )
        return parts[0] if len(parts) == 1 else Or(parts)

    def and_expr(self, tree: Tree[Token], depth: int) -> Node:
        parts = tuple(
            self.not_expr(child, depth) for child in tree.children if isinstance(child, Tree)
        )
        return parts[0] if len(parts) == 1 else And(parts)

    def not_expr(self, tree: Tree[Token], depth: int) -> Node:
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
        return operand.operand if isinstance(operand, Not) else Not(operand)

    def match(self, tree: Tree[Token]) -> Node:
        children = tree.children
        operator_token = children[1]
        assert isinstance(operator_token, Token)
        operator = OPERATOR_OF_TOKEN[operator_token.type]
        first = children[0]
        assert isinstance(first, Tree)
        value: Tree[Token] | Token | None
        if operator_token.type in ("IN", "NOT_IN"):
            selector, value = children[2], first
        else:
            selector, value = first, (children[2] if len(children) > 2 else None)
        assert isinstance(selector, Tree)
        raw = None if value is None else self.value(value)
        return make_match(operator, self.path(selector), raw)

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
