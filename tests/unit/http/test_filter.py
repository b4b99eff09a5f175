"""`?filter=` expressions (agent/http/filter.py): Consul's filtering docs' examples, every
operator both ways, precedence, go-bexpr's error texts and positions, RE2, the bounds, and a
fuzz that random text only ever costs a FilterError."""

from __future__ import annotations

import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.filter import (
    MAX_FILTER_DEPTH,
    MAX_FILTER_LENGTH,
    Filter,
    FilterError,
    filter_dict,
    filter_list,
    parse_filter,
)

PREFIX = "Failed to create boolean expression evaluator: "

# ---------------------------------------------------------------- Consul's docs' data

# /v1/agent/services, as the filtering page shows it
AGENT_SERVICES: dict[str, dict[str, Any]] = {
    "redis1": {
        "ID": "redis1",
        "Service": "redis",
        "Tags": ["primary", "production"],
        "Meta": {"env": "production", "foo": "bar"},
        "Port": 1234,
        "Address": "",
        "Weights": {"Passing": 1, "Warning": 1},
        "EnableTagOverride": False,
    },
    "redis2": {
        "ID": "redis2",
        "Service": "redis",
        "Tags": ["secondary", "production"],
        "Meta": {"env": "production", "foo": "bar"},
        "Port": 1235,
        "Address": "",
        "Weights": {"Passing": 1, "Warning": 1},
        "EnableTagOverride": False,
    },
    "redis3": {
        "ID": "redis3",
        "Service": "redis",
        "Tags": ["primary", "qa"],
        "Meta": {"env": "qa"},
        "Port": 1234,
        "Address": "",
        "Weights": {"Passing": 1, "Warning": 1},
        "EnableTagOverride": False,
    },
}


def _service_node(node: str, address: str, meta: dict[str, str], tags: list[str], env: str) -> Any:
    return {
        "ID": f"id-{node}",
        "Node": node,
        "Address": address,
        "Datacenter": "dc1",
        "TaggedAddresses": None,
        "NodeMeta": meta,
        "ServiceKind": "",
        "ServiceID": "api-internal",
        "ServiceName": "api-internal",
        "ServiceTags": tags,
        "ServiceAddress": "",
        "ServiceWeights": {"Passing": 1, "Warning": 1},
        "ServiceMeta": {"environment": env},
        "ServicePort": 9090,
        "ServiceEnableTagOverride": False,
        "ServiceProxy": {},
        "ServiceConnect": {},
        "CreateIndex": 30,
        "ModifyIndex": 30,
    }


# /v1/catalog/service/api-internal
CATALOG_SERVICE = [
    _service_node(
        "node-1", "198.18.0.1", {"agent": "true", "arch": "i386", "os": "darwin"}, ["tag"], "qa"
    ),
    _service_node(
        "node-2", "198.18.0.2", {"arch": "arm", "os": "linux"}, ["test", "tag"], "production"
    ),
    _service_node("node-4", "198.18.0.4", {"arch": "i386", "os": "freebsd"}, [], "qa"),
]

# /v1/health/node/node-1
HEALTH_NODE = [
    {
        "Node": "node-1",
        "CheckID": "node-health",
        "Name": "Node level check",
        "Status": "critical",
        "Notes": "",
        "Output": "",
        "ServiceID": "",
        "ServiceName": "",
        "ServiceTags": [],
        "Definition": {},
        "CreateIndex": 13,
        "ModifyIndex": 13,
    },
    {
        "Node": "node-1",
        "CheckID": "svc-web-health",
        "Name": "Service level check - web",
        "Status": "warning",
        "Notes": "",
        "Output": "",
        "ServiceID": "",
        "ServiceName": "web",
        "ServiceTags": [],
        "Definition": {},
        "CreateIndex": 18,
        "ModifyIndex": 18,
    },
]

