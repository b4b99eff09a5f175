"""ACL rules parsing, validation and merging, as Consul 1.x's acl/policy.go, policy_ce.go and
policy_merger.go (cases ported from acl/policy_test.go, plus hcl decoder.go's quirks)."""

from __future__ import annotations

import json

import pytest

from agent.acl import AccessLevel, Policy, PolicyError, Rule, merge_policies, parse_rules
from agent.acl._hcl import go_quote
from agent.acl.builtin import (
    GLOBAL_MANAGEMENT_RULES,
    GLOBAL_READ_ONLY_RULES,
    node_identity_rules,
    service_identity_rules,
)
from agent.acl.policy import takes_precedence_over


def R(name: str, policy: str, intentions: str = "") -> Rule:
    return Rule(name, policy, intentions)


BASIC_HCL = """
agent_prefix "bar" { policy = "write" }
agent "foo" { policy = "read" }
event_prefix "" { policy = "read" }
event "foo" { policy = "write" }
event "bar" { policy = "deny" }
key_prefix "" { policy = "read" }
key_prefix "foo/" { policy = "write" }
key_prefix "foo/bar/" { policy = "read" }
key "foo/bar/baz" { policy = "deny" }
keyring = "deny"
node_prefix "" { policy = "read" }
node "foo" { policy = "write" }
node "bar" { policy = "deny" }
operator = "deny"
mesh = "deny"
peering = "deny"
service_prefix "" { policy = "write" }
service "foo" { policy = "read" }
session "foo" { policy = "write" }
session "bar" { policy = "deny" }
session_prefix "baz" { policy = "deny" }
query_prefix "" { policy = "read" }
query "foo" { policy = "write" }
query "bar" { policy = "deny" }
"""

BASIC_JSON = {
    "agent_prefix": {"bar": {"policy": "write"}},
    "agent": {"foo": {"policy": "read"}},
    "event_prefix": {"": {"policy": "read"}},
    "event": {"foo": {"policy": "write"}, "bar": {"policy": "deny"}},
    "key_prefix": {
        "": {"policy": "read"},
        "foo/": {"policy": "write"},
        "foo/bar/": {"policy": "read"},
    },
    "key": {"foo/bar/baz": {"policy": "deny"}},
    "keyring": "deny",
    "node_prefix": {"": {"policy": "read"}},
    "node": {"foo": {"policy": "write"}, "bar": {"policy": "deny"}},
    "operator": "deny",
    "mesh": "deny",
    "peering": "deny",
    "service_prefix": {"": {"policy": "write"}},
    "service": {"foo": {"policy": "read"}},
    "session_prefix": {"baz": {"policy": "deny"}},
    "session": {"foo": {"policy": "write"}, "bar": {"policy": "deny"}},
    "query_prefix": {"": {"policy": "read"}},
    "query": {"foo": {"policy": "write"}, "bar": {"policy": "deny"}},
}

BASIC = Policy(
    agent_prefixes=(R("bar", "write"),),
    agents=(R("foo", "read"),),
    event_prefixes=(R("", "read"),),
    events=(R("foo", "write"), R("bar", "deny")),
    keyring="deny",
    key_prefixes=(R("", "read"), R("foo/", "write"), R("foo/bar/", "read")),
    keys=(R("foo/bar/baz", "deny"),),
    node_prefixes=(R("", "read"),),
    nodes=(R("foo", "write"), R("bar", "deny")),
    operator="deny",
    mesh="deny",
    peering="deny",
    prepared_query_prefixes=(R("", "read"),),
    prepared_queries=(R("foo", "write"), R("bar", "deny")),
    service_prefixes=(R("", "write"),),
    services=(R("foo", "read"),),
    session_prefixes=(R("baz", "deny"),),
    sessions=(R("foo", "write"), R("bar", "deny")),
)


