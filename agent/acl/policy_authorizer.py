"""Consul's policyAuthorizer (acl/policy_authorizer.go): a token's merged policies compiled
into one rule tree per resource.

Each tree maps a segment (node name, key, service name, ...) to an exact rule and a prefix
rule, as go-radix leaves do in Consul. A lookup takes the exact rule of the very segment,
else the prefix rule with the longest segment the name starts with, else nothing (DEFAULT).
Service rules also fill the intentions tree: `intentions` when written, else read for a
read or write service rule and deny for a deny one.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator

from agent.acl.authorizer import ALLOW, DEFAULT, DENY, Decision, enforce_level
from agent.acl.policy import POLICY_READ, POLICY_WRITE, AccessLevel, Policy, Rule, merge_policies

Leaf = tuple[AccessLevel | None, AccessLevel | None]  # (exact rule, prefix rule) of a segment


class RuleTree:
    """The radix tree of one resource: per segment an exact and a prefix rule, with the
    walks policy_authorizer.go makes over go-radix (WalkPath, WalkPrefix, Walk)."""

    def __init__(self) -> None:
        self._exact: dict[str, AccessLevel] = {}
        self._prefix: dict[str, AccessLevel] = {}
        self._index: tuple[list[int], list[str]] | None = None

    def insert(self, segment: str, level: AccessLevel, *, prefix: bool) -> None:
        """insertPolicyIntoRadix: set the exact or the prefix rule of `segment`."""
        (self._prefix if prefix else self._exact)[segment] = level
        self._index = None

    def _indexes(self) -> tuple[list[int], list[str]]:
        """(distinct lengths of prefix rules, longest first; every segment, sorted)."""
        if self._index is None:
            lengths = sorted({len(p) for p in self._prefix}, reverse=True)
            self._index = (lengths, sorted(self._exact.keys() | self._prefix.keys()))
        return self._index

    def _leaf(self, segment: str) -> Leaf:
        return self._exact.get(segment), self._prefix.get(segment)

    def longest_prefix(self, segment: str) -> AccessLevel | None:
        """The prefix rule with the longest segment that `segment` starts with."""
        for length in self._indexes()[0]:
            if length <= len(segment):
                level = self._prefix.get(segment[:length])
                if level is not None:
                    return level
        return None

    def get(self, segment: str) -> AccessLevel | None:
        """getPolicy: the exact rule of `segment`, else its longest prefix rule."""
        exact = self._exact.get(segment)
        return exact if exact is not None else self.longest_prefix(segment)

    def under(self, prefix: str) -> Iterator[Leaf]:
        """WalkPrefix: the leaves of every segment that starts with `prefix`."""
        segments = self._indexes()[1]
        i = bisect.bisect_left(segments, prefix)
        while i < len(segments) and segments[i].startswith(prefix):
            yield self._leaf(segments[i])
            i += 1

    def root(self) -> Leaf | None:
        """tree.Get(""): the leaf of the empty segment, if any rule has it."""
        return self._leaf("") if "" in self._exact or "" in self._prefix else None

    def any_allowed(self, required: AccessLevel) -> Decision:
        """anyAllowed: ALLOW if any rule allows; else DENY if the "" prefix rule denies."""
        decision = DEFAULT
        root = self.root()
        if root is not None and root[1] is not None:
            decision = enforce_level(root[1], required)
            if decision is ALLOW:
                return ALLOW
        for exact, prefix in self.under(""):
            d = enforce_level(prefix, required) if prefix is not None else DEFAULT
            if d is not ALLOW and exact is not None:
                d = enforce_level(exact, required)
            if d is ALLOW:
                return ALLOW
        return decision

    def all_allowed(self, required: AccessLevel) -> Decision:
        """allAllowed: DENY if any rule denies; else what the "" prefix rule decides."""
        decision = DEFAULT
        root = self.root()
        if root is not None and root[1] is not None:
            decision = enforce_level(root[1], required)
            if decision is DENY:
                return DENY
        for exact, prefix in self.under(""):
            d = enforce_level(prefix, required) if prefix is not None else DEFAULT
            if d is not DENY and exact is not None:
                exact_d = enforce_level(exact, required)
                d = d if exact_d is DEFAULT else exact_d
            if d is DENY:
                return DENY
        return decision


def _check(tree: RuleTree, segment: str, required: AccessLevel) -> Decision:
    level = tree.get(segment)
    return DEFAULT if level is None else enforce_level(level, required)


def _single(level: AccessLevel | None, required: AccessLevel) -> Decision:
    return DEFAULT if level is None else enforce_level(level, required)


def _intentions_of(rule: Rule) -> str:
    """A service rule's intentions: as written, else read for a read or write rule (an
    exact, case-sensitive comparison in Consul) and deny for any other."""
    if rule.intentions:
        return rule.intentions
    return POLICY_READ if rule.policy in (POLICY_READ, POLICY_WRITE) else "deny"


class PolicyAuthorizer:
    """Consul's policyAuthorizer over the merge of `policies` (newPolicyAuthorizer).

    Answers DEFAULT where no rule applies; put it in `chain` before a default authorizer.
    PolicyError ("\\"x\\" is not a valid access level") for a rule that was never validated.
    """

    def __init__(self, policies: Policy | Iterable[Policy]) -> None:
        merged = merge_policies([policies] if isinstance(policies, Policy) else policies)
        self.policy = merged
        self.agents = RuleTree()
        self.intentions = RuleTree()
        self.keys = RuleTree()
        self.nodes = RuleTree()
        self.services = RuleTree()
        self.sessions = RuleTree()
        self.events = RuleTree()
        self.queries = RuleTree()
        loads: tuple[tuple[RuleTree, tuple[Rule, ...], bool], ...] = (
            (self.agents, merged.agents, False),
            (self.agents, merged.agent_prefixes, True),
            (self.keys, merged.keys, False),
            (self.keys, merged.key_prefixes, True),
            (self.nodes, merged.nodes, False),
            (self.nodes, merged.node_prefixes, True),
            (self.services, merged.services, False),
            (self.services, merged.service_prefixes, True),
            (self.sessions, merged.sessions, False),
            (self.sessions, merged.session_prefixes, True),
            (self.events, merged.events, False),
            (self.events, merged.event_prefixes, True),
            (self.queries, merged.prepared_queries, False),
            (self.queries, merged.prepared_query_prefixes, True),
        )
        for tree, rules, prefix in loads:
            for rule in rules:
                tree.insert(rule.name, AccessLevel.from_string(rule.policy), prefix=prefix)
                if tree is self.services:
                    level = AccessLevel.from_string(_intentions_of(rule))
                    self.intentions.insert(rule.name, level, prefix=prefix)
        self.acl = _top(merged.acl)
        self.keyring = _top(merged.keyring)
        self.operator = _top(merged.operator)
        self.mesh = _top(merged.mesh)
        self.peering = _top(merged.peering)

    def acl_read(self) -> Decision:
        return _single(self.acl, AccessLevel.READ)

    def acl_write(self) -> Decision:
        return _single(self.acl, AccessLevel.WRITE)

    def agent_read(self, node: str) -> Decision:
        return _check(self.agents, node, AccessLevel.READ)

    def agent_write(self, node: str) -> Decision:
        return _check(self.agents, node, AccessLevel.WRITE)

    def event_read(self, name: str) -> Decision:
        return _check(self.events, name, AccessLevel.READ)

    def event_write(self, name: str) -> Decision:
        return _check(self.events, name, AccessLevel.WRITE)

    def intention_default_allow(self) -> Decision:
        return DEFAULT  # never decided by a policy

    def intention_read(self, name: str) -> Decision:
        if name == "*":
            return self.intentions.any_allowed(AccessLevel.READ)
        return _check(self.intentions, name, AccessLevel.READ)

    def intention_write(self, name: str) -> Decision:
        if name == "*":
            return self.intentions.all_allowed(AccessLevel.WRITE)
        return _check(self.intentions, name, AccessLevel.WRITE)

    def key_list(self, prefix: str) -> Decision:
        return _check(self.keys, prefix, AccessLevel.LIST)

    def key_read(self, key: str) -> Decision:
        return _check(self.keys, key, AccessLevel.READ)

    def key_write(self, key: str) -> Decision:
        return _check(self.keys, key, AccessLevel.WRITE)

    def key_write_prefix(self, prefix: str) -> Decision:
        """KeyWritePrefix (recursive delete): DENY if the longest prefix rule covering
        `prefix` does not grant write, or any rule (exact or prefix) on a segment under
        `prefix` does not; else ALLOW if such a prefix rule grants write; else DEFAULT."""
        base = self.keys.longest_prefix(prefix)
        if base is not None and base is not AccessLevel.WRITE:
            return DENY
        for exact, pre in self.keys.under(prefix):
            if (pre is not None and pre is not AccessLevel.WRITE) or (
                exact is not None and exact is not AccessLevel.WRITE
            ):
                return DENY
        return DEFAULT if base is None else ALLOW

    def keyring_read(self) -> Decision:
        return _single(self.keyring, AccessLevel.READ)

    def keyring_write(self) -> Decision:
        return _single(self.keyring, AccessLevel.WRITE)

    def mesh_read(self) -> Decision:
        return (
            self.operator_read()
            if self.mesh is None
            else enforce_level(self.mesh, AccessLevel.READ)
        )

    def mesh_write(self) -> Decision:
        return (
            self.operator_write()
            if self.mesh is None
            else enforce_level(self.mesh, AccessLevel.WRITE)
        )

    def peering_read(self) -> Decision:
        if self.peering is None:
            return self.operator_read()
        return enforce_level(self.peering, AccessLevel.READ)

    def peering_write(self) -> Decision:
        if self.peering is None:
            return self.operator_write()
        return enforce_level(self.peering, AccessLevel.WRITE)

    def node_read(self, name: str) -> Decision:
        return _check(self.nodes, name, AccessLevel.READ)

    def node_read_all(self) -> Decision:
        return self.nodes.all_allowed(AccessLevel.READ)

    def node_write(self, name: str) -> Decision:
        return _check(self.nodes, name, AccessLevel.WRITE)

    def operator_read(self) -> Decision:
        return _single(self.operator, AccessLevel.READ)

    def operator_write(self) -> Decision:
        return _single(self.operator, AccessLevel.WRITE)

    def query_read(self, name: str) -> Decision:
        return _check(self.queries, name, AccessLevel.READ)

    def query_write(self, name: str) -> Decision:
        return _check(self.queries, name, AccessLevel.WRITE)

    def service_read(self, name: str) -> Decision:
        return _check(self.services, name, AccessLevel.READ)

    def service_read_all(self) -> Decision:
        return self.services.all_allowed(AccessLevel.READ)

    def service_write(self, name: str) -> Decision:
        return _check(self.services, name, AccessLevel.WRITE)

    def service_write_any(self) -> Decision:
        return self.services.any_allowed(AccessLevel.WRITE)

    def session_read(self, node: str) -> Decision:
        return _check(self.sessions, node, AccessLevel.READ)

    def session_write(self, node: str) -> Decision:
        return _check(self.sessions, node, AccessLevel.WRITE)

    def snapshot(self) -> Decision:
        return _single(self.acl, AccessLevel.WRITE)


def _top(value: str) -> AccessLevel | None:
    return AccessLevel.from_string(value) if value else None
