"""ACL rules as Consul 1.x reads them (acl/policy.go, policy_ce.go, policy_merger.go).

`parse_rules` takes HCL or JSON text (JSON when its first non-space character is `{`, as
hcl's lexer decides) and returns a `Policy`; any problem is a `PolicyError` whose message
is Consul's: `Failed to parse ACL rules: ...` for text hcl cannot decode, `Invalid key
policy: &acl.KeyRule{Prefix:"foo", Policy:"nope", EnterpriseRule:acl.EnterpriseRule{}}`
(Go's `%#v` of the rule) for a rule with a bad disposition.

Decoding follows hcl's `decoder.go` over hcl's syntax tree (`_hcl.py`, `_hclparse.py`):
resource and attribute names match case-insensitively (`KEY "a" { POLICY = "read" }` is a
key rule), unknown names are ignored, numbers and booleans decode into strings as written
(so `policy = true` is the invalid policy "true"), and a repeated attribute keeps its last
value - except that Consul refuses rules with a repeated attribute when they are written
(`strict=True`, hcl's DecodeErrorOnDuplicates) and only tolerates them in rules it already
stored (`strict=False`).

Dispositions are case-insensitive where Consul parses them (`AccessLevelFromString`
lower-cases) but case-sensitive where it compares strings (`takesPrecedenceOver` in the
merger, the intentions default of a service rule), and both quirks are kept.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, fields

from agent.acl import _hcl
from agent.acl._hcl import HclError, Item, ListNode, Literal, Node, ObjectNode
from agent.acl._hclparse import parse_hcl

POLICY_DENY = "deny"
POLICY_READ = "read"
POLICY_LIST = "list"
POLICY_WRITE = "write"


class PolicyError(ValueError):
    """ACL rules Consul would refuse; the message is Consul's."""


class AccessLevel(enum.IntEnum):
    """Consul's AccessLevel; a rule grants what its level and every lower one grant,
    except that deny grants nothing (see `authorizer.enforce`)."""

    UNKNOWN = 0
    DENY = 1
    READ = 2
    LIST = 3
    WRITE = 4

    def __str__(self) -> str:
        return "unknown" if self is AccessLevel.UNKNOWN else self.name.lower()

    @classmethod
    def from_string(cls, level: str) -> AccessLevel:
        """AccessLevelFromString: case-insensitive; PolicyError for anything else."""
        try:
            return _LEVELS[level.lower()]
        except KeyError:
            raise PolicyError(f"{_hcl.go_quote(level)} is not a valid access level") from None


_LEVELS = {
    POLICY_DENY: AccessLevel.DENY,
    POLICY_READ: AccessLevel.READ,
    POLICY_LIST: AccessLevel.LIST,
    POLICY_WRITE: AccessLevel.WRITE,
}


@dataclass(frozen=True)
class Rule:
    """One labelled rule: `<resource> "<name>" { policy = "..." }`.

    `intentions` is only read for service rules (`intentions = "write"`); empty means
    "derived from policy" (read for a read or write service rule, deny otherwise).
    """

    name: str
    policy: str
    intentions: str = ""


@dataclass(frozen=True, repr=False)
class Policy:
    """Consul's PolicyRules: the exact and prefix rules of each resource, and the
    unlabelled dispositions (empty string: no rule)."""

    acl: str = ""
    agents: tuple[Rule, ...] = ()
    agent_prefixes: tuple[Rule, ...] = ()
    keys: tuple[Rule, ...] = ()
    key_prefixes: tuple[Rule, ...] = ()
    nodes: tuple[Rule, ...] = ()
    node_prefixes: tuple[Rule, ...] = ()
    services: tuple[Rule, ...] = ()
    service_prefixes: tuple[Rule, ...] = ()
    sessions: tuple[Rule, ...] = ()
    session_prefixes: tuple[Rule, ...] = ()
    events: tuple[Rule, ...] = ()
    event_prefixes: tuple[Rule, ...] = ()
    prepared_queries: tuple[Rule, ...] = ()
    prepared_query_prefixes: tuple[Rule, ...] = ()
    keyring: str = ""
    operator: str = ""
    mesh: str = ""
    peering: str = ""

    def is_empty(self) -> bool:
        return all(not getattr(self, f.name) for f in fields(self))

    def __repr__(self) -> str:
        parts = [
            f"{f.name}={getattr(self, f.name)!r}" for f in fields(self) if getattr(self, f.name)
        ]
        return f"Policy({', '.join(parts)})"