@pytest.mark.parametrize("text", [BASIC_HCL, json.dumps(BASIC_JSON, indent=2)], ids=["hcl", "json"])
def test_basic_policy_every_resource(text: str) -> None:
    assert parse_rules(text) == BASIC


# (resource, Policy attribute) for every labelled resource kind
LABELLED = [
    ("agent", "agents"),
    ("agent_prefix", "agent_prefixes"),
    ("key", "keys"),
    ("key_prefix", "key_prefixes"),
    ("node", "nodes"),
    ("node_prefix", "node_prefixes"),
    ("service", "services"),
    ("service_prefix", "service_prefixes"),
    ("session", "sessions"),
    ("session_prefix", "session_prefixes"),
    ("event", "events"),
    ("event_prefix", "event_prefixes"),
    ("query", "prepared_queries"),
    ("query_prefix", "prepared_query_prefixes"),
]
UNLABELLED = ["acl", "keyring", "operator", "mesh", "peering"]


@pytest.mark.parametrize("resource,attr", LABELLED)
@pytest.mark.parametrize("policy", ["read", "write", "deny"])
def test_each_labelled_resource_hcl_and_json(resource: str, attr: str, policy: str) -> None:
    hcl = f'{resource} "web/1" {{ policy = "{policy}" }}\n{resource} "" {{ policy = "read" }}'
    js = json.dumps({resource: {"web/1": {"policy": policy}, "": {"policy": "read"}}})
    expected = Policy(**{attr: (R("web/1", policy), R("", "read"))})  # type: ignore[arg-type]
    assert parse_rules(hcl) == expected
    assert parse_rules(js) == expected


@pytest.mark.parametrize("resource", UNLABELLED)
@pytest.mark.parametrize("policy", ["read", "write", "deny", ""])
def test_each_unlabelled_resource_hcl_and_json(resource: str, policy: str) -> None:
    expected = Policy(**{resource: policy})  # type: ignore[arg-type]
    assert parse_rules(f'{resource} = "{policy}"') == expected
    assert parse_rules(json.dumps({resource: policy})) == expected


@pytest.mark.parametrize("resource", ["key", "key_prefix"])
def test_list_policy_only_for_keys(resource: str) -> None:
    attr = "keys" if resource == "key" else "key_prefixes"
    got = parse_rules(f'{resource} "bar" {{ policy = "list" }}')
    assert got == Policy(**{attr: (R("bar", "list"),)})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "hcl,js,expected",
    [
        (
            'service "foo" { policy = "write" }',
            {"service": {"foo": {"policy": "write"}}},
            Policy(services=(R("foo", "write"),)),
        ),
        (
            'service "foo" { policy = "write" intentions = "read" }',
            {"service": {"foo": {"policy": "write", "intentions": "read"}}},
            Policy(services=(R("foo", "write", "read"),)),
        ),
        (
            'service_prefix "" { policy = "read" intentions = "write" }',
            {"service_prefix": {"": {"policy": "read", "intentions": "write"}}},
            Policy(service_prefixes=(R("", "read", "write"),)),
        ),
    ],
    ids=["no-intentions", "intentions", "prefix-intentions"],
)
def test_service_intentions(hcl: str, js: object, expected: Policy) -> None:
    assert parse_rules(hcl) == expected
    assert parse_rules(json.dumps(js)) == expected


def _rule_repr(resource: str, name: str, policy: str, intentions: str = "") -> str:
    kind = resource.removesuffix("_prefix")
    go_type, label, ent = {
        "agent": ("AgentRule", "Node", False),
        "key": ("KeyRule", "Prefix", True),
        "node": ("NodeRule", "Name", True),
        "service": ("ServiceRule", "Name", True),
        "session": ("SessionRule", "Node", False),
        "event": ("EventRule", "Event", False),
        "query": ("PreparedQueryRule", "Prefix", False),
    }[kind]
    parts = [f'{label}:"{name}"', f'Policy:"{policy}"']
    if kind == "service":
        parts.append(f'Intentions:"{intentions}"')
    if ent:
        parts.append("EnterpriseRule:acl.EnterpriseRule{}")
    return f"&acl.{go_type}{{{', '.join(parts)}}}"


