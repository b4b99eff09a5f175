"""Catalog, health, sessions and coordinates of the state store (Consul 0.7 catalog.go,
session.go, coordinate.go)."""

from __future__ import annotations

from typing import Any

import pytest

from agent.state.store import StateError, StateStore


def register(st: StateStore, idx: int, node: str = "n1", **kw: Any) -> None:
    st.ensure_registration(idx, {"Node": node, "Address": f"10.0.0.{len(node)}", **kw})


def web(st: StateStore, idx: int, node: str, tags: list[str], status: str = "passing") -> None:
    register(
        st,
        idx,
        node,
        Service={"ID": "web1", "Service": "web", "Tags": tags, "Port": 80},
        Checks=[
            {"CheckID": "serfHealth", "Name": "Serf Health Status", "Status": "passing"},
            {"CheckID": "web-alive", "Name": "web", "ServiceID": "web1", "Status": status},
        ],
    )


def test_register_node_service_checks() -> None:
    st = StateStore()
    web(st, 3, "n1", ["v1", "Primary"])
    idx, nodes = st.nodes()
    assert idx == 3
    assert nodes == [
        {
            "ID": "",
            "Node": "n1",
            "Address": "10.0.0.2",
            "TaggedAddresses": {},
            "Meta": {},
            "CreateIndex": 3,
            "ModifyIndex": 3,
        }
    ]
    assert st.services() == (3, {"web": ["Primary", "v1"]})
    _, checks = st.node_checks("n1")
    assert [(c["CheckID"], c["ServiceName"], c["Status"]) for c in checks] == [
        ("serfHealth", "", "passing"),
        ("web-alive", "web", "passing"),
    ]
    # re-registering the same thing changes no index (anti-entropy must not churn watchers)
    web(st, 9, "n1", ["v1", "Primary"])
    assert st.table_index("nodes", "services", "checks") == 3


def test_register_is_all_or_nothing() -> None:
    st = StateStore()
    with pytest.raises(StateError, match="Missing service registration"):
        register(st, 1, Checks=[{"CheckID": "c", "ServiceID": "nope"}])
    assert st.nodes() == (0, [])
    with pytest.raises(StateError, match="Missing node registration"):
        register(st, 2, Checks=[{"CheckID": "c", "Node": "other"}])
    assert st.nodes() == (0, [])
    with pytest.raises(StateError, match="Must provide node"):
        st.ensure_registration(3, {"Node": "", "Address": "x"})


def test_check_status_defaults_to_critical() -> None:
    st = StateStore()
    register(st, 1, Check={"CheckID": "c1", "Name": "c1"})
    assert st.checks_in_state("critical")[1][0]["CheckID"] == "c1"
    assert st.checks_in_state("passing")[1] == []
    assert len(st.checks_in_state("any")[1]) == 1


def test_service_nodes_tag_filter_case_insensitive_and_health() -> None:
    st = StateStore()
    web(st, 1, "n1", ["v1"])
    web(st, 2, "n2", ["V2"], status="critical")
    idx, sn = st.service_nodes("web")
    assert idx == 2 and [s["Node"] for s in sn] == ["n1", "n2"]
    assert sn[0]["ServicePort"] == 80 and sn[0]["ServiceTags"] == ["v1"]
    assert [s["Node"] for s in st.service_nodes("web", "v2")[1]] == ["n2"]
    _, csn = st.check_service_nodes("web")
    assert [len(c["Checks"]) for c in csn] == [2, 2]
    _, passing = st.check_service_nodes("web", passing_only=True)
    assert [c["Node"]["Node"] for c in passing] == ["n1"]
    assert [c["Node"] for c in st.service_checks("web")[1]] == ["n1", "n2"]
    idx, ns = st.node_services("n2")
    assert ns is not None and list(ns["Services"]) == ["web1"] and ns["Node"]["Node"] == "n2"
    assert st.node_services("nope")[1] is None


def test_deregister_service_removes_its_checks_and_node_removes_everything() -> None:
    st = StateStore()
    web(st, 1, "n1", [])
    st.coordinate_batch_update(2, [{"Node": "n1", "Coord": {"Vec": [0.1], "Error": 1.5}}])
    st.deregister(3, {"Node": "n1", "ServiceID": "web1"})
    assert [c["CheckID"] for c in st.node_checks("n1")[1]] == ["serfHealth"]
    assert st.services() == (3, {})
    st.deregister(4, {"Node": "n1"})
    assert st.nodes() == (4, [])
    assert st.node_checks("n1") == (4, [])
    assert st.coordinates() == (4, [])


