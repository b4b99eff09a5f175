"""The config_entries table: Consul 1.x's centrally stored configuration (service-defaults,
proxy-defaults, ...), one entry per (Kind, Name), replicated through raft and kept in
snapshots like every other table. Writes are upserts and deletes, each optionally
check-and-set on the entry's ModifyIndex."""

from __future__ import annotations

from typing import Any

from agent.state.catalog import CatalogTables
from agent.state.tables import StateError

#: the kinds Consul 1.x accepts (structs.ConfigEntry kinds)
CONFIG_KINDS = (
    "service-defaults",
    "proxy-defaults",
    "service-router",
    "service-splitter",
    "service-resolver",
    "ingress-gateway",
    "terminating-gateway",
    "service-intentions",
    "mesh",
    "exported-services",
    "sameness-group",
    "api-gateway",
    "bound-api-gateway",
    "http-route",
    "tcp-route",
    "inline-certificate",
    "file-system-certificate",
    "jwt-provider",
    "control-plane-request-limit",
    "registration",
)
CONFIG_OPS = ("upsert", "upsert-cas", "delete", "delete-cas")


class ConfigEntryTables(CatalogTables):
    def config_entry_apply(self, idx: int, op: str, entry: dict[str, Any], cas: int) -> bool:
        """Apply one write; False when a check-and-set finds another ModifyIndex."""
        if op not in CONFIG_OPS:
            raise StateError(f"Invalid config entry operation '{op}'")
        kind, name = str(entry.get("Kind") or ""), str(entry.get("Name") or "")
        if kind not in CONFIG_KINDS:
            raise StateError(f"invalid config entry kind: {kind}")
        if not name:
            raise StateError("Config entry name is required")
        key = (kind, name)
        with self._write():
            existing = self._config_entries.get(key)
            if op.endswith("-cas"):
                current = existing["ModifyIndex"] if existing else 0
                if current != cas:
                    return False
            if op.startswith("delete"):
                if existing is not None:
                    self._del(self._config_entries, key)
            else:
                record = dict(entry)
                record["CreateIndex"] = existing["CreateIndex"] if existing else idx
                record["ModifyIndex"] = idx
                self._set(self._config_entries, key, record)
            self._touch("config-entries", idx, kind)
        return True

    def config_entry(self, kind: str, name: str) -> tuple[int, dict[str, Any] | None]:
        entry = self._config_entries.get((kind, name))
        return self.table_index("config-entries"), (dict(entry) if entry else None)

    def config_entries(self, kind: str | None = None) -> tuple[int, list[dict[str, Any]]]:
        out = [dict(e) for (k, _n), e in self._config_entries.items() if kind in (None, k)]
        return self.table_index("config-entries"), out
