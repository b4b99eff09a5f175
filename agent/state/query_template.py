"""Prepared query templates (Consul's agent/consul/prepared_query): a query whose
Template.Type is "name_prefix_match" answers every name it is a prefix of, its Service block
rendered for the name asked.

Every string of the Service block (the service name, tags, Near, the failover datacenters,
the meta values, ...) is a small HIL text: literal text with `${...}` interpolations (`$${`
is a literal `${`). An interpolation is a variable - `name.full` (the name asked),
`name.prefix` (the template's Name), `name.suffix` (what follows the prefix),
`agent.segment` (the asking agent's network segment, "" outside Consul Enterprise) - or
`match(N)`, the Nth submatch of Template.Regexp on the full name ("" when there is none).
Regexps are RE2 (linear time whatever the pattern), as Go's regexp package is.

`compile_template` checks a template (and test-renders it with its own name, as Consul does)
when it is stored; `render` makes the query a name resolves to. Pure: no I/O, no state.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agent.filter.tree import compile_re2

TEMPLATE_TYPE_NAME_PREFIX_MATCH = "name_prefix_match"

_INT = re.compile(r"-?\d+\Z")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*\Z")


class TemplateError(ValueError):
    """A template that cannot be compiled or rendered; str() is Consul's message."""


@dataclass(frozen=True, slots=True)
class _Var:
    name: str


@dataclass(frozen=True, slots=True)
class _Call:
    func: str
    args: tuple[int | str, ...]


_Part = str | _Var | _Call


def is_template(query: dict[str, Any]) -> bool:
    return bool((query.get("Template") or {}).get("Type"))


def _parse_expr(text: str) -> _Var | _Call:
    expr = text.strip()
    if not expr:
        raise ValueError("empty interpolation")
    if expr.endswith(")") and "(" in expr:
        func, _sep, rest = expr.partition("(")
        func = func.strip()
        if not _IDENT.match(func) or "." in func:
            raise ValueError(f"invalid function name {func!r}")
        inner = rest[:-1].strip()
        args: list[int | str] = []
        for raw in [a.strip() for a in inner.split(",")] if inner else []:
            if _INT.match(raw):
                args.append(int(raw))
            elif len(raw) >= 2 and raw[0] == raw[-1] == '"':
                args.append(raw[1:-1])
            else:
                raise ValueError(f"invalid argument {raw!r} to {func}")
        return _Call(func, tuple(args))
    if not _IDENT.match(expr):
        raise ValueError(f"invalid interpolation {expr!r}")
    return _Var(expr)


def parse_hil(text: str) -> tuple[_Part, ...]:
    """The literal pieces and interpolations of one string; ValueError when malformed."""
    parts: list[_Part] = []
    literal: list[str] = []
    i = 0
    while i < len(text):
        if text.startswith("$${", i):
            literal.append("${")
            i += 3
            continue
        if text.startswith("${", i):
            end = text.find("}", i + 2)
            if end < 0:
                raise ValueError(f"unterminated interpolation at offset {i}")
            if literal:
                parts.append("".join(literal))
                literal = []
            parts.append(_parse_expr(text[i + 2 : end]))
            i = end + 1
            continue
        literal.append(text[i])
        i += 1
    if literal:
        parts.append("".join(literal))
    return tuple(parts)


Visitor = Callable[[str, str], str]


def _walk(value: Any, path: str, visit: Visitor) -> Any:
    """A copy of `value` with each string replaced by visit(path, string); paths are named as
    Consul names them (`.Service`, `.Tags[0]`, `.NodeMeta[key]`, `.Failover.Datacenters[1]`)."""
    if isinstance(value, str):
        return visit(path, value)
    if isinstance(value, list):
        return [_walk(v, f"{path}[{i}]", visit) for i, v in enumerate(value)]
    if isinstance(value, dict):
        if path.endswith("Meta"):  # a map: its keys are data, its values strings
            return {k: _walk(v, f"{path}[{k}]", visit) for k, v in value.items()}
        return {k: _walk(v, f"{path}.{k}", visit) for k, v in value.items()}
    return value


@dataclass(frozen=True, slots=True)
class CompiledTemplate:
    query: dict[str, Any]
    trees: dict[str, tuple[_Part, ...]]
    regex: Any | None  # re2 compiled pattern

    def render(self, name: str, segment: str = "") -> dict[str, Any]:
        """The query `name` resolves to: the Service block's strings interpolated."""
        matches: list[str] = []
        if self.regex is not None:
            found = self.regex.search(name.encode("utf-8", "surrogateescape"))
            if found is not None:
                groups = [found.group(0), *found.groups()]
                matches = [(g or b"").decode("utf-8", "replace") for g in groups]
        prefix = str(self.query.get("Name") or "")
        variables = {
            "name.full": name,
            "name.prefix": prefix,
            "name.suffix": name[len(prefix) :] if name.startswith(prefix) else name,
            "agent.segment": segment,
        }

        def evaluate(path: str, original: str) -> str:
            tree = self.trees.get(path)
            if tree is None:
                return original
            out: list[str] = []
            for part in tree:
                if isinstance(part, str):
                    out.append(part)
                elif isinstance(part, _Var):
                    if part.name not in variables:
                        raise TemplateError(
                            f"Bad evaluation for '{original}' in Service{path}: "
                            f"unknown variable accessed: {part.name}"
                        )
                    out.append(variables[part.name])
                else:
                    out.append(_call(part, matches, original, path))
            return "".join(out)

        rendered = copy.deepcopy(self.query)
        rendered["Service"] = _walk(self.query.get("Service") or {}, "", evaluate)
        if (self.query.get("Template") or {}).get("RemoveEmptyTags"):
            tags = rendered["Service"].get("Tags") or []
            rendered["Service"]["Tags"] = [t for t in tags if t != ""]
        return rendered


def _call(part: _Call, matches: list[str], original: str, path: str) -> str:
    if part.func != "match":
        raise TemplateError(
            f"Bad evaluation for '{original}' in Service{path}: unknown function called: {part.func}"
        )
    if len(part.args) != 1 or not isinstance(part.args[0], int):
        raise TemplateError(
            f"Bad evaluation for '{original}' in Service{path}: "
            f"match: expected one integer argument"
        )
    index = part.args[0]
    return matches[index] if 0 <= index < len(matches) else ""


def compile_template(query: dict[str, Any]) -> CompiledTemplate:
    """Check a template and compile it; TemplateError with Consul's message when it is bad."""
    template = query.get("Template") or {}
    kind = str(template.get("Type") or "")
    if kind != TEMPLATE_TYPE_NAME_PREFIX_MATCH:
        raise TemplateError(f"Bad Template.Type '{kind}'")
    trees: dict[str, tuple[_Part, ...]] = {}

    def parse(path: str, text: str) -> str:
        try:
            trees[path] = parse_hil(text)
        except ValueError as exc:
            raise TemplateError(f"Bad format '{text}' in Service{path}: {exc}") from None
        return text

    _walk(query.get("Service") or {}, "", parse)
    regex = None
    pattern = str(template.get("Regexp") or "")
    if pattern:
        try:
            regex = compile_re2(pattern)
        except ValueError as exc:
            raise TemplateError(f"Bad Regexp: error parsing regexp: {exc}") from None
    compiled = CompiledTemplate(copy.deepcopy(query), trees, regex)
    compiled.render(str(query.get("Name") or ""))  # fails now rather than at lookup time
    return compiled
