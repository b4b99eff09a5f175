"""Enforcement decisions, as Consul 1.x's acl/policy_authorizer.go, static_authorizer.go and
chained_authorizer.go make them: every example of the ACL rules reference
(website/content/docs/security/acl/acl-rules.mdx, acl-policies.mdx) as a table of checks,
and the tables of acl/acl_test.go and acl/policy_authorizer_test.go."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from agent.acl import (
    AccessLevel,
    Authorizer,
    ChainedAuthorizer,
    Decision,
    Policy,
    PolicyAuthorizer,
    allow_all,
    chain,
    deny_all,
    enforce_level,
    manage_all,
    parse_rules,
    root_authorizer,
)
from agent.acl.builtin import GLOBAL_MANAGEMENT_RULES, GLOBAL_READ_ONLY_RULES

A, D, X = Decision.ALLOW, Decision.DENY, Decision.DEFAULT

Check = tuple[str, str, Decision]  # (method, segment ("" for unlabelled checks), decision)


def run(authz: Authorizer, method: str, segment: str) -> Decision:
    fn: Callable[..., Decision] = getattr(authz, method)
    try:
        return fn(segment)
    except TypeError:
        return fn()


def token(rules: str, default: Authorizer, *, key_list_policy: bool = False) -> ChainedAuthorizer:
    return chain(
        PolicyAuthorizer(parse_rules(rules)), default, enable_key_list_policy=key_list_policy
    )


# --- the examples of the ACL rules reference, with both default policies ---------------

DOC_EXAMPLES: dict[str, tuple[str, list[Check], list[Check]]] = {
    # name: (rules, checks under default deny, checks that differ under default allow)
    "agent": (
        'agent "foo" { policy = "write" }\nagent_prefix "" { policy = "read" }\n'
        'agent_prefix "bar" { policy = "deny" }',
        [
            ("agent_read", "foo", A),
            ("agent_write", "foo", A),
            ("agent_read", "foo2", A),  # `agent "foo"` is exact: foo2 falls to the "" prefix
            ("agent_write", "foo2", D),
            ("agent_read", "anything", A),
            ("agent_write", "anything", D),
            ("agent_read", "bar", D),
            ("agent_read", "barn", D),
            ("agent_write", "barn", D),
        ],
        [],
    ),
    "event": (
        'event_prefix "" { policy = "read" }\nevent "deploy" { policy = "write" }',
        [
            ("event_write", "deploy", A),
            ("event_read", "deploy", A),
            ("event_read", "other", A),
            ("event_write", "other", D),
            ("event_write", "deploy-2", D),
        ],
        [],
    ),
    "key": (
        'key_prefix "" { policy = "read" }\nkey "foo" { policy = "write" }\nkey "bar" { policy = "deny" }',
        [
            ("key_read", "foo", A),
            ("key_write", "foo", A),
            ("key_read", "foo/x", A),
            ("key_write", "foo/x", D),
            ("key_read", "bar", D),
            ("key_write", "bar", D),
            ("key_read", "bar/x", A),
            ("key_read", "baz", A),
            ("key_write", "baz", D),
        ],
        [],
    ),
    "node": (
        'node_prefix "" { policy = "read" }\nnode "app" { policy = "write" }\nnode "admin" { policy = "deny" }',
        [
            ("node_read", "app", A),
            ("node_write", "app", A),
            ("node_read", "admin", D),
            ("node_write", "admin", D),
            ("node_read", "web", A),
            ("node_write", "web", D),
            ("node_read_all", "", D),  # `node "admin"` denies read on one node
        ],
        [],
    ),
    "query": (
        'query_prefix "" { policy = "read" }\nquery "foo" { policy = "write" }',
        [
            ("query_read", "foo", A),
            ("query_write", "foo", A),
            ("query_read", "bar", A),
            ("query_write", "bar", D),
            ("query_write", "foobar", D),
        ],
        [],
    ),
    "service": (
        'service_prefix "" { policy = "read" }\nservice "app" { policy = "write" }\n'
        'service "admin" { policy = "deny" }',
        [
            ("service_read", "app", A),
            ("service_write", "app", A),
            ("service_read", "admin", D),
            ("service_write", "admin", D),
            ("service_read", "web", A),
            ("service_write", "web", D),
            ("service_read_all", "", D),
            ("service_write_any", "", A),
            # intentions follow the service rules: read for read and write, deny for deny
            ("intention_read", "app", A),
            ("intention_write", "app", D),
            ("intention_read", "web", A),
            ("intention_read", "admin", D),
        ],
        [],
    ),
    "service intentions": (
        'service "app" { policy = "write"\nintentions = "read" }',
        [
            ("service_write", "app", A),
            ("intention_read", "app", A),
            ("intention_write", "app", D),
            ("service_read", "other", D),
            ("intention_read", "other", D),
        ],
        [("service_read", "other", A), ("intention_read", "other", A)],
    ),
    "session": (
        'session_prefix "" { policy = "read" }\nsession "app" { policy = "write" }\n'
        'session "admin" { policy = "deny" }',
        [
            ("session_read", "app", A),
            ("session_write", "app", A),
            ("session_read", "admin", D),
            ("session_write", "admin", D),
            ("session_read", "db", A),
            ("session_write", "db", D),
        ],
        [],
    ),
    "acl": (
        'acl = "write"',
        [("acl_read", "", A), ("acl_write", "", A), ("snapshot", "", A), ("key_read", "k", D)],
        [("key_read", "k", A)],
    ),
    "keyring": (
        'keyring = "write"',
        [("keyring_read", "", A), ("keyring_write", "", A), ("acl_read", "", D)],
        [],
    ),
    "mesh": (
        'mesh = "write"',
        [("mesh_read", "", A), ("mesh_write", "", A), ("operator_read", "", D)],
        [("operator_read", "", A)],
    ),
    "operator": (
        'operator = "read"',
        [
            ("operator_read", "", A),
            ("operator_write", "", D),
            # without a rule of their own, mesh and peering follow operator
            ("mesh_read", "", A),
            ("mesh_write", "", D),
            ("peering_read", "", A),
            ("peering_write", "", D),
        ],
        [],
    ),
    "peering": (
        'peering = "write"',
        [("peering_read", "", A), ("peering_write", "", A), ("mesh_read", "", D)],
        [("mesh_read", "", A)],
    ),
    "policies page": (
        'key_prefix "" { policy = "read" }\nkey_prefix "foo/" { policy = "write" }\n'
        'key_prefix "foo/private/" { policy = "deny" }\nkey "foo/bar/secret" { policy = "deny" }\n'
        'operator = "read"',
        [
            ("key_read", "anything", A),
            ("key_write", "anything", D),
            ("key_write", "foo/x", A),
            ("key_read", "foo/private/x", D),
            ("key_write", "foo/private/x", D),
            ("key_read", "foo/bar/secret", D),
            ("key_write", "foo/bar/secret2", A),
            ("key_write_prefix", "foo/", D),  # foo/private/ and foo/bar/secret deny under it
            ("key_write_prefix", "foo/x/", A),
            ("operator_read", "", A),
            ("operator_write", "", D),
        ],
        [],
    ),
}


def _doc_rows() -> list[tuple[str, str, str, str, Decision]]:
    rows = []
    for name, (_, deny_checks, allow_changes) in DOC_EXAMPLES.items():
        changed = {(m, s): d for m, s, d in allow_changes}
        for method, segment, decision in deny_checks:
            rows.append((name, "deny", method, segment, decision))
            rows.append((name, "allow", method, segment, changed.get((method, segment), decision)))
    return rows


@pytest.mark.parametrize("example,default,method,segment,decision", _doc_rows())
def test_rules_reference_examples(
    example: str, default: str, method: str, segment: str, decision: Decision
) -> None:
    rules = DOC_EXAMPLES[example][0]
    authz = token(rules, deny_all() if default == "deny" else allow_all())
    assert run(authz, method, segment) is decision


# "In the example above, the rules allow reading the key "baz", and only allow recursive
# reads on the prefix "bar"." (List Policy for Keys, with acl.enable_key_list_policy)
LIST_RULES = 'key_prefix "" { policy = "deny" }\nkey_prefix "bar" { policy = "list" }\nkey_prefix "baz" { policy = "read" }'


@pytest.mark.parametrize(
    "method,segment,with_list_policy,without",
    [
        ("key_list", "bar", A, A),
        ("key_list", "bar/sub/", A, A),
        ("key_read", "bar/x", A, A),  # list access on a prefix reads all its suffixes
        ("key_write", "bar/x", D, D),
        ("key_list", "baz", D, A),  # read does not grant list; without the policy, no check
        ("key_read", "baz", A, A),
        ("key_list", "", D, A),
        ("key_read", "other", D, D),
    ],
)
def test_list_policy_for_keys(
    method: str, segment: str, with_list_policy: Decision, without: Decision
) -> None:
    for default in (deny_all(), allow_all()):
        assert (
            run(token(LIST_RULES, default, key_list_policy=True), method, segment)
            is with_list_policy
        )
        assert run(token(LIST_RULES, default), method, segment) is without


def test_write_implies_list_and_read() -> None:
    authz = token('key_prefix "app/" { policy = "write" }', deny_all(), key_list_policy=True)
    assert (authz.key_list("app/"), authz.key_read("app/x"), authz.key_write("app/x")) == (A, A, A)


# --- acl/acl_test.go TestACLEnforce --------------------------------------------------------


@pytest.mark.parametrize(
    "rule,required,expected",
    [
        (AccessLevel.UNKNOWN, AccessLevel.READ, X),
        (AccessLevel.UNKNOWN, AccessLevel.WRITE, X),
        (AccessLevel.UNKNOWN, AccessLevel.LIST, X),
        (AccessLevel.READ, AccessLevel.READ, A),
        (AccessLevel.READ, AccessLevel.WRITE, D),
        (AccessLevel.READ, AccessLevel.LIST, D),
        (AccessLevel.LIST, AccessLevel.READ, A),
        (AccessLevel.LIST, AccessLevel.WRITE, D),
        (AccessLevel.LIST, AccessLevel.LIST, A),
        (AccessLevel.WRITE, AccessLevel.READ, A),
        (AccessLevel.WRITE, AccessLevel.WRITE, A),
        (AccessLevel.WRITE, AccessLevel.LIST, A),
        (AccessLevel.DENY, AccessLevel.READ, D),
        (AccessLevel.DENY, AccessLevel.WRITE, D),
        (AccessLevel.DENY, AccessLevel.LIST, D),
    ],
)
def test_enforce_level(rule: AccessLevel, required: AccessLevel, expected: Decision) -> None:
    assert enforce_level(rule, required) is expected


# --- policy_authorizer_test.go: "Prefer Exact Matches" ------------------------------------

LABELLED = {
    "agent": ("agent_read", "agent_write"),
    "key": ("key_read", "key_write"),
    "node": ("node_read", "node_write"),
    "service": ("service_read", "service_write"),
    "session": ("session_read", "session_write"),
    "event": ("event_read", "event_write"),
    "query": ("query_read", "query_write"),
}
EXACT_RULES = "\n".join(
    f'{r} "foo" {{ policy = "write" }}\n{r} "football" {{ policy = "deny" }}\n'
    f'{r}_prefix "foot" {{ policy = "read" }}\n{r}_prefix "fo" {{ policy = "read" }}'
    for r in LABELLED
)
EXACT_RULES += '\nservice "foo" { policy = "write"\nintentions = "write" }'
# segment: (read, write) - "foo" is exact write, "football" exact deny, the rest prefix read
EXACT_CASES = {
    "fo": (A, D),
    "for": (A, D),
    "foo": (A, A),
    "foot": (A, D),
    "foot2": (A, D),
    "food": (A, D),
    "football": (D, D),
}


@pytest.mark.parametrize("resource", [*LABELLED, "intention"])
@pytest.mark.parametrize("segment", EXACT_CASES)
def test_prefer_exact_matches(resource: str, segment: str) -> None:
    authz = PolicyAuthorizer(parse_rules(EXACT_RULES))
    read, write = LABELLED.get(resource, ("intention_read", "intention_write"))
    assert (run(authz, read, segment), run(authz, write, segment)) == EXACT_CASES[segment]
    assert authz.node_read_all() is D and authz.service_read_all() is D
    assert authz.service_write_any() is A


# --- an empty policy decides nothing (policy_authorizer_test.go "Defaults") ---------------

ALL_CHECKS = [
    "acl_read", "acl_write", "agent_read", "agent_write", "event_read", "event_write",
    "intention_default_allow", "intention_read", "intention_write", "key_list", "key_read",
    "key_write", "key_write_prefix", "keyring_read", "keyring_write", "mesh_read", "mesh_write",
    "peering_read", "peering_write", "node_read", "node_read_all", "node_write",
    "operator_read", "operator_write", "query_read", "query_write", "service_read",
    "service_read_all", "service_write", "service_write_any", "session_read", "session_write",
    "snapshot",
]  # fmt: skip
MANAGEMENT = {"acl_read", "acl_write", "snapshot"}


@pytest.mark.parametrize("method", ALL_CHECKS)
def test_empty_policy_defaults_then_the_default_policy_decides(method: str) -> None:
    empty = PolicyAuthorizer(Policy())
    assert run(empty, method, "foo") is X
    on = {"enable_key_list_policy": True}
    assert run(chain(empty, deny_all(), **on), method, "foo") is D
    assert run(chain(empty, allow_all(), **on), method, "foo") is (D if method in MANAGEMENT else A)
    assert run(ChainedAuthorizer([empty], **on), method, "foo") is D  # every member abstains
    # acl.enable_key_list_policy = false (Consul's default): listing is never refused, the
    # entries listed are filtered with key_read
    off = run(chain(empty, deny_all()), method, "foo")
    assert off is (A if method == "key_list" else D)


@pytest.mark.parametrize("method", ALL_CHECKS)
def test_static_authorizers(method: str) -> None:
    assert run(deny_all(), method, "x") is D
    assert run(allow_all(), method, "x") is (D if method in MANAGEMENT else A)
    assert run(manage_all(), method, "x") is A


def test_management_token_rules_allow_everything_like_manage_all() -> None:
    mgmt = token(GLOBAL_MANAGEMENT_RULES, deny_all(), key_list_policy=True)
    for method in ALL_CHECKS:
        expected = D if method == "intention_default_allow" else A  # a policy never decides it
        assert run(mgmt, method, "any/thing") is expected, method
    ro = token(GLOBAL_READ_ONLY_RULES, deny_all(), key_list_policy=True)
    assert (
        ro.key_read("x"),
        ro.key_list("x"),
        ro.key_write("x"),
        ro.acl_read(),
        ro.acl_write(),
    ) == (A, D, D, A, D)


def test_root_authorizer() -> None:
    assert root_authorizer("allow") is allow_all()
    assert root_authorizer("deny") is deny_all()
    assert root_authorizer("manage") is manage_all()
    assert root_authorizer("foo") is None


# --- key_write_prefix (acl_test.go KeyWritePrefixDefaultDeny / DefaultAllow) -------------

KWP_RULES = """
key_prefix "fo" { policy = "read" }
key_prefix "foo/" { policy = "write" }
key_prefix "bar/" { policy = "write" }
key_prefix "baz/" { policy = "write" }
key_prefix "test/" { policy = "write" }
key "foo/bar" { policy = "write" }
key "bar/baz" { policy = "read" }
"""


@pytest.mark.parametrize(
    "prefix,decision",
    [
        ("foo", D),  # the best prefix rule ("fo") does not grant write
        ("baz/", A),  # a write prefix rule and nothing under it
        ("foo/", A),  # ... and everything under it grants write too
        ("bar/", D),  # `key "bar/baz"` (read) is under the prefix
        ("te", D),  # no prefix rule covers "te": the default decides, here deny
    ],
)
def test_key_write_prefix_default_deny(prefix: str, decision: Decision) -> None:
    assert token(KWP_RULES, deny_all()).key_write_prefix(prefix) is decision


@pytest.mark.parametrize(
    "rules,prefix,policy_decision,allow_default",
    [
        ('key "foo/bar" { policy = "read" }', "foo", D, D),  # a rule under it does not grant write
        ('key "foo/bar" { policy = "read" }', "bar", X, A),  # nothing covers or is under it
        ('key_prefix "" { policy = "write" }\nkey "a/b/c" { policy = "deny" }', "a/", D, D),
        ('key_prefix "" { policy = "write" }\nkey_prefix "a/b/" { policy = "list" }', "a/", D, D),
        ('key_prefix "" { policy = "write" }\nkey_prefix "a/b/" { policy = "deny" }', "a/c", A, A),
        (
            'key_prefix "" { policy = "write" }\nkey "a" { policy = "deny" }',
            "a",
            D,
            D,
        ),  # the exact rule itself
        ('key_prefix "a/" { policy = "deny" }', "a/b/", D, D),
        ('key "a/" { policy = "write" }', "a/", X, A),  # exact rules never cover a prefix
        ('key_prefix "" { policy = "deny" }\nkey_prefix "a/" { policy = "write" }', "a/", A, A),
    ],
)
def test_key_write_prefix_with_deny_under_the_prefix(
    rules: str, prefix: str, policy_decision: Decision, allow_default: Decision
) -> None:
    assert PolicyAuthorizer(parse_rules(rules)).key_write_prefix(prefix) is policy_decision
    assert token(rules, allow_all()).key_write_prefix(prefix) is allow_default


# acl_test.go (0.x TestPolicyACL) on 1.x prefix rules: key, read, write, write-prefix
OLD_KEY_RULES = """
key_prefix "foo/" { policy = "write" }
key_prefix "foo/priv/" { policy = "deny" }
key_prefix "bar/" { policy = "deny" }
key_prefix "zip/" { policy = "read" }
"""


@pytest.mark.parametrize(
    "key,read,write,write_prefix",
    [
        ("other", A, A, A),
        ("foo/test", A, A, A),
        ("foo/priv/test", D, D, D),
        ("bar/any", D, D, D),
        ("zip/test", A, D, D),
        ("foo/", A, A, D),
        ("", A, A, D),
    ],
)
def test_keys_over_default_allow(
    key: str, read: Decision, write: Decision, write_prefix: Decision
) -> None:
    authz = token(OLD_KEY_RULES, allow_all())
    assert (authz.key_read(key), authz.key_write(key), authz.key_write_prefix(key)) == (
        read,
        write,
        write_prefix,
    )