# one /v1/health/service/:service entry
HEALTH_ENTRY: dict[str, Any] = {
    "Node": {
        "ID": "40e4a748-2192-161a-0510-9bf59fe950b5",
        "Node": "node-1",
        "Address": "10.0.0.1",
        "Datacenter": "dc1",
        "TaggedAddresses": {"lan": "10.0.0.1", "wan": "10.0.0.1"},
        "Meta": {"instance_type": "t2.medium", "rack": "r1"},
    },
    "Service": {
        "ID": "redis",
        "Service": "redis",
        "Tags": ["primary", "v1"],
        "Address": "10.1.10.12",
        "Meta": {"redis_version": "4.0", "a.b": "dotted"},
        "Port": 8000,
        "Weights": {"Passing": 10, "Warning": 1},
        "EnableTagOverride": True,
        "Proxy": None,
    },
    "Checks": [
        {
            "Node": "node-1",
            "CheckID": "service:redis",
            "Status": "passing",
            "ServiceTags": ["primary"],
        },
        {"Node": "node-1", "CheckID": "serfHealth", "Status": "critical", "ServiceTags": []},
    ],
}


# ---------------------------------------------------------------- the docs' examples


def test_docs_agent_services_example() -> None:
    assert list(filter_dict(parse_filter('Meta.env == "qa"'), AGENT_SERVICES)) == ["redis3"]


def test_docs_catalog_example() -> None:
    kept = filter_list(parse_filter('NodeMeta.os == "linux"'), CATALOG_SERVICE)
    assert [n["Node"] for n in kept] == ["node-2"]


def test_docs_health_example() -> None:
    kept = filter_list(parse_filter('ServiceName != ""'), HEALTH_NODE)
    assert [c["CheckID"] for c in kept] == ["svc-web-health"]


DOCS_CASES: list[tuple[str, list[str]]] = [
    # the selectors section: both spellings of a map key
    ("Meta.foo == bar", ["redis1", "redis2"]),
    ('Meta["foo"] == bar', ["redis1", "redis2"]),
    # the operators section, one of each
    ('Tags contains "primary"', ["redis1", "redis3"]),
    ('"primary" in Tags', ["redis1", "redis3"]),
    ('"primary" not in Tags', ["redis2"]),
    ('Tags not contains "primary"', ["redis2"]),
    ("Meta.foo is empty", ["redis3"]),
    ("Meta.foo is not empty", ["redis1", "redis2"]),
    ("Meta is not empty", ["redis1", "redis2", "redis3"]),
    ('ID matches "^redis[12]$"', ["redis1", "redis2"]),
    ('ID not matches "^redis[12]$"', ["redis3"]),
    ('Service == "redis" and Port == 1234', ["redis1", "redis3"]),
    ("Port != 1234", ["redis2"]),
    ('Meta.env == "qa" or Tags contains "secondary"', ["redis2", "redis3"]),
    ('not Meta.env == "qa"', ["redis1", "redis2"]),
    ("( Meta.env == qa )", ["redis3"]),
    ("EnableTagOverride == false", ["redis1", "redis2", "redis3"]),
    ("Weights.Passing == 1", ["redis1", "redis2", "redis3"]),
    # values: a bare selector is its text, backticks are raw
    ("Meta.env == production", ["redis1", "redis2"]),
    ("Meta.env == `qa`", ["redis3"]),
]


@pytest.mark.parametrize(("expression", "expected"), DOCS_CASES)
def test_docs_operators_on_agent_services(expression: str, expected: list[str]) -> None:
    assert list(filter_dict(parse_filter(expression), AGENT_SERVICES)) == expected


# the docs' precedence example: `E1 and not E2 or E3` is `(E1 and (not E2)) or E3`
@pytest.mark.parametrize("e1", [True, False])
@pytest.mark.parametrize("e2", [True, False])
@pytest.mark.parametrize("e3", [True, False])
def test_precedence_not_and_or(e1: bool, e2: bool, e3: bool) -> None:
    obj = {"a": e1, "b": e2, "c": e3}
    bare = parse_filter("a == true and not b == true or c == true")
    grouped = parse_filter("( a == true and (not b == true )) or c == true")
    assert bare.match(obj) is grouped.match(obj) is ((e1 and not e2) or e3)


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        # and before or, both ways round
        ("a == 1 or a == 2 and b == 3", True),  # a == 1 or (a == 2 and b == 3)
        ("(a == 1 or a == 2) and b == 3", False),
        ("b == 3 and a == 2 or a == 1", True),
        ("b == 3 and (a == 2 or a == 1)", False),
        # not before and
        ("not a == 2 and b == 4", True),  # (not a == 2) and b == 4
        ("not (a == 1 and b == 4)", False),
        ("not not a == 1", True),
        ("not not not a == 1", False),
        ("a == 2 or a == 3 or b == 4", True),
        ("a == 1 and b == 4 and c == 5", False),
    ],
)
def test_precedence(expression: str, expected: bool) -> None:
    assert parse_filter(expression).match({"a": 1, "b": 4}) is expected


