"""The syntax tree hashicorp/hcl v1's decoder works on, for ACL rules in HCL or JSON.

Consul decodes rules with `hcl.Decode`; what it accepts, how it folds repeated keys,
which names match, and the wording and position of its errors all come from hcl's AST
(object lists of items with one or more keys; object, list and literal values). HCL text
is read into that tree by `_hclparse.py` (a port of hcl's scanner and parser: pyhcl,
whose output is plain data, refuses some valid rules, e.g. a label ending in an escaped
backslash, folds a repeated attribute into a list, and keeps no case or position), and
the decoder in `policy.py` walks the tree as hcl's `decoder.go` does.

JSON rules become the same tree, with the flattening of hcl's `json/parser/flatten.go`:
an object whose values are all objects, and a list of only objects, turn into items with
more keys, so `{"key": {"foo": {"policy": "read"}}}` is the item `key "foo" {policy}`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

# Nesting deeper than this is refused (Consul's parser has no limit, but no ACL rule nests
# more than three levels and Python's stack is finite).
MAX_DEPTH = 64


class HclError(Exception):
    """An error of hcl's, at `offset` in the text (None: no position, as for JSON).

    style is how hcl prints it: "pos" for a parser or decoder PosError (`At 1:5: msg`),
    "scan" for a scanner error (`1:5: msg`), "plain" for one without position prefix.
    """

    def __init__(self, msg: str, offset: int | None = None, *, style: str = "pos") -> None:
        super().__init__(msg)
        self.msg = msg
        self.offset = offset
        self.style = style

    def render(self, text: str) -> str:
        if self.offset is None or self.style == "plain":
            return self.msg
        where = line_col(text, self.offset)
        return f"At {where}: {self.msg}" if self.style == "pos" else f"{where}: {self.msg}"


def line_col(text: str, offset: int) -> str:
    """hcl's `line:column` of an offset: both from 1, columns counted in runes."""
    line = text.count("\n", 0, offset) + 1
    col = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return f"{line}:{col}"


@dataclass
class Key:
    value: str
    offset: int | None


@dataclass
class Literal:
    kind: str  # STRING, HEREDOC, NUMBER, FLOAT, BOOL, NULL (JSON null)
    text: str  # the token's text (numbers and booleans decode into strings as written)
    value: str  # the unquoted value of a STRING or HEREDOC
    offset: int | None


@dataclass
class ListNode:
    elems: list[Node]
    offset: int | None


@dataclass
class ObjectNode:
    items: list[Item]
    offset: int | None


Node = Literal | ListNode | ObjectNode


@dataclass
class Item:
    keys: list[Key]
    value: Node
    assign: bool  # `key = value` rather than `key { ... }`

    def pos(self) -> int | None:
        return self.keys[0].offset if self.keys else self.value.offset


# --- JSON ---------------------------------------------------------------------------------


class _Pairs(list[tuple[str, Any]]):
    """A JSON object as its (key, value) pairs, duplicates kept as hcl's JSON parser keeps them."""


@dataclass
class _Num:
    kind: str
    text: str


def _no_constant(name: str) -> Any:
    raise ValueError(f"invalid JSON value {name}")


def _json_node(value: Any, depth: int) -> Node:
    if depth >= MAX_DEPTH:
        raise HclError("nested too deeply")
    if isinstance(value, _Pairs):
        return ObjectNode(
            [Item([Key(k, None)], _json_node(v, depth + 1), True) for k, v in value], None
        )
    if isinstance(value, list):
        return ListNode([_json_node(v, depth + 1) for v in value], None)
    if isinstance(value, bool):
        text = "true" if value else "false"
        return Literal("BOOL", text, text, None)
    if isinstance(value, _Num):
        return Literal(value.kind, value.text, value.text, None)
    if value is None:
        return Literal("NULL", "null", "", None)
    return Literal("STRING", json.dumps(value), str(value), None)


def _expand(item: Item) -> list[Item]:
    """flattenObjectType / flattenListType: objects of objects become items with more keys."""
    v = item.value
    if (
        isinstance(v, ObjectNode)
        and v.items
        and all(isinstance(s.value, ObjectNode) for s in v.items)
    ):
        out: list[Item] = []
        for sub in v.items:
            out.extend(_expand(Item(item.keys + sub.keys, sub.value, item.assign)))
        return out
    if isinstance(v, ListNode) and v.elems and all(isinstance(e, ObjectNode) for e in v.elems):
        out = []
        for elem in v.elems:
            out.extend(_expand(Item(item.keys, elem, item.assign)))
        return out
    return [item]


def _flatten(items: list[Item]) -> list[Item]:
    flat = [x for item in items for x in _expand(item)]
    for item in flat:
        _flatten_node(item.value)
    return flat


def _flatten_node(node: Node) -> None:
    if isinstance(node, ObjectNode):
        node.items = _flatten(node.items)
    elif isinstance(node, ListNode):
        for elem in node.elems:
            _flatten_node(elem)


def parse_json(text: str) -> list[Item]:
    """The top-level object list of JSON rules; ValueError when the text is not JSON."""
    try:
        data = json.loads(
            text,
            object_pairs_hook=_Pairs,
            parse_int=lambda s: _Num("NUMBER", s),
            parse_float=lambda s: _Num("FLOAT", s),
            parse_constant=_no_constant,
        )
    except RecursionError:
        raise HclError("nested too deeply") from None
    root = _json_node(data, 0)
    if not isinstance(root, ObjectNode):  # pragma: no cover - the text starts with "{"
        raise HclError("expected a JSON object")
    return _flatten(root.items)


_GO_ESCAPES = {
    "\a": "\\a",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\v": "\\v",
}


def go_quote(s: str) -> str:
    """Go's strconv.Quote (what `%q` and `%#v` print for a string)."""
    out = ['"']
    for ch in s:
        code = ord(ch)
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ch in _GO_ESCAPES:
            out.append(_GO_ESCAPES[ch])
        elif 0xD800 <= code <= 0xDFFF:  # not a rune: Go would hold U+FFFD here
            out.append("\ufffd")
        elif ch == " " or ch.isprintable():
            out.append(ch)
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\x{code:02x}")
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)
