"""The text of ACL rules: hcl v1's scanner, parser and JSON reading as Consul sees them
(errors with their wording and position, what decodes to what), and fuzzing of
`parse_rules` (any text gives a Policy or a PolicyError, quickly)."""

from __future__ import annotations

import json
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.acl import Policy, PolicyError, Rule, parse_rules

# every labelled resource kind with its Policy attribute, and the unlabelled ones
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


def R(name: str, policy: str, intentions: str = "") -> Rule:
    return Rule(name, policy, intentions)


# hcl v1's parser and scanner errors, with their positions (scanner errors have no "At")
@pytest.mark.parametrize(
    "text,message",
    [
        (
            "not a valid hcl",
            "At 1:17: key 'not a valid hcl' expected start of object ('{') or assignment ('=')",
        ),
        ("foo", "At 1:5: key 'foo' expected start of object ('{') or assignment ('=')"),
        ('key "foo" = "read"', "At 1:11: nested object expected: LBRACE got: ASSIGN"),
        ('key "a" "b" = 1', "At 1:13: nested object expected: LBRACE got: ASSIGN"),
        ("= 1", "At 1:1: no object keys found!"),
        ("a {{}}", "At 1:4: expected: IDENT | STRING got: LBRACE"),
        ('key "a" {', "At 1:11: object expected closing RBRACE got: EOF"),
        ('key "a" { policy = }', "At 1:21: object expected closing RBRACE got: EOF"),
        (
            'key "a" { policy = ] }',
            "At 1:20: Unknown token: {Type:RBRACK Pos:1:20 Text:] JSON:false}",
        ),
        ("acl = +", "At 1:7: Unknown token: {Type:ADD Pos:1:7 Text:+ JSON:false}"),
        ("acl = [1 2]", "At 1:10: error parsing list, expected comma or list end, got: NUMBER"),
        (
            "acl = [{a = }]",
            "At 1:8: error while trying to parse object within list: "
            "At 1:14: object expected closing RBRACE got: RBRACK",
        ),
        ('acl = "write', "1:13: literal not terminated"),
        ('acl = "wr\nx"', "1:10: literal not terminated"),
        ('acl = "a\\qb"', "1:10: illegal char escape"),
        ('acl = "\\u12"', "1:13: illegal char escape"),
        ("acl = @", "1:7: illegal char"),
        ('acl = "read" / x', "1:14: expected '/' for comment"),
        ("/* x", "1:5: comment not terminated"),
        ("acl = <<EOF\nwrite\nEOF", "3:4: heredoc not terminated"),
        ("acl = <<EOF write", "1:12: invalid characters in heredoc anchor"),
        ('acl = "\x00"', "1:8: unexpected null character (0x00)"),
        ("acl = 089", "1:10: illegal octal number"),
        ("acl = 0x", "1:9: illegal hexadecimal number"),
        ('acl = "\\ud800"', 'At 1:7: unquote "\\ud800" err: invalid syntax'),
    ],
)
def test_hcl_syntax_errors(text: str, message: str) -> None:
    with pytest.raises(PolicyError) as err:
        parse_rules(text)
    assert str(err.value) == f"Failed to parse ACL rules: {message}"


@pytest.mark.parametrize(
    "text,expected",
    [
        ("acl =", Policy()),  # hcl stops quietly at the end of the text after `=`
        ('acl = "read"\r\nkeyring = "write"\r\n', Policy(acl="read", keyring="write")),
        ('"acl" = "read"', Policy(acl="read")),
        ('acl = "read", keyring = "read"', Policy(acl="read", keyring="read")),
        ('key "a" { policy = "read", }', Policy(keys=(R("a", "read"),))),
        ('key\n"a"\n{\npolicy\n=\n"read"\n}', Policy(keys=(R("a", "read"),))),
        ('key "a\\\\" { policy = "read" }', Policy(keys=(R("a\\", "read"),))),
        ('key "\\u00e9\\t\\101" { policy = "read" }', Policy(keys=(R("é\tA", "read"),))),
    ],
)
def test_hcl_syntax_accepted(text: str, expected: Policy) -> None:
    assert parse_rules(text) == expected


def test_interpolation_is_kept_as_written() -> None:
    with pytest.raises(PolicyError) as err:
        parse_rules('acl = "${"x"}" # c')
    assert str(err.value) == 'Invalid acl policy: "${\\"x\\"}"'


@pytest.mark.parametrize(
    "value,decoded",
    [
        ("0x1F", "0x1F"),
        ("-1.5e3", "-1.5e3"),
        (".5", ".5"),
        ("1.", "1."),
        ("08", "08"),
        ("true", "true"),
    ],
)
def test_numbers_and_booleans_decode_as_written(value: str, decoded: str) -> None:
    with pytest.raises(PolicyError) as err:
        parse_rules(f"acl = {value}")
    assert str(err.value) == f'Invalid acl policy: "{decoded}"'


