"""The prepared-queries table and templates: Consul's integrity rules, resolution by ID,
name and longest template prefix, rendering, session-bound deletion, snapshot round trip."""

from __future__ import annotations

import re
from typing import Any

import pytest

from agent.state.commands import MessageType, encode_command
from agent.state.fsm import FSMError, StateFSM
from agent.state.query_template import TemplateError, compile_template
from agent.state.store import StateError, StateStore

QID1 = "11111111-1111-1111-1111-111111111111"
QID2 = "22222222-2222-2222-2222-222222222222"
QID3 = "33333333-3333-3333-3333-333333333333"


def query(qid: str, name: str = "", service: str = "web", **extra: Any) -> dict[str, Any]:
    return {"ID": qid, "Name": name, "Service": {"Service": service, "Tags": []}, **extra}


def template(qid: str, name: str, service: dict[str, Any], regexp: str = "") -> dict[str, Any]:
    return {
        "ID": qid,
        "Name": name,
        "Template": {"Type": "name_prefix_match", "Regexp": regexp, "RemoveEmptyTags": False},
        "Service": service,
    }


def test_names_are_unique_case_insensitively_and_never_an_id() -> None:
    st = StateStore()
    st.prepared_query_set(1, query(QID1, "Web"))
    with pytest.raises(StateError, match="name 'web' aliases an existing query name"):
        st.prepared_query_set(2, query(QID2, "web"))
    with pytest.raises(StateError, match="aliases an existing query ID"):
        st.prepared_query_set(2, query(QID2, QID1))
    st.prepared_query_set(3, query(QID1, "renamed"))  # the same query may change its name
    st.prepared_query_set(4, query(QID2, "web"))  # ... and free the old one
    assert st.prepared_query_get(QID1)[1]["CreateIndex"] == 1  # type: ignore[index]
    assert st.prepared_query_resolve("WEB")[1]["ID"] == QID2  # type: ignore[index]
    assert st.prepared_query_resolve(QID1)[1]["Name"] == "renamed"  # type: ignore[index]
    assert st.prepared_query_resolve("nothing") == (4, None)
    with pytest.raises(StateError, match="Missing query ID"):
        st.prepared_query_resolve("")


def test_a_failed_write_leaves_nothing() -> None:
    st = StateStore()
    with pytest.raises(StateError, match='invalid session "nope"'):
        st.prepared_query_set(1, query(QID1, "a", Session="nope"))
    assert st.prepared_query_list() == (0, [])
    assert st.prepared_query_resolve("a")[1] is None


def test_templates_resolve_by_longest_prefix_and_render() -> None:
    st = StateStore()
    st.prepared_query_set(
        1,
        template(
            QID1,
            "geo-",
            {"Service": "${match(1)}", "Tags": ["${match(2)}", "${name.suffix}"]},
            r"^geo-(\w+)-(\w+)$",
        ),
    )
    st.prepared_query_set(2, template(QID2, "geo-db-", {"Service": "db-${name.suffix}"}))
    st.prepared_query_set(3, template(QID3, "", {"Service": "${name.full}"}))
    rendered = st.prepared_query_resolve("geo-web-east")[1]
    assert rendered is not None and rendered["Service"]["Service"] == "web"
    assert rendered["Service"]["Tags"] == ["east", "web-east"]
    assert st.prepared_query_resolve("geo-db-x")[1]["Service"]["Service"] == "db-x"  # type: ignore[index]
    # the prefix matches in any case; name.suffix trims it as Go's TrimPrefix (exact case)
    assert st.prepared_query_resolve("GEO-DB-x")[1]["Service"]["Service"] == "db-GEO-DB-x"  # type: ignore[index]
    assert st.prepared_query_resolve("other")[1]["Service"]["Service"] == "other"  # type: ignore[index]
    with pytest.raises(StateError, match="only be resolved up by name"):
        st.prepared_query_resolve(QID1)
    with pytest.raises(StateError, match="a query template with an empty name already exists"):
        st.prepared_query_set(4, template(QID1.replace("1", "4"), "", {"Service": "x"}))
    # the stored template is not changed by rendering
    assert st.prepared_query_get(QID1)[1]["Service"]["Service"] == "${match(1)}"  # type: ignore[index]