# ---------------------------------------------------------------- every operator, both ways

OPERATOR_CASES: list[tuple[str, bool]] = [
    # == and != on strings, numbers, bools
    ("Service.Service == redis", True),
    ("Service.Service == memcached", False),
    ("Service.Service != memcached", True),
    ("Service.Service != redis", False),
    ("Service.Port == 8000", True),
    ("Service.Port == 8001", False),
    ("Service.Port != 8001", True),
    ("Service.Port != 8000", False),
    ('Service.Port == "8000"', True),  # the literal is read as the field's type
    ('Service.Port == "0x1F40"', True),  # strconv.ParseInt with base prefixes
    ('Service.Port == "0o17500"', True),
    ('Service.Port == "017500"', True),  # Go's leading-zero octal
    ('Service.Port == "8_000"', True),
    ("Service.Port == 8000.0", True),  # numbers compare as numbers
    ("Service.EnableTagOverride == true", True),
    ("Service.EnableTagOverride == True", True),
    ("Service.EnableTagOverride == 1", True),
    ("Service.EnableTagOverride == t", True),
    ("Service.EnableTagOverride == false", False),
    ("Service.EnableTagOverride != false", True),
    ("Service.EnableTagOverride != true", False),
    ('Service.Meta.redis_version == "4.0"', True),
    ("Service.Meta.redis_version == 4.0", True),  # a number literal is its text for a string
    ("Service.Meta.redis_version == 4", False),
    # contains / in on lists
    ("Service.Tags contains primary", True),
    ("Service.Tags contains secondary", False),
    ("Service.Tags not contains secondary", True),
    ("Service.Tags not contains primary", False),
    ("primary in Service.Tags", True),
    ("secondary in Service.Tags", False),
    ("secondary not in Service.Tags", True),
    ("primary not in Service.Tags", False),
    # ... substring on strings
    ("Service.Address contains 10.1", True),
    ('"10.2" in Service.Address', False),
    ('"10.2" not in Service.Address', True),
    ("Service.Address not contains 10", False),
    # ... key membership on maps
    ("Node.Meta contains rack", True),
    ("r1 in Node.Meta", False),  # keys, not values
    ("rack not in Node.Meta", False),
    ("Node.TaggedAddresses not contains lan_ipv6", True),
    # is empty / is not empty on strings, lists, maps
    ("Service.Tags is empty", False),
    ("Service.Tags is not empty", True),
    ("Checks is not empty", True),
    ("Service.Meta is empty", False),
    ("Node.Meta is not empty", True),
    ("Service.Address is empty", False),
    ("Service.Address is not empty", True),
    ("Service.Proxy is empty", True),  # null is empty
    ("Service.Proxy is not empty", False),
    # matches / not matches: RE2, unanchored like Go's regexp.Match
    ('Service.Address matches "^10\\\\.1\\\\."', True),
    ("Service.Address matches `^10\\.1\\.`", True),
    ("Service.Address matches `\\.12$`", True),
    ("Service.Address matches `^192`", False),
    ("Service.Address not matches `^192`", True),
    ("Service.Address not matches `10`", False),
    ("Node.Node matches node", True),  # a bare selector value is the pattern's text
    ("Service.Meta.redis_version matches 4.0", True),
    # map keys: index form for keys that are no selector
    ('Service.Meta["a.b"] == dotted', True),
    ("Service.Meta[`a.b`] != dotted", False),
    ('Service["Meta"]["redis_version"] == "4.0"', True),
    # a list met on the way is searched: any element
    ("Checks.Status == critical", True),
    ("Checks.Status == warning", False),
    ("Checks.Status != passing", True),  # the serfHealth check is not passing
    ("Checks.CheckID == serfHealth and Checks.Status == passing", True),  # each asks any
    ("Checks.ServiceTags contains primary", True),
    ("Checks.ServiceTags is empty", True),  # serfHealth's list is
    ("Checks.Output is empty", True),  # missing in both: missing is empty
]


@pytest.mark.parametrize(("expression", "expected"), OPERATOR_CASES)
def test_operators(expression: str, expected: bool) -> None:
    assert parse_filter(expression).match(HEALTH_ENTRY) is expected


