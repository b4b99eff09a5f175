"""The ACL tables through the FSM: bootstrap once (then Consul's error with the reset index),
tokens found by secret, unique SecretIDs and policy names, snapshots keep them all."""

from __future__ import annotations

import pytest

from agent.codec import unpackb
from agent.state.commands import MessageType, encode_command
from agent.state.fsm import FSMError, StateFSM
from agent.state.store import StateStore

TOKEN = {"AccessorID": "a-1", "SecretID": "s-1", "Description": "boot", "Policies": []}


def apply(fsm: StateFSM, index: int, msg: MessageType, req: dict[str, object]) -> object:
    return fsm.apply(index, 1, encode_command(msg, req))


def test_bootstrap_once_then_the_reset_index_error() -> None:
    fsm = StateFSM()
    assert fsm.state.acl_bootstrap_state() == {"AllowBootstrap": True, "ResetIndex": 0}
    out = apply(fsm, 5, MessageType.ACL_BOOTSTRAP, {"Token": TOKEN})
    assert isinstance(out, dict) and out["AccessorID"] == "a-1" and out["CreateIndex"] == 5
    again = apply(fsm, 6, MessageType.ACL_BOOTSTRAP, {"Token": dict(TOKEN, AccessorID="a-2")})
    assert isinstance(again, FSMError)
    assert str(again) == "ACL bootstrap no longer allowed (reset index: 5)"
    reset = apply(
        fsm,
        7,
        MessageType.ACL_BOOTSTRAP,
        {"Token": dict(TOKEN, AccessorID="a-3", SecretID="s-3"), "ResetIndex": 5},
    )
    assert isinstance(reset, dict) and reset["AccessorID"] == "a-3"
    assert fsm.state.acl_token_by_secret("s-3")["AccessorID"] == "a-3"  # type: ignore[index]


def test_tokens_policies_roles_set_delete_and_uniqueness() -> None:
    fsm = StateFSM()
    assert isinstance(apply(fsm, 2, MessageType.ACL_TOKEN_SET, {"Token": TOKEN}), dict)
    clash = apply(fsm, 3, MessageType.ACL_TOKEN_SET, {"Token": dict(TOKEN, AccessorID="other")})
    assert str(clash) == "Invalid Token: SecretID is already in use"
    pol = {"ID": "p-1", "Name": "kv-app", "Rules": 'key_prefix "app/" { policy = "write" }'}
    assert isinstance(apply(fsm, 4, MessageType.ACL_POLICY_SET, {"Policy": pol}), dict)
    dup = apply(fsm, 5, MessageType.ACL_POLICY_SET, {"Policy": dict(pol, ID="p-2")})
    assert str(dup) == "Invalid Policy: A Policy with Name 'kv-app' already exists"
    role = {"ID": "r-1", "Name": "app", "Policies": [{"ID": "p-1"}]}
    assert isinstance(apply(fsm, 6, MessageType.ACL_ROLE_SET, {"Role": role}), dict)
    st = fsm.state
    assert st.acl_policy_by_name("kv-app")["ID"] == "p-1"  # type: ignore[index]
    assert [r["Name"] for r in st.acl_roles()[1]] == ["app"]
    assert st.acl_tokens()[0] == 2 and st.acl_policies()[0] == 4
    apply(fsm, 7, MessageType.ACL_TOKEN_DELETE, {"AccessorID": "a-1"})
    apply(fsm, 8, MessageType.ACL_POLICY_DELETE, {"ID": "p-1"})
    apply(fsm, 9, MessageType.ACL_ROLE_DELETE, {"ID": "r-1"})
    assert st.acl_token("a-1")[1] is None and st.acl_policy("p-1")[1] is None
    assert st.acl_role("r-1") == (9, None)


def test_acl_tables_survive_a_snapshot() -> None:
    fsm = StateFSM()
    apply(fsm, 2, MessageType.ACL_BOOTSTRAP, {"Token": TOKEN})
    apply(fsm, 3, MessageType.ACL_POLICY_SET, {"Policy": {"ID": "p", "Name": "n", "Rules": ""}})
    fresh = StateStore()
    fresh.restore_tables(unpackb(fsm.snapshot()))
    assert fresh.acl_token_by_secret("s-1") is not None
    assert fresh.acl_policy("p")[1] is not None
    assert fresh.acl_bootstrap_state() == {"AllowBootstrap": False, "ResetIndex": 2}


@pytest.mark.parametrize("bad", [{"AccessorID": "", "SecretID": "x"}, {"AccessorID": "x"}])
def test_a_token_without_ids_is_refused(bad: dict[str, str]) -> None:
    out = apply(StateFSM(), 2, MessageType.ACL_TOKEN_SET, {"Token": bad})
    assert str(out) == "Token AccessorID and SecretID are required"