@pytest.mark.parametrize("resource,attr", LABELLED)
def test_bad_labelled_policy_message(resource: str, attr: str) -> None:
    msg = f"Invalid {resource} policy: {_rule_repr(resource, 'foo', 'nope')}"
    with pytest.raises(PolicyError) as hcl_err:
        parse_rules(f'{resource} "foo" {{ policy = "nope" }}')
    assert str(hcl_err.value) == msg
    with pytest.raises(PolicyError) as json_err:
        parse_rules(json.dumps({resource: {"foo": {"policy": "nope"}}}))
    assert str(json_err.value) == msg


@pytest.mark.parametrize("resource", UNLABELLED)
@pytest.mark.parametrize("policy", ["nope", "list"])
def test_bad_unlabelled_policy_message(resource: str, policy: str) -> None:
    for text in (f'{resource} = "{policy}"', json.dumps({resource: policy})):
        with pytest.raises(PolicyError) as err:
            parse_rules(text)
        assert str(err.value) == f'Invalid {resource} policy: "{policy}"'


@pytest.mark.parametrize(
    "text,message",
    [
        (
            'service "foo" { policy = "write" intentions = "foo" }',
            'Invalid service intentions policy: &acl.ServiceRule{Name:"foo", Policy:"write", '
            'Intentions:"foo", EnterpriseRule:acl.EnterpriseRule{}}',
        ),
        (
            'service_prefix "foo" { policy = "write" intentions = "list" }',
            'Invalid service_prefix intentions policy: &acl.ServiceRule{Name:"foo", '
            'Policy:"write", Intentions:"list", EnterpriseRule:acl.EnterpriseRule{}}',
        ),
        (
            'node "foo" { policy = "list" }',
            f"Invalid node policy: {_rule_repr('node', 'foo', 'list')}",
        ),
        ('key "a" {}', f"Invalid key policy: {_rule_repr('key', 'a', '')}"),
        ('key "a" { policy = true }', f"Invalid key policy: {_rule_repr('key', 'a', 'true')}"),
        ('key "a" { policy = 1.5 }', f"Invalid key policy: {_rule_repr('key', 'a', '1.5')}"),
        (
            'agent "é\\n" { policy = "x" }',
            'Invalid agent policy: &acl.AgentRule{Node:"é\\n", Policy:"x"}',
        ),
        # validation runs in PolicyRules' field order: acl first, peering last
        ('peering = "x"\nacl = "y"', 'Invalid acl policy: "y"'),
        (
            'mesh = "x"\nkey "a" { policy = "y" }',
            f"Invalid key policy: {_rule_repr('key', 'a', 'y')}",
        ),
    ],
)
def test_invalid_rule_messages(text: str, message: str) -> None:
    with pytest.raises(PolicyError) as err:
        parse_rules(text)
    assert str(err.value) == message


@pytest.mark.parametrize(
    "text",
    [
        'key "foo" {',
        'key "foo" = "read"',
        "foo",
        'acl = "write',
        "{",
        '{"acl": "write",}',
        '{"acl": NaN}',
        '{"acl": "write"} trailing',
        "key [",
    ],
)
def test_syntax_errors_fail_to_parse(text: str) -> None:
    with pytest.raises(PolicyError) as err:
        parse_rules(text)
    assert str(err.value).startswith("Failed to parse ACL rules: ")