def test_every_operator_both_ways() -> None:
    """Each operator at least once true and once false, in the table above."""
    words = [
        " == ",
        " != ",
        " contains ",
        " not contains ",
        " in ",
        " not in ",
        " matches ",
        " not matches ",
        " is empty",
        " is not empty",
    ]
    for word in words:
        outcomes = {
            expected
            for expression, expected in OPERATOR_CASES
            if word in expression
            and not (word == " in " and " not in " in expression)
            and not (word == " contains " and " not contains " in expression)
            and not (word == " matches " and " not matches " in expression)
        }
        assert outcomes == {True, False}, word


# ---------------------------------------------------------------- missing fields


MISSING_CASES: list[tuple[str, bool]] = [
    # a missing key in a map: go-bexpr's NotPresentDisposition
    ("Service.Meta.nope == x", False),
    ("Service.Meta.nope != x", True),
    ("x in Service.Meta.nope", False),
    ("x not in Service.Meta.nope", True),
    ("Service.Meta.nope contains x", False),
    ("Service.Meta.nope not contains x", True),
    ("Service.Meta.nope is empty", True),
    ("Service.Meta.nope is not empty", False),
    ('Service.Meta.nope matches ".*"', False),
    ('Service.Meta.nope not matches ".*"', True),
    # the same for a field the object does not have (go-bexpr: a schema error)
    ("Nope == x", False),
    ("Nope != x", True),
    ("not Nope == x", True),
    ("Nope.Deeper is empty", True),
    # a scalar where a map was needed, and a null on the way
    ("Service.Port.x == 1", False),
    ("Service.Port.x != 1", True),
    ("Service.Proxy.Mode == direct", False),
    ("Service.Proxy.Mode != direct", True),
    # names are case-sensitive (go-bexpr: struct field names and map keys as written)
    ("service.tags contains primary", False),
    ("Service.tags contains primary", False),
    ("Service.Meta.REDIS_VERSION == 4.0", False),
]


@pytest.mark.parametrize(("expression", "expected"), MISSING_CASES)
def test_missing_fields(expression: str, expected: bool) -> None:
    assert parse_filter(expression).match(HEALTH_ENTRY) is expected


def test_a_list_with_nothing_in_it_matches_nothing() -> None:
    # go-bexpr v0.1.2 searches a list met on the way: with no element, every operator is false
    entry: dict[str, list[Any]] = {"Checks": []}
    for expression in (
        "Checks.Status == passing",
        "Checks.Status != passing",
        "Checks.Status is empty",
    ):
        assert parse_filter(expression).match(entry) is False, expression
    assert parse_filter("Checks is empty").match(entry) is True


def test_lists_of_lists_are_searched_through() -> None:
    assert parse_filter("a.b == 2").match({"a": [[{"b": 1}], [{"b": 2}]]}) is True
    assert parse_filter("a.b == 3").match({"a": [[{"b": 1}], [{"b": 2}]]}) is False


def test_in_on_lists_compares_as_the_element_type() -> None:
    assert parse_filter("3 in Ports").match({"Ports": [1, 3]}) is True
    assert parse_filter('"3" in Ports').match({"Ports": [1, 3]}) is True
    assert parse_filter("true in Flags").match({"Flags": [False, True]}) is True
    assert parse_filter("2 not in Ports").match({"Ports": [1, 3]}) is True
    assert parse_filter("x in Tags").match({"Tags": [None, "x"]}) is True


def test_floats() -> None:
    obj = {"Coord": {"Vec": [0.5, 1.0], "Height": 1.5e-05, "Adjustment": 0.0}}
    assert parse_filter("Coord.Height == 0.000015").match(obj) is True
    assert parse_filter('Coord.Height == "1.5e-05"').match(obj) is True
    assert parse_filter("Coord.Adjustment == 0").match(obj) is True
    assert parse_filter("0.5 in Coord.Vec").match(obj) is True
    assert parse_filter("Coord.Adjustment != 0.25").match(obj) is True