@pytest.mark.parametrize(
    ("service", "regexp", "error"),
    [
        ({"Service": "${nope}"}, "", "unknown variable accessed: nope"),
        ({"Service": "${oops"}, "", "Bad format '${oops' in Service.Service"),
        ({"Service": "${upper(1)}"}, "", "unknown function called: upper"),
        ({"Service": "x"}, "(?<=a)", "Bad Regexp: error parsing regexp"),
        ({"Service": "x", "NodeMeta": {"k": "${bad"}}, "", "in Service.NodeMeta[k]"),
    ],
)
def test_bad_templates_are_refused_when_stored(
    service: dict[str, Any], regexp: str, error: str
) -> None:
    with pytest.raises(TemplateError, match=re.escape(error)):
        compile_template(template(QID1, "t-", service, regexp))
    with pytest.raises(StateError, match="failed compiling template"):
        StateStore().prepared_query_set(1, template(QID1, "t-", service, regexp))


def test_template_details() -> None:
    compiled = compile_template(
        {
            "ID": QID1,
            "Name": "p-",
            "Template": {
                "Type": "name_prefix_match",
                "Regexp": "^p-(a)?(b)$",
                "RemoveEmptyTags": True,
            },
            "Service": {
                "Service": "$${literal}-${agent.segment}",
                "Tags": ["${match(1)}", "${match(2)}", "${match(9)}"],
                "Failover": {"NearestN": 2, "Datacenters": ["${name.prefix}dc"]},
            },
        }
    )
    out = compiled.render("p-b", "seg")
    assert out["Service"]["Service"] == "${literal}-seg"
    assert out["Service"]["Tags"] == ["b"]  # empty tags removed
    assert out["Service"]["Failover"] == {"NearestN": 2, "Datacenters": ["p-dc"]}


def test_ending_a_session_deletes_its_queries() -> None:
    fsm = StateFSM()
    st = fsm.state
    reg = {"Node": "n1", "Address": "10.0.0.1"}
    assert fsm.apply(1, 1, encode_command(MessageType.REGISTER, reg)) is None
    sess = {"ID": "s1", "Node": "n1", "Checks": [], "Behavior": "release", "LockDelay": 0}
    assert fsm.apply(2, 1, encode_command(MessageType.SESSION, {"Op": "create", "Session": sess}))
    q = {"Op": "create", "Query": query(QID1, Session="s1")}
    assert fsm.apply(3, 1, encode_command(MessageType.PREPARED_QUERY, q)) is None
    assert st.prepared_query_get(QID1)[1] is not None
    fsm.apply(4, 1, encode_command(MessageType.SESSION, {"Op": "destroy", "Session": {"ID": "s1"}}))
    assert st.prepared_query_get(QID1) == (4, None)


def test_fsm_commands_and_snapshot_round_trip() -> None:
    fsm = StateFSM()
    for i, (op, q) in enumerate(
        [
            ("create", query(QID1, "a")),
            ("create", template(QID2, "t-", {"Service": "${name.suffix}"})),
        ],
        1,
    ):
        assert (
            fsm.apply(i, 1, encode_command(MessageType.PREPARED_QUERY, {"Op": op, "Query": q}))
            is None
        )
    bad = fsm.apply(3, 1, encode_command(MessageType.PREPARED_QUERY, {"Op": "zap", "Query": {}}))
    assert bad == FSMError("Unknown prepared query operation: zap")
    missing = fsm.apply(3, 1, encode_command(MessageType.PREPARED_QUERY, {"Op": "create"}))
    assert isinstance(missing, FSMError)
    other = StateFSM()
    other.restore(fsm.snapshot())
    assert other.state.prepared_query_list() == fsm.state.prepared_query_list()
    assert other.state.prepared_query_resolve("A")[1]["ID"] == QID1  # type: ignore[index]
    assert other.state.prepared_query_resolve("t-web")[1]["Service"]["Service"] == "web"  # type: ignore[index]
    fsm.apply(
        4, 1, encode_command(MessageType.PREPARED_QUERY, {"Op": "delete", "Query": {"ID": QID1}})
    )
    assert fsm.state.prepared_query_resolve("a") == (4, None)