@pytest.mark.parametrize(
    "heredoc,value",
    [
        ("<<EOF\nwrite\nEOF\n", "write\\n"),
        ("<<-EOF\n  write\n  EOF\n", "write\\n"),
        ("<<EOF\nwrite\n  EOF\n", "write\\n  "),  # hcl cuts the anchor's length, not the line
    ],
)
def test_heredoc_values_as_hcl_unindents_them(heredoc: str, value: str) -> None:
    with pytest.raises(PolicyError) as err:
        parse_rules(f"acl = {heredoc}")
    assert str(err.value) == f'Invalid acl policy: "{value}"'


# --- fuzzing ------------------------------------------------------------------------------

FRAGMENTS = [
    "key", "key_prefix", "service", "node_prefix", "acl", "operator", "KEY", "policy",
    "intentions", '"a"', '""', '"read"', '"write"', '"deny"', '"list"', '"x\\ny"', '"\\q"',
    '"${a}"', '"é"', "{", "}", "[", "]", "=", ",", ":", ".", "-", "\n", " ", "\t", "#c\n",
    "//c\n", "/*c*/", "/*", "<<EOF\nread\nEOF\n", "<<-EOF\n  read\n  EOF\n", "<<EOF", "1",
    "-2.5e3", "0x1F", "true", "null", '"', "\\", "\x00", "\u2028",
]  # fmt: skip


def _parse_only_policy_error(text: str) -> None:
    start = time.monotonic()
    try:
        parse_rules(text)
    except PolicyError:
        pass
    try:
        parse_rules(text, strict=False, legacy=True)
    except PolicyError:
        pass
    assert time.monotonic() - start < 2.0


@settings(max_examples=300, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=400))
def test_fuzz_random_text_raises_only_policy_error(text: str) -> None:
    _parse_only_policy_error(text)


@settings(max_examples=500, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(FRAGMENTS), max_size=60).map("".join))
def test_fuzz_hcl_token_soup_raises_only_policy_error(text: str) -> None:
    _parse_only_policy_error(text)
    _parse_only_policy_error("{" + text)


@settings(max_examples=200, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
                        st.sampled_from(["key", "service", "policy", "intentions", "acl", "a", ""]),
                        inner, max_size=4), max_leaves=20))  # fmt: skip
def test_fuzz_json_documents_raise_only_policy_error(doc: object) -> None:
    _parse_only_policy_error(json.dumps({"rules": doc, "key": doc}))


def test_deep_nesting_is_an_error_not_a_crash() -> None:
    for text in ("a = " + "{ b = " * 5000 + "1" + " }" * 5000, "a = " + "[" * 5000, "{" * 5000):
        _parse_only_policy_error(text)


# hcl refuses U+E123 anywhere in the text; "$" would start an interpolation in HCL strings
NAMES = st.text(
    st.characters(blacklist_characters="$\ue123", blacklist_categories=("Cs",)), max_size=12
)
DISPOSITIONS = st.sampled_from(["read", "write", "deny"])


@st.composite
def policies(draw: st.DrawFn) -> Policy:
    values: dict[str, object] = {}
    for resource, attr in LABELLED:
        level = (
            st.sampled_from(["read", "write", "deny", "list"])
            if resource.startswith("key")
            else DISPOSITIONS
        )
        names = draw(st.lists(NAMES, max_size=3, unique=True))
        intentions = (
            st.sampled_from(["", "read", "write", "deny"])
            if resource.startswith("service")
            else st.just("")
        )
        values[attr] = tuple(R(n, draw(level), draw(intentions)) for n in names)
    for resource in UNLABELLED:
        values[resource] = draw(st.sampled_from(["", "read", "write", "deny"]))
    return Policy(**values)  # type: ignore[arg-type]


def _to_hcl(p: Policy) -> str:
    lines = []
    for resource, attr in LABELLED:
        for rule in getattr(p, attr):
            body = f"policy = {json.dumps(rule.policy)}"
            if rule.intentions:
                body += f"\n  intentions = {json.dumps(rule.intentions)}"
            lines.append(f"{resource} {json.dumps(rule.name, ensure_ascii=False)} {{\n  {body}\n}}")
    lines += [f"{r} = {json.dumps(getattr(p, r))}" for r in UNLABELLED]
    return "\n".join(lines)


def _to_json(p: Policy) -> str:
    doc: dict[str, object] = {r: getattr(p, r) for r in UNLABELLED}
    for resource, attr in LABELLED:
        rules = getattr(p, attr)
        if rules:
            doc[resource] = {
                r.name: {
                    "policy": r.policy,
                    **({"intentions": r.intentions} if r.intentions else {}),
                }
                for r in rules
            }
    return json.dumps(doc)


@settings(max_examples=150, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
@given(policies())
def test_valid_policies_round_trip_through_hcl_and_json(policy: Policy) -> None:
    assert parse_rules(_to_hcl(policy)) == policy
    assert parse_rules(_to_json(policy)) == policy