def test_strings_and_escapes() -> None:
    obj = {"s": "a\tb", "u": "é", "q": 'say "hi"', "back": "a`b", "nl": "x\ny"}
    assert parse_filter('s == "a\\tb"').match(obj) is True
    assert parse_filter("s == `a\\tb`").match(obj) is False  # raw: no escapes
    assert parse_filter("s == `a\tb`").match(obj) is True
    assert parse_filter('u == "\\u00e9"').match(obj) is True
    assert parse_filter('u == "\\xc3\\xa9"').match(obj) is True  # bytes, as Go's escapes are
    assert parse_filter('u == "\\303\\251"').match(obj) is True
    assert parse_filter('u == "\\U000000e9"').match(obj) is True
    assert parse_filter('q == `say "hi"`').match(obj) is True  # the only way to a `"`
    assert parse_filter('back == "a`b"').match(obj) is True
    assert parse_filter('nl == "x\\ny"').match(obj) is True
    assert parse_filter("nl == `x\r\ny`").match(obj) is True  # Go drops \r from raw strings
    assert parse_filter('s == "\\xff"').match(obj) is False  # not UTF-8: equals nothing


def test_selector_values_are_their_text() -> None:
    assert parse_filter("x == a.b").match({"x": "a.b"}) is True
    assert parse_filter('x == a["b c"]').match({"x": "a.b c"}) is True
    # keywords are names wherever an operator cannot stand
    assert parse_filter("x == and and y == or").match({"x": "and", "y": "or"}) is True
    assert parse_filter("in in Tags").match({"Tags": ["in"]}) is True
    assert parse_filter("Meta.not == contains").match({"Meta": {"not": "contains"}}) is True
    assert parse_filter("notes == 1").match({"notes": 1}) is True


def test_empty_expression_matches_everything() -> None:
    flt = parse_filter("")
    assert flt.match({}) and flt.match(None) and flt.match([1])
    assert filter_list(flt, [1, 2]) == [1, 2]


def test_filter_helpers() -> None:
    flt = parse_filter("Port == 1234")
    assert isinstance(flt, Filter) and flt.expression == "Port == 1234"
    assert flt(AGENT_SERVICES["redis1"]) is True
    assert filter_list(None, iter([3, 1])) == [3, 1]
    assert filter_dict(None, {"a": 1}) == {"a": 1}
    assert list(filter_dict(flt, AGENT_SERVICES)) == ["redis1", "redis3"]
    assert [s["ID"] for s in filter_list(flt, AGENT_SERVICES.values())] == ["redis1", "redis3"]


def test_whitespace_and_newlines() -> None:
    flt = parse_filter("\n\t(  Port  ==1234\r\nand\tService==redis )  ")
    assert flt.match(AGENT_SERVICES["redis1"]) is True
    assert parse_filter("Port==1234").match(AGENT_SERVICES["redis2"]) is False


# ---------------------------------------------------------------- errors