@pytest.mark.parametrize(
    "text,message",
    [
        (
            'key "a" { policy = ["read"] }',
            "At 1:20: root.key[0].Policy: unknown type for string *ast.ListType",
        ),
        ("keyring = { a = 1 }", "At 1:13: root.keyring: unknown type for string *ast.ObjectList"),
        ('acl = ["write"]', "At 1:7: root.acl: unknown type for string *ast.ListType"),
        ('key = "read"', "At 1:7: unknown slice type: *ast.LiteralType"),
        (
            'acl "x" { policy = "read" }',
            "At 1:5: root.acl: unknown type for string *ast.ObjectList",
        ),
    ],
)
def test_decoding_errors_name_the_field_and_position(text: str, message: str) -> None:
    with pytest.raises(PolicyError) as err:
        parse_rules(text)
    assert str(err.value) == f"Failed to parse ACL rules: {message}"


@pytest.mark.parametrize(
    "text,where,name",
    [
        ('path "foo/" { policy = "read" policy = "read" }', "1:31", "policy"),
        ('key "foo/" {\n  policy = "read"\n  policy = "write"\n}', "3:3", "policy"),
        ('operator = "read"\noperator = "write"', "2:1", "operator"),
        (
            'service "a" { policy = "read" intentions = "read" intentions = "write" }',
            "1:51",
            "intentions",
        ),
    ],
)
def test_duplicate_attribute_is_refused_when_strict(text: str, where: str, name: str) -> None:
    with pytest.raises(PolicyError) as err:
        parse_rules(text)
    assert str(err.value) == (
        f'Failed to parse ACL rules: The argument "{name}" at {where} was already set. '
        "Each argument can only be defined once"
    )


def test_duplicate_attribute_tolerated_for_stored_rules_last_wins() -> None:
    assert parse_rules('key "a" { policy = "read"\npolicy = "write" }', strict=False) == Policy(
        keys=(R("a", "write"),)
    )
    assert parse_rules('operator = "write"\noperator = "read"', strict=False) == Policy(
        operator="read"
    )


def test_repeated_blocks_are_separate_rules_not_duplicates() -> None:
    got = parse_rules(
        'key "a" { policy = "read" }\nkey "a" { policy = "deny" }\nkey "b" { policy = "write" }'
    )
    assert got.keys == (R("a", "read"), R("a", "deny"), R("b", "write"))


@pytest.mark.parametrize(
    "text,expected",
    [
        # names match case-insensitively (hcl's ObjectList.Filter uses EqualFold); labels and
        # dispositions keep their case
        ('KEY "Foo" { POLICY = "READ" }', Policy(keys=(R("Foo", "READ"),))),
        (
            'Service "a" { Policy = "write" Intentions = "Read" }',
            Policy(services=(R("a", "write", "Read"),)),
        ),
        # unknown resources and attributes are ignored, as hcl.Decode ignores them
        (
            'foo = "bar"\nnamespace "x" { policy = "write" }\nkey "a" { policy = "read" x = 1 }',
            Policy(keys=(R("a", "read"),)),
        ),
        # object-assignment form and the HCL comment styles
        ('key = { "a" = { policy = "read" } }', Policy(keys=(R("a", "read"),))),
        ('# c\n// c\n/* c\n */ acl = "read" # tail', Policy(acl="read")),
        # `key "a" "b" {...}` (two labels) is `key "a" { "b" {...} }`: no policy of its own
        ('key "a" "b" "c" { policy = "read" }', Policy(keys=(R("a", "read"),))),
        # a heredoc keeps its final newline
        ('key "a" { policy = <<EOF\nread\nEOF\n}', None),
        ("   \n\t", Policy()),
        ("", Policy()),
        ("{}", Policy()),
    ],
)
def test_hcl_decoder_quirks(text: str, expected: Policy | None) -> None:
    if expected is None:
        with pytest.raises(PolicyError, match=r'Policy:"read\\n"'):
            parse_rules(text)
    else:
        assert parse_rules(text) == expected


def test_two_labels_leave_the_rule_without_policy() -> None:
    with pytest.raises(
        PolicyError, match=r'Invalid key policy: &acl.KeyRule\{Prefix:"a", Policy:""'
    ):
        parse_rules('key "a" "b" { policy = "read" }')


