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

from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from agent.filter.evaluate import evaluate
from agent.filter.parse import parse_tree
from agent.filter.tree import MAX_FILTER_DEPTH, MAX_FILTER_LENGTH, FilterError, Node

__all__ = [
    "MAX_FILTER_DEPTH",
    "MAX_FILTER_LENGTH",
    "Filter",
    "FilterError",
    "filter_dict",
    "filter_list",
    "parse_filter",
]


T = TypeVar("T")
K = TypeVar("K")


# --------------------------------------------------------------------------- public API


class Filter:
    """A parsed `?filter=` expression; `match(obj)` says whether obj passes it."""

    __slots__ = ("_root", "expression")

    def __init__(self, expression: str, root: Node | None) -> None:
        self.expression = expression
        self._root = root

    def match(self, obj: Any) -> bool:
        """Whether the JSON-like obj (dicts, lists, str, int, float, bool, None) matches.

        Raises FilterError where go-bexpr would have refused the expression for the type of
        the data (an operator the value's type lacks, a literal the field cannot read).
        """
        if self._root is None:
            return True
        return evaluate(self._root, obj)

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
    return Filter(text, parse_tree(text))


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
