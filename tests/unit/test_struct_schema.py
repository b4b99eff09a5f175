"""agent/schema.py against Consul's request structs (agent/structs.py): what fits, and the
message naming the field of what does not."""

from __future__ import annotations

from typing import Any

import pytest

from agent.schema import SchemaError, check, field_names
from agent.structs import HEALTH_CHECK, REGISTER_REQUEST

GOOD: dict[str, Any] = {
    "Node": "n1",
    "Address": "10.0.0.1",
    "TaggedAddresses": {"wan": "1.2.3.4"},
    "NodeMeta": {"rack": "r1"},
    "Service": {
        "ID": "web1",
        "Service": "web",
        "Tags": ["a", "b"],
        "Port": 80,
        "Weights": {"Passing": 1, "Warning": 1},
        "TaggedAddresses": {"lan": {"Address": "10.0.0.1", "Port": 80}},
        "EnableTagOverride": False,
        "Proxy": {"anything": ["goes"]},
    },
    "Checks": [{"CheckID": "c", "Status": "passing", "Definition": {"Interval": "10s"}}],
    "SkipNodeUpdate": False,
    "Unknown": {"ignored": True},  # Go's decoder ignores fields it does not know
}


def test_a_consul_registration_fits() -> None:
    check(GOOD, REGISTER_REQUEST)
    check({"Node": "n1", "Service": None, "Check": None, "Checks": None}, REGISTER_REQUEST)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"Node": 5}, "Node: expected a string, got 5"),
        ({"NodeMeta": ["x"]}, 'NodeMeta: expected a map of strings, got ["x"]'),
        ({"NodeMeta": {"k": 1}}, "NodeMeta['k']: expected a string, got 1"),
        ({"Service": {"Tags": 5}}, "Service.Tags: expected a list of strings, got 5"),
        ({"Service": {"Tags": ["a", None, 3]}}, "Service.Tags[2]: expected a string, got 3"),
        ({"Service": {"Port": "80"}}, 'Service.Port: expected an integer, got "80"'),
        ({"Service": {"Port": True}}, "Service.Port: expected an integer, got true"),
        ({"Service": {"Port": 1 << 64}}, "Service.Port: expected a 64-bit integer"),
        ({"Service": {"EnableTagOverride": "true"}}, "EnableTagOverride: expected true or false"),
        ({"Service": {"Weights": {"Passing": 1.5}}}, "Service.Weights.Passing: expected an int"),
        ({"Service": "web"}, 'Service: expected an object, got "web"'),
        ({"Checks": {"CheckID": "c"}}, "Checks: expected a list of objects"),
        ({"Checks": [{"Definition": {1: 2}}]}, "Checks[0].Definition key: expected a string"),
        ({"Service": {"Service": "x" * 100}} | {"Node": ["y" * 100]}, "Node: expected a string"),
    ],
)
def test_what_does_not_fit_is_named(change: dict[str, Any], message: str) -> None:
    with pytest.raises(SchemaError) as info:
        check({"Node": "n1", **change}, REGISTER_REQUEST)
    assert message in str(info.value)
    assert len(str(info.value)) < 140  # a long value is cut in the message


def test_the_http_layer_decodes_the_fields_this_checks() -> None:
    names = field_names(REGISTER_REQUEST)
    assert names["Node"] is None and names["TaggedAddresses"] is None
    assert names["Service"]["Weights"] == {"Passing": None, "Warning": None}
    assert names["Service"]["Proxy"] is None  # passed on whole
    assert names["Checks"] == field_names(HEALTH_CHECK)
    assert names["Checks"]["Definition"] is None