# go-bexpr's own grammar tests (grammar_test.go, v0.1.2) and Consul's issue #7338
SYNTAX_ERRORS: list[tuple[str, str]] = [
    (
        "foo",
        '1:4 (3): no match found, expected: "!=", ".", "==", "[", [ \\t\\r\\n] or [a-zA-Z0-9_]',
    ),
    ('foo == "12x', '1:12 (11): rule "string": Unterminated string literal'),
    ("foo == `12x", '1:12 (11): rule "string": Unterminated string literal'),
    ("foo == 3x", '1:9 (8): rule "number": Invalid number literal'),
    ("foo[3] == abc", '1:5 (4): rule "index": Invalid index'),
    ('x in foo["abc"', '1:15 (14): rule "index": Unclosed index expression'),
    ('foo["abc" == 3', '1:11 (10): rule "index": Unclosed index expression'),
    ("x in 32", '1:6 (5): rule "match": Invalid selector'),
    (
        "x in foo and ",
        '1:14 (13): no match found, expected: "(", "-", "0", "\\"", "`", "not", [ \\t\\r\\n], [1-9] or [a-zA-Z]',
    ),
    (
        "x in foo or ",
        '1:13 (12): no match found, expected: "(", "-", "0", "\\"", "`", "not", [ \\t\\r\\n], [1-9] or [a-zA-Z]',
    ),
    ("(foo == 4", '1:10 (9): rule "grouping": Unmatched parentheses'),
    # more of the same rules
    ("a == 01", '1:7 (6): rule "number": Invalid number literal'),
    ("a == 1.", '1:7 (6): rule "number": Invalid number literal'),
    ("a == 1e5", '1:7 (6): rule "number": Invalid number literal'),
    ('a == "x\\"y"', '1:6 (5): rule "string": invalid syntax'),  # `"x\"` ends at the 2nd `"`
    ('a == "\\q"', '1:6 (5): rule "string": invalid syntax'),
    ('a == "\\ud800"', '1:6 (5): rule "string": invalid syntax'),
    ("(a == b c", '1:9 (8): rule "grouping": Unmatched parentheses'),
    ("x in ", '1:6 (5): rule "match": Invalid selector'),
    ("a == 1)", "1:7 (6): no match found, expected: [ \\t\\r\\n] or EOF"),
    ("a == 1 b", '1:8 (7): no match found, expected: "and", "or", [ \\t\\r\\n] or EOF'),
    (
        '"/Service/Tags" contains x',
        '1:17 (16): no match found, expected: "in", "not" or [ \\t\\r\\n]',
    ),
    ("a == b.", "1:8 (7): no match found, expected: [a-zA-Z]"),
    ("a == -x", '1:7 (6): no match found, expected: "0" or [1-9]'),
    (
        "   ",
        '1:4 (3): no match found, expected: "(", "-", "0", "\\"", "`", "not", [ \\t\\r\\n], [1-9] or [a-zA-Z]',
    ),
    # the word operators need whitespace around them, as the PEG's `_ "and" _`
    ("a==1 and(b==2)", "1:9 (8): no match found, expected: [ \\t\\r\\n]"),
    ('"x"in Tags', "1:4 (3): no match found, expected: [ \\t\\r\\n]"),
    ("x in", "1:5 (4): no match found, expected: [ \\t\\r\\n]"),
    ("not(a == 1)", "1:4 (3): no match found, expected: [ \\t\\r\\n]"),
    ("a == 1 andx == 2", "1:11 (10): no match found, expected: [ \\t\\r\\n]"),
    # and none around `.`, none before `[`
    ("a. b == 1", "1:3 (2): no match found, expected: [a-zA-Z]"),
    (
        "a .b == 1",
        '1:3 (2): no match found, expected: "!=", "==", "contains", "in", "is", "matches", "not" or [ \\t\\r\\n]',
    ),
    # positions: line:column, a newline is column 0 of the next line, offsets count bytes
    (
        "a ==\n",
        '2:1 (5): no match found, expected: "-", "0", "\\"", "`", [ \\t\\r\\n], [1-9] or [a-zA-Z]',
    ),
    (
        "é == 1",
        '1:1 (0): no match found, expected: "(", "-", "0", "\\"", "`", "not", [ \\t\\r\\n], [1-9] or [a-zA-Z]',
    ),
    ('a == "é', '1:8 (8): rule "string": Unterminated string literal'),
]


@pytest.mark.parametrize(("expression", "detail"), SYNTAX_ERRORS)
def test_syntax_errors(expression: str, detail: str) -> None:
    with pytest.raises(FilterError) as caught:
        parse_filter(expression)
    assert caught.value.detail == detail
    assert str(caught.value) == PREFIX + detail


def test_error_position_is_the_character_index() -> None:
    with pytest.raises(FilterError) as caught:
        parse_filter("Service.Tags contains")
    assert caught.value.position == len("Service.Tags contains")
    assert caught.value.detail.startswith("1:22 (21): ")


def test_invalid_regex_is_refused_when_parsed() -> None:
    with pytest.raises(FilterError) as caught:
        parse_filter('Name matches "("')
    assert str(caught.value) == (
        PREFIX + 'Failed to compile regular expression "(": error parsing regexp: missing ): ('
    )
    for pattern in ("`(a)\\1`", "`a{1001}`", "`(?<!x)y`", '"\\xff"'):
        with pytest.raises(FilterError, match="Failed to compile regular expression"):
            parse_filter(f"Name matches {pattern}")


TYPE_ERRORS: list[tuple[str, str]] = [
    ("Service.Tags == primary", 'Invalid match operator "Equal" for selector "Service.Tags"'),
    ("Service.Meta != x", 'Invalid match operator "Not Equal" for selector "Service.Meta"'),
    ("Service.Port contains 8", 'Invalid match operator "In" for selector "Service.Port"'),
    (
        "Service.EnableTagOverride is empty",
        'Invalid match operator "Is Empty" for selector "Service.EnableTagOverride"',
    ),
    ("Service.Port matches 8", 'Invalid match operator "Matches" for selector "Service.Port"'),
    ("x in Checks", 'Invalid match operator "In" for selector "Checks"'),
    (
        "Service.EnableTagOverride == yes",
        'Failed to coerce value "yes" for selector "Service.EnableTagOverride":'
        ' strconv.ParseBool: parsing "yes": invalid syntax',
    ),
    (
        "Service.Port == abc",
        'Failed to coerce value "abc" for selector "Service.Port": strconv.ParseInt: parsing "abc": invalid syntax',
    ),
    (
        "Service.Port != `1 `",
        'Failed to coerce value "1 " for selector "Service.Port": strconv.ParseInt: parsing "1 ": invalid syntax',
    ),
]


