"""The replicated state: KV entries (with tombstones), sessions, catalog nodes, services and
checks, network coordinates, the autopilot configuration, config entries, ACLs and prepared
queries, as Consul's state store.

See tables.py for the theory of operation (transactions with undo, indexes, watches).
The tables and their machinery live in tables.py; kv.py, sessions.py and catalog.py add
one concern each; this module adds coordinates, the autopilot configuration and the
snapshot encoding, and re-exports the names other modules use.
"""

from __future__ import annotations

from typing import Any

from agent.state.prepared_queries import PreparedQueryTables
from agent.state.tables import (
    DEFAULT_LOCK_DELAY_NS,
    HEALTH_ANY,
    HEALTH_CRITICAL,
    HEALTH_PASSING,
    HEALTH_STATES,
    HEALTH_WARNING,
    MAX_KV_VALUE_SIZE,
    MAX_LOCK_DELAY_NS,
    MAX_TXN_OPS,
    SESSION_DELETE,
    SESSION_RELEASE,
    TABLES,
    StateError,
    Watch,
    go_quote,
)

__all__ = [
    "DEFAULT_LOCK_DELAY_NS",
    "HEALTH_ANY",
    "HEALTH_CRITICAL",
    "HEALTH_PASSING",
    "HEALTH_STATES",
    "HEALTH_WARNING",
    "MAX_KV_VALUE_SIZE",
    "MAX_LOCK_DELAY_NS",
    "MAX_TXN_OPS",
    "SESSION_DELETE",
    "SESSION_RELEASE",
    "TABLES",
    "StateError",
    "StateStore",
    "Watch",
    "go_quote",
]


