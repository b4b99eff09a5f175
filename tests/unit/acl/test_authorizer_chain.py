"""Merged policies, chains of authorizers, the any/all walks over a rule tree, acl.Enforce and
permission-denied messages (acl/policy_authorizer_test.go TestAnyAllowed, TestAllAllowed,
"Intention Wildcards"; acl/acl_test.go AgentNested*, TestACL_ReadAll; acl/errors.go)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.acl import (
    ANONYMOUS_TOKEN_ID,
    AccessLevel,
    Authorizer,
    ChainedAuthorizer,
    Decision,
    PermissionDeniedError,
    Policy,
    PolicyAuthorizer,
    PolicyError,
    Rule,
    RuleTree,
    allow_all,
    chain,
    deny_all,
    enforce,
    parse_rules,
    permission_denied,
)

A, D, X = Decision.ALLOW, Decision.DENY, Decision.DEFAULT
R, W, L, N = AccessLevel.READ, AccessLevel.WRITE, AccessLevel.LIST, AccessLevel.DENY


def authz_of(*rules: str) -> PolicyAuthorizer:
    return PolicyAuthorizer([parse_rules(r) for r in rules])


# --- several policies of one token (merge_policies, then the tree) -----------------------


@pytest.mark.parametrize(
    "rules,key,read,write",
    [
        # the same exact rule in two policies: deny wins over write
        (['key "a" { policy = "write" }', 'key "a" { policy = "deny" }'], "a", D, D),
        # write wins over read for the same rule
        (['key "a" { policy = "read" }', 'key "a" { policy = "write" }'], "a", A, A),
        # an exact rule beats a prefix rule whatever policy each comes from
        (['key_prefix "" { policy = "deny" }', 'key "a" { policy = "write" }'], "a", A, A),
        (['key_prefix "" { policy = "write" }', 'key "a" { policy = "deny" }'], "a", D, D),
        (['key_prefix "" { policy = "write" }', 'key "a" { policy = "deny" }'], "ab", A, A),
        # the longest prefix wins, from any policy
        (
            ['key_prefix "a/" { policy = "deny" }', 'key_prefix "a/b/" { policy = "write" }'],
            "a/b/c",
            A,
            A,
        ),
        (
            ['key_prefix "a/b/" { policy = "deny" }', 'key_prefix "a/" { policy = "write" }'],
            "a/b/c",
            D,
            D,
        ),
        (
            ['key_prefix "a/b/" { policy = "deny" }', 'key_prefix "a/" { policy = "write" }'],
            "a/c",
            A,
            A,
        ),
        # list and read merge to list
        (['key_prefix "a" { policy = "read" }', 'key_prefix "a" { policy = "list" }'], "a", A, D),
    ],
)
def test_rules_of_several_policies(
    rules: list[str], key: str, read: Decision, write: Decision
) -> None:
    authz = authz_of(*rules)
    assert (authz.key_read(key), authz.key_write(key)) == (read, write)
    reverse = authz_of(*reversed(rules))  # merging does not depend on the order
    assert (reverse.key_read(key), reverse.key_write(key)) == (read, write)


def test_service_intentions_merged_apart_from_policy() -> None:
    authz = authz_of(
        'service "web" { policy = "read" intentions = "write" }',
        'service "web" { policy = "write" }',
    )
    assert (authz.service_write("web"), authz.intention_write("web")) == (A, A)


@pytest.mark.parametrize(
    "rules,intention_read,intention_write",
    [
        ('service "a" { policy = "write" }', A, D),  # derived: read
        ('service "a" { policy = "read" }', A, D),
        ('service "a" { policy = "deny" }', D, D),
        ('service "a" { policy = "deny" intentions = "write" }', A, A),
        ('service "a" { policy = "read" intentions = "deny" }', D, D),
        # Consul compares "read"/"write" exactly when deriving, so WRITE derives deny
        ('service "a" { policy = "WRITE" }', D, D),
    ],
)
def test_intentions_derived_from_the_service_rule(
    rules: str, intention_read: Decision, intention_write: Decision
) -> None:
    authz = authz_of(rules)
    assert (authz.intention_read("a"), authz.intention_write("a")) == (
        intention_read,
        intention_write,
    )


def test_upper_case_dispositions() -> None:
    # labelled rules are parsed case-insensitively; an unlabelled one in upper case never
    # survives the merge (takesPrecedenceOver compares exact strings), so it decides nothing
    authz = authz_of('key "a" { policy = "DENY" }\nacl = "WRITE"\noperator = "read"')
    assert authz.key_read("a") is D
    assert (authz.acl_read(), authz.acl_write(), authz.operator_read()) == (X, X, A)


def test_invalid_rule_built_directly_is_refused() -> None:
    with pytest.raises(PolicyError, match=r'^"nope" is not a valid access level$'):
        PolicyAuthorizer(Policy(keys=(Rule("a", "nope"),)))


# --- chains: acl_test.go AgentNestedDefaultDeny/Allow (a child policy chained on a parent) -

ROOT = """
agent "root-nope" { policy = "deny" }
agent "root-ro" { policy = "read" }
agent "root-rw" { policy = "write" }
agent "override" { policy = "deny" }
agent_prefix "root-nope" { policy = "deny" }
agent_prefix "root-ro" { policy = "read" }
agent_prefix "root-rw" { policy = "write" }
agent_prefix "override" { policy = "deny" }
"""
CHILD = ROOT.replace("root-", "child-").replace(
    '"override" { policy = "deny" }', '"override" { policy = "write" }'
)


@pytest.mark.parametrize("default", ["deny", "allow"])
@pytest.mark.parametrize(
    "node,read,write",
    [
        ("nope", None, None),  # no rule: the default policy
        ("root-nope", D, D),
        ("root-ro", A, D),
        ("root-rw", A, A),
        ("root-nope-prefix", D, D),
        ("root-ro-prefix", A, D),
        ("root-rw-prefix", A, A),
        ("child-nope", D, D),
        ("child-ro", A, D),
        ("child-rw", A, A),
        ("child-nope-prefix", D, D),
        ("child-ro-prefix", A, D),
        ("child-rw-prefix", A, A),
        ("override", A, A),  # the child's rule is asked first
    ],
)
def test_nested_chain(
    default: str, node: str, read: Decision | None, write: Decision | None
) -> None:
    base: Authorizer = deny_all() if default == "deny" else allow_all()
    parent = chain(PolicyAuthorizer(parse_rules(ROOT)), base)
    authz = chain(PolicyAuthorizer(parse_rules(CHILD)), parent)
    fallback = D if default == "deny" else A
    assert authz.agent_read(node) is (read or fallback)
    assert authz.agent_write(node) is (write or fallback)


def test_chain_takes_the_first_decision() -> None:
    class Fixed:
        def __init__(self, decision: Decision) -> None:
            self.decision = decision

        def __getattr__(self, name: str) -> object:
            return lambda *args: self.decision

    chained = ChainedAuthorizer([Fixed(X), Fixed(X), Fixed(A), Fixed(D)])  # type: ignore[list-item]
    assert chained.key_read("k") is A and chained.snapshot() is A
    assert ChainedAuthorizer([Fixed(X), Fixed(D), Fixed(A)]).node_write("n") is D  # type: ignore[list-item]
    assert ChainedAuthorizer([]).operator_read() is D


# --- policy_authorizer_test.go TestAnyAllowed / TestAllAllowed -----------------------------

Leaf = tuple[AccessLevel | None, AccessLevel | None]  # (exact, prefix)


def tree_of(leaves: dict[str, Leaf]) -> RuleTree:
    tree = RuleTree()
    for segment, (exact, prefix) in leaves.items():
        if exact is not None:
            tree.insert(segment, exact, prefix=False)
        if prefix is not None:
            tree.insert(segment, prefix, prefix=True)
    return tree


# (leaves, any_allowed (read, list, write), all_allowed (read, list, write))
WALKS: dict[str, tuple[dict[str, Leaf], tuple[Decision, ...], tuple[Decision, ...]]] = {
    "no-rules-default": ({}, (X, X, X), (X, X, X)),
    "prefix-write-allowed": ({"": (None, W)}, (A, A, A), (A, A, A)),
    "prefix-write-allowed-other-deny": ({"": (None, W), "foo": (None, N)}, (A, A, A), (D, D, D)),
    "prefix-list-allowed": ({"": (None, L)}, (A, A, D), (A, A, D)),
    "prefix-read-allowed": ({"": (None, R)}, (A, D, D), (A, D, D)),
    "prefix-deny": ({"": (None, N)}, (D, D, D), (D, D, D)),
    "prefix-deny-other-write-prefix": ({"": (None, N), "foo": (None, W)}, (A, A, A), (D, D, D)),
    "prefix-deny-other-write-exact": ({"": (None, N), "foo": (W, None)}, (A, A, A), (D, D, D)),
    "prefix-deny-other-list-prefix": ({"": (None, N), "foo": (None, L)}, (A, A, D), (D, D, D)),
    "prefix-deny-other-list-exact": ({"": (None, N), "foo": (L, None)}, (A, A, D), (D, D, D)),
    "prefix-deny-other-read-prefix": ({"": (None, N), "foo": (None, R)}, (A, D, D), (D, D, D)),
    "prefix-deny-other-read-exact": ({"": (None, N), "foo": (R, None)}, (A, D, D), (D, D, D)),
    "prefix-deny-other-deny-prefix": ({"": (None, N), "foo": (None, N)}, (D, D, D), (D, D, D)),
    "prefix-deny-other-deny-exact": ({"": (None, N), "foo": (N, None)}, (D, D, D), (D, D, D)),
    "prefix-allow-other-write-prefix": ({"": (None, W), "foo": (None, W)}, (A, A, A), (A, A, A)),
    "prefix-allow-other-write-exact": ({"": (None, W), "foo": (W, None)}, (A, A, A), (A, A, A)),
    "prefix-allow-other-list-prefix": ({"": (None, W), "foo": (None, L)}, (A, A, A), (A, A, D)),
    "prefix-allow-other-list-exact": ({"": (None, W), "foo": (L, None)}, (A, A, A), (A, A, D)),
    "prefix-allow-other-read-prefix": ({"": (None, W), "foo": (None, R)}, (A, A, A), (A, D, D)),
    "prefix-allow-other-read-exact": ({"": (None, W), "foo": (R, None)}, (A, A, A), (A, D, D)),
    "prefix-allow-other-deny-prefix": ({"": (None, W), "foo": (None, N)}, (A, A, A), (D, D, D)),
    "prefix-allow-other-deny-exact": ({"": (None, W), "foo": (N, None)}, (A, A, A), (D, D, D)),
    "exact-only-read": ({"foo": (R, None)}, (A, X, X), (X, D, D)),
}


@pytest.mark.parametrize("name", WALKS)
def test_any_and_all_allowed(name: str) -> None:
    leaves, any_expected, all_expected = WALKS[name]
    tree = tree_of(leaves)
    assert tuple(tree.any_allowed(level) for level in (R, L, W)) == any_expected
    assert tuple(tree.all_allowed(level) for level in (R, L, W)) == all_expected


@pytest.mark.parametrize(
    "rules,read_any,write_all",
    [
        # policy_authorizer_test.go "Intention Wildcards - ..."
        (
            'service "foo" { policy = "write" intentions = "write" }\nservice_prefix "" { policy = "deny" intentions = "deny" }',
            A,
            D,
        ),
        (
            'service "foo" { policy = "write" intentions = "deny" }\nservice_prefix "" { policy = "write" intentions = "write" }',
            A,
            D,
        ),
        (
            'service "foo" { policy = "write" intentions = "write" }\nservice_prefix "" { policy = "write" intentions = "write" }',
            A,
            A,
        ),
        ('service "foo" { policy = "write" intentions = "write" }', A, X),
        ('service "foo" { policy = "write" intentions = "deny" }', X, D),
    ],
)
def test_intention_wildcards(rules: str, read_any: Decision, write_all: Decision) -> None:
    authz = authz_of(rules)
    assert (authz.intention_read("*"), authz.intention_write("*")) == (read_any, write_all)


@pytest.mark.parametrize(
    "rules,default_deny",
    [
        # acl_test.go TestACL_ReadAll: under default allow every case is allowed
        ('node "bar" { policy = "read" }', ("node_read_all", D)),
        ('node "bar" { policy = "write" }', ("node_read_all", D)),
        ('node_prefix "" { policy = "read" }', ("node_read_all", A)),
        ('node_prefix "" { policy = "write" }', ("node_read_all", A)),
        ('service "bar" { policy = "read" }', ("service_read_all", D)),
        ('service "bar" { policy = "write" }', ("service_read_all", D)),
        ('service_prefix "" { policy = "read" }', ("service_read_all", A)),
        ('service_prefix "" { policy = "write" }', ("service_read_all", A)),
    ],
)
def test_read_all(rules: str, default_deny: tuple[str, Decision]) -> None:
    method, expected = default_deny
    assert getattr(chain(authz_of(rules), deny_all()), method)() is expected
    assert chain(authz_of(rules), allow_all()).node_read_all() is A


# --- acl.Enforce and the permission-denied messages --------------------------------------


@pytest.mark.parametrize(
    "resource,access,segment,expected",
    [
        ("key", "read", "app/x", A),
        ("key", "WRITE", "app/x", A),
        ("key", "write", "other", D),
        ("key", "list", "app/", A),
        ("key", "write-prefix", "app/", A),
        ("service", "read", "web", A),
        ("service", "write", "web", D),
        ("operator", "read", "", A),
        ("mesh", "read", "", A),
        ("acl", "read", "", D),
    ],
)
def test_enforce(resource: str, access: str, segment: str, expected: Decision) -> None:
    rules = 'key_prefix "app/" { policy = "write" }\nservice_prefix "" { policy = "read" }\noperator = "read"'
    authz = chain(authz_of(rules), deny_all(), enable_key_list_policy=True)
    assert enforce(authz, resource, segment, access) is expected


def test_enforce_errors() -> None:
    with pytest.raises(ValueError, match=r'^Invalid ACL resource requested: "nope"$'):
        enforce(deny_all(), "nope", "", "read")
    with pytest.raises(ValueError, match=r"^Invalid access level for key resource: admin$"):
        enforce(deny_all(), "key", "", "admin")
    with pytest.raises(ValueError, match=r"^Invalid access level for acl resource: list$"):
        enforce(deny_all(), "acl", "", "list")


@pytest.mark.parametrize(
    "err,message",
    [
        (
            permission_denied("a-1", "key", AccessLevel.WRITE, "foo/bar"),
            "Permission denied: token with AccessorID 'a-1' lacks permission 'key:write' on \"foo/bar\"",
        ),
        (
            permission_denied("a-1", "operator", AccessLevel.READ),
            "Permission denied: token with AccessorID 'a-1' lacks permission 'operator:read'",
        ),
        (
            permission_denied(ANONYMOUS_TOKEN_ID, "node", AccessLevel.READ, "n1"),
            "Permission denied: anonymous token lacks permission 'node:read' on \"n1\". The anonymous "
            "token is used implicitly when a request does not specify a token.",
        ),
        (
            PermissionDeniedError("Denied by intention default"),
            "Permission denied: Denied by intention default",
        ),
        (PermissionDeniedError(), "Permission denied"),
    ],
)
def test_permission_denied_messages(err: PermissionDeniedError, message: str) -> None:
    assert str(err) == message


# --- the tree against a brute-force reading of the rules ---------------------------------

SEGMENTS = st.text(alphabet="ab/", max_size=4)
LEVELS = st.sampled_from(["read", "write", "deny", "list"])


def _merge(rules: list[tuple[str, str, bool]]) -> dict[tuple[str, bool], str]:
    order = ["deny", "write", "list", "read"]  # takesPrecedenceOver
    merged: dict[tuple[str, bool], str] = {}
    for name, level, prefix in rules:
        old = merged.get((name, prefix))
        if old is None or order.index(level) < order.index(old):
            merged[(name, prefix)] = level
    return merged


def reference(rules: list[tuple[str, str, bool]], key: str, required: AccessLevel) -> Decision:
    """getPolicy spelled out: the exact rule for the key, else the longest prefix rule."""
    merged = _merge(rules)
    if (key, False) in merged:
        level = merged[(key, False)]
    else:
        matches = [n for (n, p) in merged if p and key.startswith(n)]
        if not matches:
            return X
        level = merged[(max(matches, key=len), True)]
    granted = {"write": (R, L, W), "list": (R, L), "read": (R,), "deny": ()}[level]
    return A if required in granted else D


def reference_write_prefix(rules: list[tuple[str, str, bool]], prefix: str) -> Decision:
    """KeyWritePrefix spelled out: the covering prefix rule and every rule under the prefix
    must grant write; DEFAULT when no prefix rule covers it (and none under it refuses)."""
    merged = _merge(rules)
    covering = [n for (n, p) in merged if p and prefix.startswith(n)]
    if covering and merged[(max(covering, key=len), True)] != "write":
        return D
    if any(level != "write" for (name, _), level in merged.items() if name.startswith(prefix)):
        return D
    return A if covering else X


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(SEGMENTS, LEVELS, st.booleans()), max_size=8),
    st.lists(SEGMENTS, min_size=1, max_size=6),
)
def test_key_decisions_match_a_brute_force_reading(
    rules: list[tuple[str, str, bool]], keys: list[str]
) -> None:
    text = "\n".join(
        f'{"key_prefix" if p else "key"} "{n}" {{ policy = "{lvl}" }}' for n, lvl, p in rules
    )
    authz = PolicyAuthorizer(parse_rules(text))
    for key in keys:
        assert authz.key_read(key) is reference(rules, key, R)
        assert authz.key_list(key) is reference(rules, key, L)
        assert authz.key_write(key) is reference(rules, key, W)
        assert authz.key_write_prefix(key) is reference_write_prefix(rules, key)
