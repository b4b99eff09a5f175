"""The rolling-restart order, a pure function of the observed cluster."""

from __future__ import annotations

import pytest

from provision.rolling import ObservedNode, PlanRefused, Role, Step, plan_rolling

S, C = Role.SERVER, Role.CLIENT


def cluster(leader: str = "s2", dead: tuple[str, ...] = ()) -> list[ObservedNode]:
    out = [
        ObservedNode(n, "dc1", S, alive=n not in dead, leader=n == leader)
        for n in ("s1", "s2", "s3")
    ]
    out += [ObservedNode(n, "dc1", C, alive=n not in dead) for n in ("c1", "c2", "c3")]
    return out


ALL = {"s1", "s2", "s3", "c1", "c2", "c3"}


def test_servers_first_followers_first_leader_last_then_clients() -> None:
    plan = plan_rolling(cluster(leader="s1"), ALL)
    assert plan.order == ["s2", "s3", "s1", "c1", "c2", "c3"]
    assert plan.steps[2] == Step("dc1", S, ("s1",), transfer_leadership=True)
    assert not any(s.transfer_leadership for s in plan.steps if s.nodes != ("s1",))
    assert plan.unchanged == ()


def test_serial_batches_clients_but_never_servers() -> None:
    plan = plan_rolling(cluster(), ALL, serial=2)
    assert [s.nodes for s in plan.steps] == [("s1",), ("s3",), ("s2",), ("c1", "c2"), ("c3",)]


def test_only_pending_nodes_and_leader_alone_still_transfers() -> None:
    plan = plan_rolling(cluster(leader="s3"), {"s3"})
    assert plan.steps == (Step("dc1", S, ("s3",), transfer_leadership=True),)
    assert plan.unchanged == ("s1", "s2", "c1", "c2", "c3")


def test_nothing_pending_is_an_empty_plan() -> None:
    assert plan_rolling(cluster(), set()).steps == ()


def test_two_datacenters_servers_of_both_before_any_client() -> None:
    nodes = [
        *cluster(leader="s1"),
        ObservedNode("t1", "dc2", S, alive=True, leader=True),
        ObservedNode("t2", "dc2", S, alive=True),
        ObservedNode("d1", "dc2", C, alive=True),
    ]
    plan = plan_rolling(nodes, ALL | {"t1", "t2", "d1"})
    assert plan.order == ["s2", "s3", "s1", "t2", "t1", "c1", "c2", "c3", "d1"]


def test_refuses_a_degraded_cluster_with_every_reason() -> None:
    nodes = cluster(leader="", dead=("s3", "c2"))
    with pytest.raises(PlanRefused) as info:
        plan_rolling(nodes, ALL)
    assert info.value.reasons == [
        "dc1: server s3 is not alive",
        "dc1: no leader",
        "dc1: client c2 is not alive",
    ]


def test_two_leaders_refused() -> None:
    nodes = [ObservedNode(n, "dc1", S, alive=True, leader=True) for n in ("s1", "s2")]
    with pytest.raises(PlanRefused, match="more than one leader"):
        plan_rolling(nodes, {"s1"})


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="serial must be at least 1"):
        plan_rolling(cluster(), ALL, serial=0)
    with pytest.raises(ValueError, match="not observed: zz"):
        plan_rolling(cluster(), {"zz"})