class StateStore(PreparedQueryTables):
    """The replicated state's tables. Writes are called by StateFSM only."""

    # ----------------------------------------------------------------------- coordinates

    def coordinate_batch_update(self, idx: int, updates: list[dict[str, Any]]) -> None:
        """Set nodes' coordinates; updates for nodes not in the catalog are dropped (Consul)."""
        with self._write():
            for upd in updates:
                if not isinstance(upd, dict):
                    continue
                node = str(upd.get("Node") or "")
                coord = upd.get("Coord")
                if node not in self._nodes or not isinstance(coord, dict):
                    continue
                self._set(self._coords, node, dict(coord))
                self._touch("coordinates", idx, node)

    def coordinates(self) -> tuple[int, list[dict[str, Any]]]:
        out = [{"Node": n, "Coord": dict(c)} for n, c in self._coords.items()]
        return self.table_index("coordinates"), out

    def coordinate(self, node: str) -> dict[str, Any] | None:
        c = self._coords.get(node)
        return dict(c) if c is not None else None

    # ------------------------------------------------------------------------- autopilot

    def autopilot_set_config(self, idx: int, config: dict[str, Any], cas: int | None) -> bool:
        with self._write():
            current = self._autopilot
            if cas is not None and (current["ModifyIndex"] if current else 0) != cas:
                return False
            record = dict(config)
            record["CreateIndex"] = current["CreateIndex"] if current else idx
            record["ModifyIndex"] = idx
            self._set(self.__dict__, "_autopilot", record)
            self._touch("autopilot", idx)
            return True

    def autopilot_config(self) -> tuple[int, dict[str, Any] | None]:
        cfg = self._autopilot
        return self.table_index("autopilot"), (dict(cfg) if cfg is not None else None)

    # ------------------------------------------------------------------ snapshot, restore

    def snapshot_tables(self) -> dict[str, Any]:
        """Every replicated table and index, in a deterministic order, for the FSM snapshot."""
        return {
            "Version": 1,
            "Indexes": [[t, self._index[t]] for t in TABLES],
            "KVS": list(self._kvs.values()),
            "Tombstones": [[k, v] for k, v in self._tombstones.items()],
            "Sessions": list(self._sessions.values()),
            "Nodes": list(self._nodes.values()),
            "Services": [[node, svc] for (node, _sid), svc in self._services.items()],
            "Checks": list(self._checks.values()),
            "Coordinates": [[n, c] for n, c in self._coords.items()],
            "Autopilot": self._autopilot,
            "ConfigEntries": list(self._config_entries.values()),
            "ACLTokens": list(self._acl_tokens.values()),
            "ACLPolicies": list(self._acl_policies.values()),
            "ACLRoles": list(self._acl_roles.values()),
            "ACLBootstrap": self._acl_bootstrap,
            "PreparedQueries": list(self._prepared_queries.values()),
        }

    def restore_tables(self, snap: dict[str, Any], at_index: int = 0) -> None:
        """Replace every table with a snapshot's; wakes every watch. Raises StateError (and
        keeps the current state) if the snapshot is malformed. With `at_index` (a restore
        applied from the raft log) every table index moves to at least that index, so that
        blocking queries see the change."""
        if not isinstance(snap, dict) or snap.get("Version") != 1:
            raise StateError("unsupported snapshot version")
        fresh = StateStore(self.now)
        try:
            for table, idx in snap["Indexes"]:
                if table in fresh._index:
                    fresh._index[table] = int(idx)
            for ent in snap["KVS"]:
                fresh._kvs[ent["Key"]] = ent
                if ent["Session"]:
                    fresh._session_keys[(ent["Session"], ent["Key"])] = None
            for key, idx in snap["Tombstones"]:
                fresh._tombstones[key] = int(idx)
            for sess in snap["Sessions"]:
                fresh._sessions[sess["ID"]] = sess
                fresh._node_sessions[(sess["Node"], sess["ID"])] = None
                for check_id in sess["Checks"]:
                    fresh._session_checks[(sess["Node"], check_id, sess["ID"])] = None
            for node in snap["Nodes"]:
                fresh._nodes[node["Node"]] = node
            for node, svc in snap["Services"]:
                fresh._services[(node, svc["ID"])] = svc
                fresh._service_names[(svc["Service"], node, svc["ID"])] = None
            for chk in snap["Checks"]:
                fresh._checks[(chk["Node"], chk["CheckID"])] = chk
            for node, coord in snap["Coordinates"]:
                fresh._coords[node] = coord
            fresh._autopilot = snap.get("Autopilot")
            for entry in snap.get("ConfigEntries") or ():  # none in older snapshots
                fresh._config_entries[(entry["Kind"], entry["Name"])] = entry
            for tok in snap.get("ACLTokens") or ():
                fresh._acl_tokens[tok["AccessorID"]] = tok
            for pol in snap.get("ACLPolicies") or ():
                fresh._acl_policies[pol["ID"]] = pol
            for role in snap.get("ACLRoles") or ():
                fresh._acl_roles[role["ID"]] = role
            fresh._acl_bootstrap = snap.get("ACLBootstrap")
            for query in snap.get("PreparedQueries") or ():
                fresh._prepared_queries[query["ID"]] = query
                if query.get("Name"):
                    fresh._query_names[str(query["Name"]).lower()] = query["ID"]
        except (KeyError, TypeError, ValueError) as exc:
            raise StateError(f"malformed snapshot: {exc!r}") from exc
        for table in TABLES:
            fresh._index[table] = max(fresh._index[table], at_index)
        for name in (
            "_index",
            "_kvs",
            "_tombstones",
            "_session_keys",
            "_sessions",
            "_session_checks",
            "_node_sessions",
            "_nodes",
            "_services",
            "_service_names",
            "_checks",
            "_coords",
            "_autopilot",
            "_config_entries",
            "_acl_tokens",
            "_acl_policies",
            "_acl_roles",
            "_acl_bootstrap",
            "_prepared_queries",
            "_query_names",
        ):
            setattr(self, name, getattr(fresh, name))
        self._lock_delay.clear()
        for watch in list(self._watches):
            self._fire(watch)