# The Go type of each kind of rule, its label field, and whether it embeds EnterpriseRule:
# what `%#v` prints in "Invalid ... policy" and what hcl names in decoding errors.
_KINDS: dict[str, tuple[str, str, bool]] = {
    "agent": ("AgentRule", "Node", False),
    "key": ("KeyRule", "Prefix", True),
    "node": ("NodeRule", "Name", True),
    "service": ("ServiceRule", "Name", True),
    "session": ("SessionRule", "Node", False),
    "event": ("EventRule", "Event", False),
    "query": ("PreparedQueryRule", "Prefix", False),
}

# PolicyRules' fields in struct order: (hcl name, Policy attribute, kind or None for a
# plain disposition). Decoding and validation both go in this order, so the first error
# reported is the one Consul reports.
_FIELDS: tuple[tuple[str, str, str | None], ...] = (
    ("acl", "acl", None),
    ("agent", "agents", "agent"),
    ("agent_prefix", "agent_prefixes", "agent"),
    ("key", "keys", "key"),
    ("key_prefix", "key_prefixes", "key"),
    ("node", "nodes", "node"),
    ("node_prefix", "node_prefixes", "node"),
    ("service", "services", "service"),
    ("service_prefix", "service_prefixes", "service"),
    ("session", "sessions", "session"),
    ("session_prefix", "session_prefixes", "session"),
    ("event", "events", "event"),
    ("event_prefix", "event_prefixes", "event"),
    ("query", "prepared_queries", "query"),
    ("query_prefix", "prepared_query_prefixes", "query"),
    ("keyring", "keyring", None),
    ("operator", "operator", None),
    ("mesh", "mesh", None),
    ("peering", "peering", None),
)

# Consul 1.4-1.10's LegacyPolicy (parseLegacy): labelled rules only in their exact-match
# spelling, each read as a prefix rule; no acl, mesh or peering.
_LEGACY_FIELDS = tuple(
    f
    for f in _FIELDS
    if f[0]
    in ("agent", "key", "node", "service", "session", "event", "query", "keyring", "operator")
)
_LEGACY_TARGET = {
    "agents": "agent_prefixes",
    "keys": "key_prefixes",
    "nodes": "node_prefixes",
    "services": "service_prefixes",
    "sessions": "session_prefixes",
    "events": "event_prefixes",
    "prepared_queries": "prepared_query_prefixes",
}


def parse_rules(text: str, *, strict: bool = True, legacy: bool = False) -> Policy:
    """Consul's NewPolicyFromSource: the Policy of ACL rules in HCL or JSON.

    strict: refuse an attribute set twice in one block (Consul's behaviour for rules
    it is given; False is its tolerance for rules read back from its own state).
    legacy: read the rules as Consul 1.4-1.10 read legacy (0.x) tokens' rules: `key "foo"`
    is a prefix rule, and only agent, key, node, service, session, event, query, keyring
    and operator are known.
    """
    if text == "":
        return Policy()  # Consul's hot path for empty rules
    is_json = text.lstrip().startswith("{")  # hcl's lexMode
    if not is_json:
        text = text.replace("\r\n", "\n")  # hcl's parser normalizes line endings first
    try:
        items = _hcl.parse_json(text) if is_json else parse_hcl(text, strict=strict)
        values = _decode(items, _LEGACY_FIELDS if legacy else _FIELDS)
    except HclError as exc:
        raise PolicyError(f"Failed to parse ACL rules: {exc.render(text)}") from None
    except ValueError as exc:  # json.JSONDecodeError, or a NaN/Infinity constant
        raise PolicyError(f"Failed to parse ACL rules: {exc}") from None
    policy = Policy(**values)  # type: ignore[arg-type]
    validate(policy)
    if legacy:
        moved = {_LEGACY_TARGET[k]: v for k, v in values.items() if k in _LEGACY_TARGET}
        policy = Policy(keyring=policy.keyring, operator=policy.operator, **moved)  # type: ignore[arg-type]
    return policy


