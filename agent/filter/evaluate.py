"""Evaluating a parsed filter against JSON-like data, as go-bexpr v0.1.2's evaluate.go does."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from agent.filter.tree import (
    EMPTY,
    EQ,
    IN,
    NE,
    NEGATED,
    NOT_EMPTY,
    NOT_IN,
    WHEN_MISSING,
    And,
    FilterError,
    Match,
    Node,
    Not,
    go_quote,
)

# --------------------------------------------------------------------------- evaluation

_MISSING: Final = object()


def _operator_error(node: Match) -> FilterError:
    return FilterError(
        f"Invalid match operator {go_quote(node.operator)} for selector {go_quote(node.selector)}"
    )


def _coerce_error(node: Match, parser: str) -> FilterError:
    raw = node.raw or ""
    return FilterError(
        f"Failed to coerce value {go_quote(raw)} for selector {go_quote(node.selector)}:"
        f" strconv.{parser}: parsing {go_quote(raw)}: invalid syntax"
    )


def _equal(node: Match, value: Any) -> bool:
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


def _search(node: Match, value: str) -> bool:
    try:
        return node.regex.search(value) is not None
    except UnicodeEncodeError:  # lone surrogates, as json.loads can leave them
        return node.regex.search(value.encode("utf-8", "surrogatepass")) is not None


def _apply(node: Match, value: Any) -> bool:
    """The operator on the value the selector found (go-bexpr's doMatch*)."""
    operator = node.operator
    if operator in (EQ, NE):
        if isinstance(value, Mapping | list | tuple):
            raise _operator_error(node)
        result = _equal(node, value)
    elif operator in (IN, NOT_IN):
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
    elif operator in (EMPTY, NOT_EMPTY):
        if not isinstance(value, str | Mapping | list | tuple):
            raise _operator_error(node)
        result = len(value) == 0
    else:  # matches
        if not isinstance(value, str):
            raise _operator_error(node)
        result = _search(node, value)
    return not result if operator in NEGATED else result


_JSON_VALUES: Final = (str, int, float, Mapping, list, tuple)


def _match_one(node: Match, obj: Any) -> bool:
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
            if WHEN_MISSING[node.operator]:
                return True
            continue
        if not isinstance(value, _JSON_VALUES):  # None, or no JSON type
            hit = WHEN_MISSING[node.operator]
        else:
            hit = _apply(node, value)
        if hit:
            return True
    return False


def evaluate(node: Node, obj: Any) -> bool:
    if isinstance(node, Match):
        return _match_one(node, obj)
    if isinstance(node, Not):
        return not evaluate(node.operand, obj)
    if isinstance(node, And):
        return all(evaluate(part, obj) for part in node.operands)
    return any(evaluate(part, obj) for part in node.operands)