def test_session_create_validation() -> None:
    st = StateStore()
    with pytest.raises(StateError, match="Missing node registration"):
        st.session_create(1, {"ID": "s", "Node": "n1"})
    register(st, 2, Check={"CheckID": "bad", "Status": "critical"})
    with pytest.raises(StateError, match="Missing check 'serfHealth' registration"):
        st.session_create(3, {"ID": "s", "Node": "n1", "Checks": ["serfHealth"]})
    with pytest.raises(StateError, match="Check 'bad' is in critical state"):
        st.session_create(3, {"ID": "s", "Node": "n1", "Checks": ["bad"]})
    assert st.session_create(4, {"ID": "s", "Node": "n1", "Checks": []}) == "s"
    sess = st.session_get("s")[1]
    assert sess is not None and sess["Behavior"] == "release" and sess["CreateIndex"] == 4
    assert [s["ID"] for s in st.node_sessions("n1")[1]] == ["s"]
    assert st.node_sessions("n2")[1] == []


def test_session_invalidated_when_check_goes_critical() -> None:
    st = StateStore()
    register(st, 1, Check={"CheckID": "serfHealth", "Status": "passing"})
    st.session_create(2, {"ID": "s", "Node": "n1", "Checks": ["serfHealth"]})
    st.kvs_apply(3, "lock", {"Key": "lk", "Session": "s"})
    register(st, 4, Check={"CheckID": "serfHealth", "Status": "warning"})
    assert st.session_get("s")[1] is not None
    register(st, 5, Check={"CheckID": "serfHealth", "Status": "critical"})
    assert st.session_get("s") == (5, None)
    ent = st.kvs_get("lk")[1]
    assert ent is not None and ent["Session"] == "" and ent["ModifyIndex"] == 5


def test_session_invalidated_when_check_or_node_deregistered() -> None:
    st = StateStore()
    register(st, 1, Check={"CheckID": "c", "Status": "passing"})
    st.session_create(2, {"ID": "a", "Node": "n1", "Checks": ["c"]})
    st.session_create(3, {"ID": "b", "Node": "n1", "Checks": []})
    st.deregister(4, {"Node": "n1", "CheckID": "c"})
    assert [s["ID"] for s in st.session_list()[1]] == ["b"]
    st.deregister(5, {"Node": "n1"})
    assert st.session_list() == (5, [])


def test_coordinates_for_unknown_nodes_are_dropped() -> None:
    st = StateStore()
    register(st, 1)
    st.coordinate_batch_update(
        2,
        [
            {
                "Node": "n1",
                "Coord": {"Vec": [1.0, 2.0], "Error": 0.5, "Adjustment": 0.0, "Height": 1e-5},
            },
            {"Node": "ghost", "Coord": {"Vec": [1.0]}},
            "garbage",
        ],
    )
    idx, coords = st.coordinates()
    assert idx == 2 and [c["Node"] for c in coords] == ["n1"]
    assert st.coordinate("n1") == {
        "Vec": [1.0, 2.0],
        "Error": 0.5,
        "Adjustment": 0.0,
        "Height": 1e-5,
    }


def test_node_meta_filter() -> None:
    st = StateStore()
    register(st, 1, "a", NodeMeta={"rack": "r1"})
    register(st, 2, "b", NodeMeta={"rack": "r2"})
    assert [n["Node"] for n in st.nodes({"rack": "r2"})[1]] == ["b"]


def test_registration_without_meta_keeps_the_stored_meta() -> None:
    st = StateStore()
    register(st, 1, "a", ID="id-a", TaggedAddresses={"wan": "1.2.3.4"}, NodeMeta={"rack": "r1"})
    # the leader's reconcile: only ID/Address and the serfHealth check
    register(st, 2, "a", Check={"CheckID": "serfHealth", "Status": "passing"})
    node = st.get_node("a")
    assert node is not None
    assert (node["ID"], node["TaggedAddresses"], node["Meta"]) == (
        "id-a",
        {"wan": "1.2.3.4"},
        {"rack": "r1"},
    )
    assert st.table_index("nodes") == 1
    register(st, 3, "a", TaggedAddresses={}, NodeMeta={})
    node = st.get_node("a")
    assert node is not None and node["TaggedAddresses"] == {} and node["Meta"] == {}


def test_service_renamed_in_place_moves_between_names() -> None:
    st = StateStore()
    register(st, 1, Service={"ID": "s1", "Service": "old"})
    register(st, 2, Service={"ID": "s1", "Service": "new"})
    assert st.service_nodes("old")[1] == []
    assert [s["ServiceID"] for s in st.service_nodes("new")[1]] == ["s1"]
    # a failed registration rolls the name index back too
    with pytest.raises(StateError):
        register(
            st,
            3,
            Service={"ID": "s1", "Service": "newer"},
            Check={"CheckID": "c", "ServiceID": "x"},
        )
    assert [s["ServiceID"] for s in st.service_nodes("new")[1]] == ["s1"]
    assert st.service_nodes("newer")[1] == []
    st.deregister(4, {"Node": "n1", "ServiceID": "s1"})
    assert st.service_nodes("new")[1] == []