@pytest.mark.parametrize(
    "js,expected",
    [
        # a list of objects is repeated items (hcl json flattenListType)
        (
            '{"key": [{"a": {"policy": "read"}}, {"b": {"policy": "deny"}}]}',
            Policy(keys=(R("a", "read"), R("b", "deny"))),
        ),
        # duplicate JSON keys are kept as separate items, like repeated HCL blocks
        (
            '{"key": {"a": {"policy": "read"}, "a": {"policy": "deny"}}}',
            Policy(keys=(R("a", "read"), R("a", "deny"))),
        ),
        ('{"acl": "read", "acl": "write"}', Policy(acl="write")),
        ('{"acl": 1.50}', None),
        (
            '  {"key_prefix": {"": {"policy": "write", "extra": [1, 2]}}}',
            Policy(key_prefixes=(R("", "write"),)),
        ),
    ],
)
def test_json_rules(js: str, expected: Policy | None) -> None:
    if expected is None:
        with pytest.raises(PolicyError, match=r'^Invalid acl policy: "1.50"$'):
            parse_rules(js)
    else:
        assert parse_rules(js) == expected


def test_legacy_rules_are_prefix_rules() -> None:
    text = """
    key "" { policy = "write" }
    key "foo/" { policy = "deny" }
    service "web" { policy = "read" }
    node "" { policy = "read" }
    agent "" { policy = "read" }
    session "" { policy = "write" }
    event "" { policy = "read" }
    query "" { policy = "read" }
    keyring = "read"
    operator = "write"
    acl = "write"
    key_prefix "x" { policy = "write" }
    """
    assert parse_rules(text, legacy=True) == Policy(
        key_prefixes=(R("", "write"), R("foo/", "deny")),
        service_prefixes=(R("web", "read"),),
        node_prefixes=(R("", "read"),),
        agent_prefixes=(R("", "read"),),
        session_prefixes=(R("", "write"),),
        event_prefixes=(R("", "read"),),
        prepared_query_prefixes=(R("", "read"),),
        keyring="read",
        operator="write",
    )
    # in Consul 1.x syntax the same `key ""` is an exact rule on the empty key
    assert parse_rules('key "" { policy = "write" }') == Policy(keys=(R("", "write"),))
    with pytest.raises(PolicyError, match=r"^Invalid key policy"):
        parse_rules('key "" { policy = "nope" }', legacy=True)


def test_builtin_policies_parse() -> None:
    mgmt = parse_rules(GLOBAL_MANAGEMENT_RULES)
    assert mgmt.acl == mgmt.keyring == mgmt.operator == mgmt.mesh == mgmt.peering == "write"
    assert mgmt.service_prefixes == (R("", "write", "write"),)
    ro = parse_rules(GLOBAL_READ_ONLY_RULES)
    assert ro.acl == "read" and ro.key_prefixes == (R("", "read"),)
    assert parse_rules(service_identity_rules("web")).services == (
        R("web", "write"),
        R("web-sidecar-proxy", "write"),
    )
    assert parse_rules(node_identity_rules("n1")).nodes == (R("n1", "write"),)


# --- merging (acl/policy_merger.go, TestMergePolicies) ------------------------------------


@pytest.mark.parametrize("attr", [a for _, a in LABELLED if not a.startswith("service")])
def test_merge_labelled_most_precedent_wins(attr: str) -> None:
    first = Policy(**{attr: (R("foo", "write"), R("bar", "read"), R("baz", "write"))})  # type: ignore[arg-type]
    second = Policy(**{attr: (R("foo", "read"), R("baz", "deny"))})  # type: ignore[arg-type]
    merged = merge_policies([first, second])
    assert getattr(merged, attr) == (R("foo", "write"), R("bar", "read"), R("baz", "deny"))