# --- decoding (hcl decoder.go over the syntax tree) ---------------------------------------


def _filter(items: list[Item], name: str) -> tuple[list[Item], list[Item]]:
    """ObjectList.Filter(name): (Children(), Elem()) - items whose first key is `name`
    (case-insensitively) with that key stripped, those with keys left and those without."""
    children: list[Item] = []
    elems: list[Item] = []
    for item in items:
        if item.keys and item.keys[0].value.lower() == name:
            stripped = Item(item.keys[1:], item.value, item.assign)
            (children if stripped.keys else elems).append(stripped)
    return children, elems


def _go_type(node: Node | list[Item]) -> str:
    if isinstance(node, list | ObjectNode):
        return "*ast.ObjectList"
    return "*ast.ListType" if isinstance(node, ListNode) else "*ast.LiteralType"


def _pos(node: Node | list[Item]) -> int | None:
    if isinstance(node, list):
        return node[0].pos() if node else None
    if isinstance(node, ObjectNode) and node.items:
        return node.items[0].pos()  # hcl decodes an object value as its item list
    return node.offset


def _decode_string(name: str, node: Node | list[Item]) -> str:
    if isinstance(node, Literal):
        if node.kind in ("NUMBER", "FLOAT", "BOOL"):
            return node.text
        if node.kind in ("STRING", "HEREDOC"):
            return node.value
    raise HclError(f"{name}: unknown type for string {_go_type(node)}", _pos(node))


def _decode(items: list[Item], spec: tuple[tuple[str, str, str | None], ...]) -> dict[str, object]:
    out: dict[str, object] = {}
    for hcl_name, attr, kind in spec:
        children, elems = _filter(items, hcl_name)
        name = f"root.{hcl_name}"
        if kind is None:
            value = ""
            if children:
                value = _decode_string(name, children)
            for m in elems:
                value = _decode_string(name, m.value)
            out[attr] = value
            continue
        rules: list[Rule] = []
        if children:
            rules.extend(_decode_slice(name, children, kind))
        for m in elems:
            value_node = m.value
            if isinstance(value_node, Literal):
                raise HclError("unknown slice type: *ast.LiteralType", value_node.offset)
            elems_of = value_node.items if isinstance(value_node, ObjectNode) else value_node.elems
            rules.extend(_decode_slice(name, elems_of, kind))
        out[attr] = tuple(rules)
    return out


def _decode_slice(name: str, elems: list[Item] | list[Node], kind: str) -> list[Rule]:
    rules = []
    for i, elem in enumerate(elems):
        if isinstance(elem, Item) and len(elem.keys) == 2:
            # expandObject: `key "a" "b" {...}` decodes as `key "a" { "b" {...} }`
            elem = Item(
                elem.keys[:1],
                ObjectNode([Item(elem.keys[1:], elem.value, elem.assign)], None),
                False,
            )
        rules.append(_decode_rule(f"{name}[{i}]", elem, kind))
    return rules


def _decode_rule(name: str, elem: Item | Node, kind: str) -> Rule:
    """decodeStruct into one rule: the label is the item's first key, then the fields."""
    item: Item | None
    if isinstance(elem, Item):
        item, node = elem, elem.value
    else:
        item, node = None, elem
    if isinstance(node, ObjectNode):
        body = node.items
    elif isinstance(node, Literal) and item is not None:
        body = [item]  # hcl: "the object itself is a literal"
    else:
        raise HclError(f"{name}: not an object type for struct ({_go_type(node)})", _pos(node))
    label_field = _KINDS[kind][1]
    if item is None:
        raise HclError(f"{name}: {label_field} asked for 'key', impossible", _pos(node))
    label = item.keys[0].value if item.keys else ""
    values = {"policy": "", "intentions": ""}
    for attr in ("policy", "intentions") if kind == "service" else ("policy",):
        children, elems = _filter(body, attr)
        field_name = f"{name}.{attr.capitalize()}"
        if children:
            _decode_string(field_name, children)
        for m in elems:
            values[attr] = _decode_string(field_name, m.value)
    return Rule(label, values["policy"], values["intentions"])


