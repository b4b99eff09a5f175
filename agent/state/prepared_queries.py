"""The prepared-queries table (Consul's state/prepared_query.go): stored service queries,
found by ID or by (case-insensitive, unique) Name, templates by the longest Name that
prefixes the name asked. A query bound to a session goes when the session goes.

Records are Consul's PreparedQuery as the endpoint normalised it. Templates are compiled
when stored (so a bad one is refused then) and kept compiled per server, outside the
replicated state: a compiled template is a pure function of the record.
"""

from __future__ import annotations

import re
from typing import Any

from agent.state.acl import ACLTables
from agent.state.query_template import (
    CompiledTemplate,
    TemplateError,
    compile_template,
    is_template,
)
from agent.state.tables import StateError, _copy, go_quote

ERR_MISSING_QUERY_ID = "Missing query ID"
ERR_TEMPLATE_BY_ID = "prepared query templates can only be resolved up by name, not by ID"

_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\Z")


def is_uuid(text: str) -> bool:
    return len(text) == 36 and _UUID.match(text) is not None


class PreparedQueryTables(ACLTables):
    def _compiled(self, query: dict[str, Any]) -> CompiledTemplate:
        cache: dict[tuple[str, int], CompiledTemplate] = self.__dict__.setdefault(
            "_query_templates", {}
        )
        key = (str(query["ID"]), int(query.get("ModifyIndex") or 0))
        compiled = cache.get(key)
        if compiled is None:
            if len(cache) > 4096:
                cache.clear()
            compiled = cache[key] = compile_template(query)
        return compiled

    def prepared_query_set(self, idx: int, query: dict[str, Any]) -> None:
        qid = str(query.get("ID") or "")
        if not qid:
            raise StateError(ERR_MISSING_QUERY_ID)
        name = str(query.get("Name") or "")
        with self._write():
            existing = self._prepared_queries.get(qid)
            record = dict(query)
            record["CreateIndex"] = existing["CreateIndex"] if existing else idx
            record["ModifyIndex"] = idx
            other = self._query_names.get(name.lower())
            if name and other is not None and other != qid:
                raise StateError(f"name '{name}' aliases an existing query name")
            if not name and is_template(record):
                for oid, q in self._prepared_queries.items():
                    if oid != qid and is_template(q) and not q.get("Name"):
                        raise StateError("a query template with an empty name already exists")
            if is_uuid(name) and name in self._prepared_queries:
                raise StateError(f"name '{name}' aliases an existing query ID")
            session = str(record.get("Session") or "")
            if session and session not in self._sessions:
                raise StateError(f"invalid session {go_quote(session)}")
            if is_template(record):
                try:
                    self._compiled(record)
                except TemplateError as exc:
                    raise StateError(f"failed compiling template: {exc}") from None
            if existing is not None and existing.get("Name"):
                self._del(self._query_names, str(existing["Name"]).lower())
            if name:
                self._set(self._query_names, name.lower(), qid)
            self._set(self._prepared_queries, qid, record)
            self._touch("prepared-queries", idx, qid)

    def prepared_query_delete(self, idx: int, qid: str) -> None:
        with self._write():
            self._prepared_query_delete(idx, qid)

    def _prepared_query_delete(self, idx: int, qid: str) -> None:
        existing = self._prepared_queries.get(qid)
        if existing is None:
            return
        if existing.get("Name"):
            self._del(self._query_names, str(existing["Name"]).lower())
        self._del(self._prepared_queries, qid)
        self._touch("prepared-queries", idx, qid)

    def _session_delete(self, idx: int, sid: str) -> None:
        super()._session_delete(idx, sid)
        for qid, query in list(self._prepared_queries.items()):
            if query.get("Session") == sid:
                self._prepared_query_delete(idx, qid)

    def prepared_query_get(self, qid: str) -> tuple[int, dict[str, Any] | None]:
        query = self._prepared_queries.get(qid)
        return self.table_index("prepared-queries"), (_copy(query) if query else None)

    def prepared_query_list(self) -> tuple[int, list[dict[str, Any]]]:
        queries = [_copy(q) for q in self._prepared_queries.values()]
        return self.table_index("prepared-queries"), queries

    def prepared_query_resolve(
        self, id_or_name: str, segment: str = ""
    ) -> tuple[int, dict[str, Any] | None]:
        """The query an ID or a name names, a template rendered for the name; StateError for
        an empty name, a template asked by ID, or a template that fails to render."""
        idx = self.table_index("prepared-queries")
        if not id_or_name:
            raise StateError(ERR_MISSING_QUERY_ID)
        if is_uuid(id_or_name):
            query = self._prepared_queries.get(id_or_name)
            if query is not None:
                if is_template(query):
                    raise StateError(ERR_TEMPLATE_BY_ID)
                return idx, _copy(query)
        qid = self._query_names.get(id_or_name.lower())
        found = self._prepared_queries.get(qid) if qid is not None else None
        if found is None:
            wanted = id_or_name.lower()
            longest = -1
            for query in self._prepared_queries.values():
                prefix = str(query.get("Name") or "").lower()
                if is_template(query) and wanted.startswith(prefix) and len(prefix) > longest:
                    found, longest = query, len(prefix)
        if found is None:
            return idx, None
        if not is_template(found):
            return idx, _copy(found)
        try:
            return idx, self._compiled(found).render(id_or_name, segment)
        except TemplateError as exc:
            raise StateError(str(exc)) from None