@pytest.mark.parametrize(("expression", "detail"), TYPE_ERRORS)
def test_type_errors_show_when_matching(expression: str, detail: str) -> None:
    flt = parse_filter(expression)
    with pytest.raises(FilterError) as caught:
        flt.match(HEALTH_ENTRY)
    assert str(caught.value) == PREFIX + detail
    with pytest.raises(FilterError):
        filter_list(flt, [HEALTH_ENTRY])


def test_filter_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match=r"^Failed to create boolean expression evaluator: "):
        parse_filter("(")


def test_keyword_not_starts_an_operand() -> None:
    # go-bexpr's PEG backtracks and reads `not == 1` as a field named "not"; an LALR parser
    # takes `not` for the operator there (documented in the module)
    with pytest.raises(FilterError):
        parse_filter("not == 1")


# ---------------------------------------------------------------- RE2 and the bounds


def test_re2_pathological_pattern_is_linear() -> None:
    flt = parse_filter("Name matches `(a+)+$`")
    text = "a" * 5000 + "b"
    start = time.perf_counter()
    assert flt.match({"Name": text}) is False
    assert time.perf_counter() - start < 1.0
    start = time.perf_counter()
    assert parse_filter("Name matches `(x+x+)+y`").match({"Name": "x" * 5000}) is False
    assert time.perf_counter() - start < 1.0


def test_re2_on_text_with_lone_surrogates() -> None:
    assert parse_filter("Name matches `^a`").match({"Name": "a\udc80"}) is True


@pytest.mark.parametrize(
    "expression",
    ['a == "\udc80"', "a matches `\ud800`", 'a matches "\udc80"', "\ud800 == 1", "a == `\udfff"],
)
def test_lone_surrogates_in_the_expression(expression: str) -> None:
    try:
        flt = parse_filter(expression)
    except FilterError as err:
        assert str(err).startswith(PREFIX)
    else:
        assert flt.match({"a": "x"}) is False


def test_length_limit() -> None:
    at_limit = "a == " + "x" * (MAX_FILTER_LENGTH - 5)
    assert len(at_limit) == MAX_FILTER_LENGTH
    assert parse_filter(at_limit).match({"a": "x" * (MAX_FILTER_LENGTH - 5)}) is True
    with pytest.raises(FilterError, match="4097 characters long, longer than the 4096 allowed"):
        parse_filter(at_limit + "x")