def test_merge_services_merges_policy_and_intentions_separately() -> None:
    first = Policy(
        services=(R("foo", "write", "write"), R("bar", "read", "read"), R("baz", "write", "read")),
        service_prefixes=(
            R("000", "write", "write"),
            R("111", "read", "read"),
            R("222", "write", "read"),
        ),
    )
    second = Policy(
        services=(R("foo", "read", "read"), R("baz", "deny", "write")),
        service_prefixes=(R("000", "read", "read"), R("222", "deny", "write")),
    )
    merged = merge_policies([first, second])
    assert merged.services == (
        R("foo", "write", "write"),
        R("bar", "read", "read"),
        R("baz", "deny", "write"),
    )
    assert merged.service_prefixes == (
        R("000", "write", "write"),
        R("111", "read", "read"),
        R("222", "deny", "write"),
    )


@pytest.mark.parametrize("attr", UNLABELLED)
@pytest.mark.parametrize(
    "values,expected",
    [
        (["read", "write"], "write"),
        (["write", "read"], "write"),
        (["write", "deny", "read"], "deny"),
        (["", "read", ""], "read"),
        (["", ""], ""),
        # takesPrecedenceOver compares exact strings: an upper-case disposition never wins,
        # not even over "" (so `acl = "DENY"` alone merges to no acl rule)
        (["DENY"], ""),
        (["DENY", "read"], "read"),
    ],
)
def test_merge_unlabelled(attr: str, values: list[str], expected: str) -> None:
    policies = [Policy(**{attr: v}) for v in values]  # type: ignore[arg-type]
    assert getattr(merge_policies(policies), attr) == expected


def test_merge_keeps_exact_and_prefix_rules_apart() -> None:
    merged = merge_policies(
        [
            parse_rules('key_prefix "a" { policy = "deny" }'),
            parse_rules('key "a" { policy = "write" }\nkey_prefix "" { policy = "read" }'),
        ]
    )
    assert merged.keys == (R("a", "write"),)
    assert merged.key_prefixes == (R("a", "deny"), R("", "read"))


def test_merge_within_one_policy_deny_wins() -> None:
    merged = merge_policies(
        [parse_rules('key "a" { policy = "write" }\nkey "a" { policy = "deny" }')]
    )
    assert merged.keys == (R("a", "deny"),)


@pytest.mark.parametrize(
    "a,b,expected",
    [
        ("deny", "write", True),
        ("write", "deny", False),
        ("deny", "deny", True),
        ("write", "list", True),
        ("list", "write", False),
        ("list", "read", True),
        ("read", "list", False),
        ("read", "", True),
        ("", "read", False),
        ("", "", False),
        ("DENY", "read", False),
        ("read", "DENY", True),
    ],
)
def test_takes_precedence_over(a: str, b: str, expected: bool) -> None:
    assert takes_precedence_over(a, b) is expected


@pytest.mark.parametrize(
    "text,level",
    [
        ("deny", AccessLevel.DENY),
        ("read", AccessLevel.READ),
        ("LIST", AccessLevel.LIST),
        ("Write", AccessLevel.WRITE),
    ],
)
def test_access_level_from_string(text: str, level: AccessLevel) -> None:
    assert AccessLevel.from_string(text) is level
    assert str(level) == text.lower()


def test_access_level_from_string_invalid() -> None:
    with pytest.raises(PolicyError, match=r'^"nope" is not a valid access level$'):
        AccessLevel.from_string("nope")


@pytest.mark.parametrize(
    "s,quoted",
    [
        ("foo", '"foo"'),
        ('a"b\\c', '"a\\"b\\\\c"'),
        ("tab\tnl\n", '"tab\\tnl\\n"'),
        ("\x00\x7f", '"\\x00\\x7f"'),
        ("é☃", '"é☃"'),
        ("\u200b", '"\\u200b"'),
        ("\U000e0001", '"\\U000e0001"'),
    ],
)
def test_go_quote(s: str, quoted: str) -> None:
    assert go_quote(s) == quoted