# --- validation (PolicyRules.Validate) ----------------------------------------------------


def is_policy_valid(policy: str, allow_list: bool) -> bool:
    level = _LEVELS.get(policy.lower())
    return level is not None and (allow_list or level is not AccessLevel.LIST)


def go_repr(kind: str, rule: Rule) -> str:
    """Go's `%#v` of the *acl.XRule for `rule`, as Consul's messages print it."""
    type_name, label, enterprise = _KINDS[kind]
    q = _hcl.go_quote
    parts = [f"{label}:{q(rule.name)}", f"Policy:{q(rule.policy)}"]
    if kind == "service":
        parts.append(f"Intentions:{q(rule.intentions)}")
    if enterprise:
        parts.append("EnterpriseRule:acl.EnterpriseRule{}")
    return f"&acl.{type_name}{{{', '.join(parts)}}}"


def validate(policy: Policy) -> None:
    """PolicyRules.Validate: PolicyError with Consul's message for the first bad rule."""
    for hcl_name, attr, kind in _FIELDS:
        value = getattr(policy, attr)
        if kind is None:
            if value != "" and not is_policy_valid(value, False):
                raise PolicyError(f"Invalid {hcl_name} policy: {_hcl.go_quote(value)}")
            continue
        for rule in value:
            if not is_policy_valid(rule.policy, kind == "key"):
                raise PolicyError(f"Invalid {hcl_name} policy: {go_repr(kind, rule)}")
            if (
                kind == "service"
                and rule.intentions != ""
                and not is_policy_valid(rule.intentions, False)
            ):
                raise PolicyError(f"Invalid {hcl_name} intentions policy: {go_repr(kind, rule)}")


# --- merging (policy_merger.go) -----------------------------------------------------------


def takes_precedence_over(a: str, b: str) -> bool:
    """takesPrecedenceOver: deny > write > list > read > anything else (exact strings)."""
    for level in (POLICY_DENY, POLICY_WRITE, POLICY_LIST, POLICY_READ):
        if a == level:
            return True
        if b == level:
            return False
    return False


def merge_policies(policies: Iterable[Policy]) -> Policy:
    """MergePolicies: one Policy holding, per resource and name, the rule that takes
    precedence among all of them (deny over write over list over read); for services the
    policy and the intentions are merged separately. Consul merges a token's policies,
    roles and identities this way before compiling the authorizer, and merges even a
    single policy (so `key "a"` written twice with read and deny is deny)."""
    tops = {attr: "" for _, attr, kind in _FIELDS if kind is None}
    labelled: dict[str, dict[str, Rule]] = {attr: {} for _, attr, kind in _FIELDS if kind}
    for policy in policies:
        for attr in tops:
            value = getattr(policy, attr)
            if takes_precedence_over(value, tops[attr]):
                tops[attr] = value
        for _, attr, kind in _FIELDS:
            if kind is None:
                continue
            merged = labelled[attr]
            for rule in getattr(policy, attr):
                existing = merged.get(rule.name)
                if existing is None:
                    merged[rule.name] = rule
                elif kind == "service":
                    pol = (
                        rule.policy
                        if takes_precedence_over(rule.policy, existing.policy)
                        else existing.policy
                    )
                    intent = existing.intentions
                    if takes_precedence_over(rule.intentions, existing.intentions):
                        intent = rule.intentions
                    merged[rule.name] = Rule(rule.name, pol, intent)
                elif takes_precedence_over(rule.policy, existing.policy):
                    merged[rule.name] = rule
    rules = {attr: tuple(m.values()) for attr, m in labelled.items()}
    return Policy(**tops, **rules)  # type: ignore[arg-type]