def test_long_flat_expressions_are_fine() -> None:
    clause = "Meta.env == production"
    expression = " and ".join([clause] * (MAX_FILTER_LENGTH // (len(clause) + 5)))
    flt = parse_filter(expression)
    assert flt.match(AGENT_SERVICES["redis1"]) is True
    assert flt.match(AGENT_SERVICES["redis3"]) is False
    ors = " or ".join(["Port == 1"] * 300) + " or Port == 1234"
    assert parse_filter(ors).match(AGENT_SERVICES["redis1"]) is True


def test_depth_limit_parentheses() -> None:
    deepest = "(" * MAX_FILTER_DEPTH + "a == 1" + ")" * MAX_FILTER_DEPTH
    assert parse_filter(deepest).match({"a": 1}) is True
    too_deep = "(" * (MAX_FILTER_DEPTH + 1) + "a == 1" + ")" * (MAX_FILTER_DEPTH + 1)
    with pytest.raises(FilterError) as caught:
        parse_filter(too_deep)
    assert caught.value.detail == "1:65 (64): expression nested deeper than 64 levels"


def test_depth_limit_nots_and_mixed() -> None:
    assert parse_filter("not " * MAX_FILTER_DEPTH + "a == 1").match({"a": 1}) is True
    with pytest.raises(FilterError, match="nested deeper than 64 levels"):
        parse_filter("not " * (MAX_FILTER_DEPTH + 1) + "a == 1")
    with pytest.raises(FilterError, match="nested deeper than 64 levels"):
        parse_filter("(not " * 33 + "a == 1" + ")" * 33)


@pytest.mark.parametrize(
    "expression",
    [
        "(" * 2000 + "a == 1" + ")" * 2000,
        "(" * 4096,
        "not " * 1023 + "a==1",
        "not (" * 600 + "a == 1" + ")" * 600,
    ],
)
def test_huge_nesting_is_a_filter_error_not_a_recursion_error(expression: str) -> None:
    with pytest.raises(FilterError):
        parse_filter(expression[:MAX_FILTER_LENGTH])


def test_deep_data_costs_no_recursion() -> None:
    data: Any = "leaf"
    for _ in range(5000):
        data = {"a": data}
    expression = ".".join(["a"] * 1000)
    assert parse_filter(f"{expression} is not empty").match(data) is True
    nested: Any = ["x"]
    for _ in range(5000):
        nested = [nested]
    assert parse_filter("a.b == x").match({"a": nested}) is False


# ---------------------------------------------------------------- fuzz

_PIECES = [
    "(",
    ")",
    " ",
    "  ",
    "\n",
    "\t",
    ".",
    "[",
    "]",
    '"',
    "`",
    "-",
    "0",
    "1",
    "42",
    "3.5",
    "==",
    "!=",
    "and",
    "or",
    "not",
    "in",
    "is",
    "empty",
    "contains",
    "matches",
    "Service",
    "Tags",
    "Meta",
    "env",
    "Checks",
    "Status",
    "Port",
    "x",
    '"a"',
    "`b`",
    '"\\n"',
    '"\\',
    "é",
    "\x00",
    "_",
    "a.b",
    '["k"]',
    "\\",
    "(a+)+$",
    "`(`",
    "`.*`",
    "!",
    "=",
    "&&",
    "||",
]

_SAMPLES: list[Any] = [HEALTH_ENTRY, AGENT_SERVICES["redis1"], CATALOG_SERVICE[0], None, [], "x", 3]


def _exercise(text: str) -> None:
    start = time.perf_counter()
    try:
        flt = parse_filter(text)
    except FilterError:
        pass
    else:
        for sample in _SAMPLES:
            try:
                assert flt.match(sample) in (True, False)
            except FilterError:
                pass
    assert time.perf_counter() - start < 1.0


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=300))
def test_fuzz_random_text(text: str) -> None:
    _exercise(text)


@settings(max_examples=600, deadline=None)
@given(st.lists(st.sampled_from(_PIECES), max_size=60))
def test_fuzz_token_soup(pieces: list[str]) -> None:
    _exercise("".join(pieces))
    _exercise(" ".join(pieces))


_names = st.sampled_from(
    ["Service", "Tags", "Meta", "Checks", "Status", "Port", "Node", "env", "Nope"]
)
_selectors = st.lists(_names, min_size=1, max_size=4).map(".".join)
_values = st.one_of(
    st.sampled_from(["primary", "passing", "1", "8000", "true", "-2.5", '"qa"', "`x`", '"\\t"']),
    _selectors,
)


@st.composite
def _expressions(draw: st.DrawFn, depth: int = 0) -> str:
    kind = draw(st.integers(0, 5 if depth < 4 else 1))
    if kind <= 1:
        op = draw(
            st.sampled_from(["==", "!=", "contains", "not contains", "matches", "not matches"])
        )
        if draw(st.booleans()):
            return f"{draw(_values)} {draw(st.sampled_from(['in', 'not in']))} {draw(_selectors)}"
        if draw(st.booleans()):
            return f"{draw(_selectors)} {draw(st.sampled_from(['is empty', 'is not empty']))}"
        return f"{draw(_selectors)} {op} {draw(_values)}"
    if kind == 2:
        return f"not {draw(_expressions(depth + 1))}"
    if kind == 3:
        return f"({draw(_expressions(depth + 1))})"
    joiner = draw(st.sampled_from([" and ", " or "]))
    return joiner.join(draw(st.lists(_expressions(depth + 1), min_size=2, max_size=3)))


@settings(max_examples=300, deadline=None)
@given(_expressions())
def test_fuzz_well_formed_expressions_parse_and_evaluate(expression: str) -> None:
    flt = parse_filter(expression)  # every generated expression is valid
    for sample in _SAMPLES:
        try:
            assert flt.match(sample) in (True, False)
        except FilterError:
            pass
