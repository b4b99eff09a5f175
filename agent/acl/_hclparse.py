"""HCL 1's scanner and parser (hashicorp/hcl v1 hcl/scanner, hcl/parser, hcl/strconv),
ported so that ACL rules are accepted and refused as Consul accepts and refuses them.

Errors carry Consul's wording and position: scanner errors read `1:13: literal not
terminated`, parser errors `At 1:8: nested object expected: LBRACE got: ASSIGN`, and a
repeated attribute `The argument "policy" at 1:31 was already set. Each argument can only
be defined once` (hcl's DecodeErrorOnDuplicates, which Consul applies to rules it is given).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from agent.acl._hcl import MAX_DEPTH, HclError, Item, Key, ListNode, Literal, Node, ObjectNode
from agent.acl._hcl import go_quote as _q
from agent.acl._hcl import line_col as _line_col

_LITERALS = ("NUMBER", "FLOAT", "BOOL", "STRING", "HEREDOC")
_PUNCT = {"[": "LBRACK", "]": "RBRACK", "{": "LBRACE", "}": "RBRACE", ",": "COMMA", "=": "ASSIGN"}
_SIMPLE_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}
_HEX = "0123456789abcdefABCDEF"


@dataclass
class Token:
    kind: str
    text: str
    value: str
    offset: int


def _is_letter(ch: str) -> bool:
    return ("a" <= ch <= "z") or ("A" <= ch <= "Z") or ch == "_" or (ch >= "\x80" and ch.isalpha())


def _is_digit(ch: str) -> bool:
    return ("0" <= ch <= "9") or (ch >= "\x80" and unicodedata.category(ch) == "Nd")


def _is_dec(ch: str) -> bool:
    return "0" <= ch <= "9"


class _Scanner:
    def __init__(self, text: str) -> None:
        self.text = text
        self.n = len(text)

    def at(self, i: int) -> str:
        return self.text[i] if i < self.n else ""

    def err(self, msg: str, offset: int) -> HclError:
        return HclError(msg, min(offset, self.n), style="scan")

    def tokens(self) -> list[Token]:
        for bad, msg in (
            ("\x00", "unexpected null character (0x00)"),
            ("\ue123", "unicode code point U+E123 reserved for internal use"),
        ):
            where = self.text.find(bad)
            if where >= 0:
                raise self.err(msg, where)
        toks: list[Token] = []
        i, last_kind, last_end = 0, "", 0
        while True:
            while i < self.n and self.text[i] in " \t\n\r":
                i += 1
            if i >= self.n:
                # hcl's scanner counts a column for every read at the end of the text, and
                # identifiers, numbers and line comments read once past their last character
                past = last_end == self.n and last_kind in (
                    "IDENT",
                    "BOOL",
                    "NUMBER",
                    "FLOAT",
                    "LINE",
                )
                toks.append(Token("EOF", "", "", self.n + past))
                return toks
            kind, end, value = self.scan_one(i)
            last_kind, last_end = kind, end
            if kind not in ("COMMENT", "LINE"):
                text = self.text[i:end]
                toks.append(Token(kind, text, value if value is not None else text, i))
            i = end

    def scan_one(self, i: int) -> tuple[str, int, str | None]:
        ch, nxt = self.text[i], self.at(i + 1)
        if _is_letter(ch):
            j = i + 1
            while j < self.n and (
                _is_letter(self.text[j]) or _is_digit(self.text[j]) or self.text[j] in "-."
            ):
                j += 1
            return ("BOOL" if self.text[i:j] in ("true", "false") else "IDENT"), j, None
        if _is_dec(ch) or (ch == "-" and _is_dec(nxt)):
            return self.number(i)
        if ch == '"':
            end = self.string(i)
            return "STRING", end, unquote(self.text[i:end], i)
        if ch == "#" or (ch == "/" and nxt != "*"):
            if ch == "/" and nxt != "/":
                raise self.err("expected '/' for comment", i)
            end = self.text.find("\n", i)
            return "LINE", self.n if end < 0 else end, None
        if ch == "/":
            end = self.text.find("*/", i + 2)
            if end < 0:
                raise self.err("comment not terminated", self.n)
            return "COMMENT", end + 2, None
        if ch == ".":
            if _is_dec(nxt):
                return "FLOAT", self.fraction_exponent(i), None
            return "PERIOD", i + 1, None
        if ch == "<":
            end = self.heredoc(i)
            return "HEREDOC", end, heredoc_value(self.text[i:end])
        if ch in _PUNCT:
            return _PUNCT[ch], i + 1, None
        if ch == "+":
            return "ADD", i + 1, None
        if ch == "-":
            return "SUB", i + 1, None
        raise self.err("illegal char", i)

    def number(self, i: int) -> tuple[str, int, None]:
        j = i + 1 if self.text[i] == "-" else i
        illegal_octal = False
        if self.text[j] == "0":
            j += 1
            if self.at(j) in ("x", "X"):
                j += 1
                start = j
                while self.at(j) and self.at(j) in _HEX:
                    j += 1
                if j == start:
                    raise self.err("illegal hexadecimal number", j)
                return "NUMBER", j, None
            while _is_dec(self.at(j)):  # as hcl: the digit right after the 0 goes unchecked
                j += 1
                illegal_octal = illegal_octal or self.at(j) in ("8", "9")
        else:
            while _is_dec(self.at(j)):
                j += 1
        if self.at(j) in ("e", "E", "."):
            return "FLOAT", self.fraction_exponent(j), None
        if illegal_octal:
            raise self.err("illegal octal number", j)
        return "NUMBER", j, None

    def fraction_exponent(self, j: int) -> int:
        if self.at(j) == ".":
            j += 1
            while _is_dec(self.at(j)):
                j += 1
        if self.at(j) in ("e", "E"):
            j += 1
            if self.at(j) in ("+", "-"):
                j += 1
            while _is_dec(self.at(j)):
                j += 1
        return j

    def string(self, i: int) -> int:
        j, braces = i + 1, 0
        while True:
            if j >= self.n:
                raise self.err("literal not terminated", self.n)
            ch = self.text[j]
            if ch == "\n" and braces == 0:
                raise self.err("literal not terminated", j)
            if ch == '"' and braces == 0:
                return j + 1
            if braces == 0 and ch == "$" and self.at(j + 1) == "{":
                braces += 1
                j += 2
                continue
            if braces > 0 and ch == "{":
                braces += 1
            if braces > 0 and ch == "}":
                braces -= 1
            if ch == "\\":
                j = self.escape(j)
                continue
            j += 1

    def escape(self, j: int) -> int:
        c = self.at(j + 1)
        if c and c in 'abfnrtv\\"':
            return j + 2
        widths = {"x": (2, _HEX), "u": (4, _HEX), "U": (8, _HEX)}
        if c and c in "01234567":
            count, digits, start = 3, "01234567", j + 1
        elif c in widths:
            (count, digits), start = widths[c], j + 2
        else:
            raise self.err("illegal char escape", j + 1)
        got = self.text[start : start + count]
        if len(got) < count or any(d not in digits for d in got):
            raise self.err("illegal char escape", start + len(got))
        return start + count

    def heredoc(self, i: int) -> int:
        if self.at(i + 1) != "<":
            raise self.err("heredoc expected second '<', didn't see it", i + 1)
        start = j = i + 2
        if self.at(j) == "-":
            j += 1
        while self.at(j) and (_is_letter(self.text[j]) or _is_digit(self.text[j])):
            j += 1
        if j >= self.n:
            raise self.err("heredoc not terminated", self.n)
        if self.text[j] != "\n":
            raise self.err("invalid characters in heredoc anchor", j)
        ident = self.text[start:j]
        if not ident:
            raise self.err("zero-length heredoc anchor", j)
        anchor = ident[1:] if ident[0] == "-" else ident
        terminator = re.compile(r"[ \t\n\v\f\r]*" + re.escape(anchor) + r"\r*\Z")
        ident_len = len(ident.encode())
        j += 1
        line_start = j
        while True:
            if j >= self.n:
                raise self.err("heredoc not terminated", self.n)
            ch = self.text[j]
            j += 1
            if ch == "\n":
                line = self.text[line_start : j - 1]
                if len(line.encode()) >= ident_len and terminator.match(line):
                    return j
                line_start = j


def heredoc_value(text: str) -> str:
    """hcl token.unindentHeredoc, on UTF-8 bytes as Go slices it."""
    raw = text.encode()
    idx = raw.index(b"\n")
    if raw[2:3] != b"-":
        return raw[idx + 1 : len(raw) - idx + 1].decode(errors="replace")
    lines = raw[idx + 1 : len(raw) - idx + 2].split(b"\n")
    prefix = lines[-1]
    if not all(line.startswith(prefix) for line in lines):
        return raw[idx + 1 : len(raw) - idx + 1].rstrip(b" \t").decode(errors="replace")
    return b"\n".join([line[len(prefix) :] for line in lines[:-1]] + [b""]).decode(errors="replace")


def unquote(text: str, offset: int) -> str:
    """hcl strconv.Unquote: escapes undone outside `${...}`, which is kept as written."""
    s, out, i = text[1:-1], [], 0
    bad = HclError(f"unquote {text} err: invalid syntax", offset, style="pos")
    while i < len(s):
        if s.startswith("${", i):
            depth, j = 1, i + 2
            while j < len(s) and depth > 0:
                depth += {"{": 1, "}": -1}.get(s[j], 0)
                j += 1
            if depth != 0:
                raise bad
            out.append(s[i:j])
            i = j
            continue
        ch = s[i]
        if ch == "\n" or ch == '"':
            raise bad
        if ch != "\\":
            out.append(ch)
            i += 1
            continue
        c = s[i + 1 : i + 2]
        if c in _SIMPLE_ESCAPES:
            out.append(_SIMPLE_ESCAPES[c])
            i += 2
        elif c in ("\\", '"'):
            out.append(c)
            i += 2
        elif c and c in "xuU01234567":
            # \xHH, \uHHHH, \UHHHHHHHH, or three octal digits (the first is c itself)
            width, base = {"x": (2, 16), "u": (4, 16), "U": (8, 16)}.get(c, (3, 8))
            start = i + 1 if base == 8 else i + 2
            digits = s[start : start + width]
            valid = "01234567" if base == 8 else _HEX
            if len(digits) != width or any(d not in valid for d in digits):
                raise bad
            code = int(digits, base)
            if code > (255 if base == 8 else 0x10FFFF) or 0xD800 <= code <= 0xDFFF:
                raise bad
            out.append(chr(code))
            i = start + width
        else:
            raise bad
    return "".join(out)


class _Eof(Exception):
    """errEofToken: the text ended where an item could start (or its value)."""


class _Parser:
    def __init__(self, text: str, strict: bool) -> None:
        self.toks = _Scanner(text).tokens()
        self.i = 0
        self.tok = Token("EOF", "", "", 0)
        self.buffered = False
        self.strict = strict
        self.text = text
        self.depth = 0

    def scan(self) -> Token:
        """The next token (the last one again after `unscan`, as hcl's one-token buffer)."""
        if self.buffered:
            self.buffered = False
            return self.tok
        tok = self.toks[self.i]
        if tok.kind == "EOF":  # every fresh scan at the end is one column further
            self.toks[self.i] = Token("EOF", "", "", tok.offset + 1)
        else:
            self.i += 1
        self.tok = tok
        return tok

    def unscan(self) -> None:
        self.buffered = True

    def pos_err(self, msg: str, tok: Token) -> HclError:
        return HclError(msg, tok.offset, style="pos")

    def object_list(self, obj: bool) -> tuple[list[Item], HclError | None]:
        items: list[Item] = []
        seen: set[str] = set()
        while True:
            if obj:
                tok = self.scan()
                self.unscan()
                if tok.kind == "RBRACE":
                    return items, None
            try:
                item = self.object_item()
            except _Eof:
                return items, None
            except HclError as exc:
                if exc.style == "plain":
                    raise
                return items, exc
            if self.strict and item.assign:
                key = item.keys[0]
                if key.value in seen:
                    raise HclError(
                        f"The argument {_q(key.value)} at {_line_col(self.text, key.offset or 0)} "
                        "was already set. Each argument can only be defined once",
                        style="plain",
                    )
                seen.add(key.value)
            items.append(item)
            if self.scan().kind != "COMMA":
                self.unscan()

    def object_key(self) -> tuple[list[Token], HclError | _Eof | None]:
        keys: list[Token] = []
        while True:
            tok = self.scan()
            if tok.kind == "EOF":
                return keys, _Eof()
            if tok.kind == "ASSIGN":
                if len(keys) > 1:
                    raise self.pos_err("nested object expected: LBRACE got: ASSIGN", tok)
                if not keys:
                    raise self.pos_err("no object keys found!", tok)
                return keys, None
            if tok.kind == "LBRACE":
                err = None if keys else self.pos_err("expected: IDENT | STRING got: LBRACE", tok)
                return keys, err
            if tok.kind in ("IDENT", "STRING"):
                keys.append(tok)
                continue
            return keys, self.pos_err(
                f"expected: IDENT | STRING | ASSIGN | LBRACE got: {tok.kind}", tok
            )

    def object_item(self) -> Item:
        keys, err = self.object_key()
        if keys and isinstance(err, _Eof):
            err = None
        if keys and err is not None and self.tok.kind == "RBRACE":
            err = None
            self.tok = Token("EOF", self.tok.text, self.tok.value, self.tok.offset)
        if err is not None:
            raise err
        item_keys = [Key(k.value, k.offset) for k in keys]
        if self.tok.kind == "ASSIGN":
            return Item(item_keys, self.object(), True)
        if self.tok.kind == "LBRACE":
            return Item(item_keys, self.object_type(), False)
        names = " ".join(k.text for k in keys)
        raise self.pos_err(
            f"key '{names}' expected start of object ('{{') or assignment ('=')", self.tok
        )

    def object(self) -> Node:
        tok = self.scan()
        if tok.kind in _LITERALS:
            return Literal(tok.kind, tok.text, tok.value, tok.offset)
        if tok.kind == "LBRACE":
            return self.object_type()
        if tok.kind == "LBRACK":
            return self.list_type()
        if tok.kind == "EOF":
            raise _Eof()
        where = _line_col(self.text, tok.offset)
        raise self.pos_err(
            f"Unknown token: {{Type:{tok.kind} Pos:{where} Text:{tok.text} JSON:false}}", tok
        )

    def nest(self, tok: Token) -> None:
        if self.depth >= MAX_DEPTH:
            raise self.pos_err("nested too deeply", tok)

    def object_type(self) -> ObjectNode:
        lbrace = self.tok
        self.nest(lbrace)
        self.depth += 1
        try:
            items, err = self.object_list(True)
        finally:
            self.depth -= 1
        if err is not None and self.tok.kind != "RBRACE":
            raise err
        tok = self.scan()
        if tok.kind != "RBRACE":
            raise self.pos_err(f"object expected closing RBRACE got: {tok.kind}", tok)
        return ObjectNode(items, lbrace.offset)

    def list_type(self) -> ListNode:
        lbrack = self.tok
        self.nest(lbrack)
        self.depth += 1
        try:
            return self.list_elems(lbrack)
        finally:
            self.depth -= 1

    def list_elems(self, lbrack: Token) -> ListNode:
        elems: list[Node] = []
        need_comma = False
        while True:
            tok = self.scan()
            if need_comma and tok.kind not in ("COMMA", "RBRACK"):
                raise self.pos_err(
                    f"error parsing list, expected comma or list end, got: {tok.kind}", tok
                )
            if tok.kind in _LITERALS:
                elems.append(Literal(tok.kind, tok.text, tok.value, tok.offset))
                need_comma = True
            elif tok.kind == "COMMA":
                need_comma = False
            elif tok.kind in ("LBRACE", "LBRACK"):
                what = "object" if tok.kind == "LBRACE" else "list"
                try:
                    elems.append(self.object_type() if tok.kind == "LBRACE" else self.list_type())
                except HclError as exc:
                    if exc.style == "plain":
                        raise
                    inner = f"At {_line_col(self.text, exc.offset or 0)}: {exc.msg}"
                    raise self.pos_err(
                        f"error while trying to parse {what} within list: {inner}", tok
                    ) from None
                need_comma = tok.kind == "LBRACE"
            elif tok.kind == "RBRACK":
                return ListNode(elems, lbrack.offset)
            else:
                raise self.pos_err(f"unexpected token while parsing list: {tok.kind}", tok)


def parse_hcl(text: str, *, strict: bool) -> list[Item]:
    """The top-level object list of HCL text (CRLF already normalized to LF, as hcl does);
    HclError when hcl would refuse it. With `strict`, an attribute assigned twice in one
    object is an error (DecodeErrorOnDuplicates)."""
    parser = _Parser(text, strict)
    items, err = parser.object_list(False)
    if err is not None:
        raise err
    return items
