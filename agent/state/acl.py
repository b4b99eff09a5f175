"""Consul 1.x's ACL tables: tokens (by AccessorID, found by SecretID), policies and roles,
and the bootstrap state, replicated through raft and kept in snapshots. Writes are called by
the FSM only; the server's ACL endpoints validate and the resolver (agent/acl) reads."""

from __future__ import annotations

from typing import Any

from agent.state.tables import StateError, _copy
from agent.state.txn_catalog import CatalogTxnTables

#: Consul's built-ins
MANAGEMENT_POLICY_ID = "00000000-0000-0000-0000-000000000001"
ANONYMOUS_ACCESSOR_ID = "00000000-0000-0000-0000-000000000002"
ANONYMOUS_SECRET = "anonymous"


class ACLTables(CatalogTxnTables):
    # ------------------------------------------------------------------------- bootstrap

    def acl_bootstrap_state(self) -> dict[str, Any]:
        """{"AllowBootstrap": bool, "ResetIndex": int}: bootstrapping is allowed once."""
        return dict(self._acl_bootstrap or {"AllowBootstrap": True, "ResetIndex": 0})

    def acl_bootstrap(self, idx: int, token: dict[str, Any], reset_index: int) -> dict[str, Any]:
        """Create the initial management token; refused once done, unless `reset_index` is
        the one Consul's error named (an operator's reset)."""
        state = self.acl_bootstrap_state()
        with self._write():
            if not state["AllowBootstrap"] and reset_index != state["ResetIndex"]:
                raise StateError(
                    f"ACL bootstrap no longer allowed (reset index: {state['ResetIndex']})"
                )
            record = self._token_record(idx, token, None)
            self._set(self._acl_tokens, record["AccessorID"], record)
            self._set(self.__dict__, "_acl_bootstrap", {"AllowBootstrap": False, "ResetIndex": idx})
            self._touch("acl-tokens", idx, record["AccessorID"])
        return _copy(record)

    # ---------------------------------------------------------------------------- tokens

    def _token_record(
        self, idx: int, token: dict[str, Any], existing: dict[str, Any] | None
    ) -> dict[str, Any]:
        accessor = str(token.get("AccessorID") or "")
        secret = str(token.get("SecretID") or "")
        if not accessor or not secret:
            raise StateError("Token AccessorID and SecretID are required")
        for other in self._acl_tokens.values():
            if other["SecretID"] == secret and other["AccessorID"] != accessor:
                raise StateError("Invalid Token: SecretID is already in use")
        record = dict(token)
        record["CreateIndex"] = existing["CreateIndex"] if existing else idx
        record["ModifyIndex"] = idx
        return record

    def acl_token_set(self, idx: int, token: dict[str, Any]) -> dict[str, Any]:
        with self._write():
            existing = self._acl_tokens.get(str(token.get("AccessorID") or ""))
            record = self._token_record(idx, token, existing)
            self._set(self._acl_tokens, record["AccessorID"], record)
            self._touch("acl-tokens", idx, record["AccessorID"])
        return _copy(record)

    def acl_token_delete(self, idx: int, accessor: str) -> None:
        with self._write():
            if accessor in self._acl_tokens:
                self._del(self._acl_tokens, accessor)
                self._touch("acl-tokens", idx, accessor)

    def acl_token(self, accessor: str) -> tuple[int, dict[str, Any] | None]:
        tok = self._acl_tokens.get(accessor)
        return self.table_index("acl-tokens"), (_copy(tok) if tok else None)

    def acl_token_by_secret(self, secret: str) -> dict[str, Any] | None:
        for tok in self._acl_tokens.values():
            if tok["SecretID"] == secret:
                return _copy(tok)
        return None

    def acl_tokens(self) -> tuple[int, list[dict[str, Any]]]:
        return self.table_index("acl-tokens"), [_copy(t) for t in self._acl_tokens.values()]

    # -------------------------------------------------------------------- policies, roles

    def acl_policy_set(self, idx: int, policy: dict[str, Any]) -> dict[str, Any]:
        pid, name = str(policy.get("ID") or ""), str(policy.get("Name") or "")
        if not pid or not name:
            raise StateError("Policy ID and Name are required")
        with self._write():
            for other in self._acl_policies.values():
                if other["Name"] == name and other["ID"] != pid:
                    raise StateError(f"Invalid Policy: A Policy with Name {name!r} already exists")
            existing = self._acl_policies.get(pid)
            record = dict(policy)
            record["CreateIndex"] = existing["CreateIndex"] if existing else idx
            record["ModifyIndex"] = idx
            self._set(self._acl_policies, pid, record)
            self._touch("acl-policies", idx, pid)
        return _copy(record)

    def acl_policy_delete(self, idx: int, pid: str) -> None:
        with self._write():
            if pid in self._acl_policies:
                self._del(self._acl_policies, pid)
                self._touch("acl-policies", idx, pid)

    def acl_policy(self, pid: str) -> tuple[int, dict[str, Any] | None]:
        pol = self._acl_policies.get(pid)
        return self.table_index("acl-policies"), (_copy(pol) if pol else None)

    def acl_policy_by_name(self, name: str) -> dict[str, Any] | None:
        for pol in self._acl_policies.values():
            if pol["Name"] == name:
                return _copy(pol)
        return None

    def acl_policies(self) -> tuple[int, list[dict[str, Any]]]:
        return self.table_index("acl-policies"), [_copy(p) for p in self._acl_policies.values()]

    def acl_role_set(self, idx: int, role: dict[str, Any]) -> dict[str, Any]:
        rid, name = str(role.get("ID") or ""), str(role.get("Name") or "")
        if not rid or not name:
            raise StateError("Role ID and Name are required")
        with self._write():
            for other in self._acl_roles.values():
                if other["Name"] == name and other["ID"] != rid:
                    raise StateError(f"Invalid Role: A Role with Name {name!r} already exists")
            existing = self._acl_roles.get(rid)
            record = dict(role)
            record["CreateIndex"] = existing["CreateIndex"] if existing else idx
            record["ModifyIndex"] = idx
            self._set(self._acl_roles, rid, record)
            self._touch("acl-roles", idx, rid)
        return _copy(record)

    def acl_role_delete(self, idx: int, rid: str) -> None:
        with self._write():
            if rid in self._acl_roles:
                self._del(self._acl_roles, rid)
                self._touch("acl-roles", idx, rid)

    def acl_role(self, rid: str) -> tuple[int, dict[str, Any] | None]:
        role = self._acl_roles.get(rid)
        return self.table_index("acl-roles"), (_copy(role) if role else None)

    def acl_roles(self) -> tuple[int, list[dict[str, Any]]]:
        return self.table_index("acl-roles"), [_copy(r) for r in self._acl_roles.values()]
