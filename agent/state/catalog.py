"""The catalog: nodes, services and checks, and the health queries over them, as Consul 0.7's
state/catalog.go. A check going critical or deregistered invalidates the sessions bound to it."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from typing import Any

from agent.state.sessions import SessionTables
from agent.state.tables import (
    _KEY_MAX,
    HEALTH_ANY,
    HEALTH_CRITICAL,
    HEALTH_PASSING,
    StateError,
    _copy,
    _same,
    _uint,
)

#: Consul's minUUIDLookupLen: a node ID prefix shorter than this names no node
MIN_UUID_LOOKUP_LEN = 2


class CatalogTables(SessionTables):
    """The nodes, services and checks tables."""

    # --------------------------------------------------------------------------- catalog

    def ensure_registration(self, idx: int, req: dict[str, Any]) -> None:
        """Catalog.Register: the node (unless SkipNodeUpdate), its service, its checks."""
        node = str(req.get("Node") or "")
        with self._write():
            if not req.get("SkipNodeUpdate") or node not in self._nodes:
                self._ensure_node(idx, req)
            service = req.get("Service")
            if isinstance(service, dict):
                self._ensure_service(idx, node, service)
            checks = list(req.get("Checks") or [])
            if isinstance(req.get("Check"), dict):
                checks.append(req["Check"])
            for check in checks:
                if isinstance(check, dict):
                    self._ensure_check(idx, {**check, "Node": check.get("Node") or node})

    def _ensure_node(self, idx: int, req: dict[str, Any]) -> None:
        name = str(req.get("Node") or "")
        if not name:
            raise StateError("Must provide node")
        existing = self._nodes.get(name)
        # A registration that does not carry a field keeps the stored one (the leader's
        # reconcile registers nodes with only ID and Address; it must not wipe the
        # TaggedAddresses and Meta the node's own agent synced).
        tagged = req.get("TaggedAddresses")
        meta = req.get("NodeMeta", req.get("Meta"))
        record = {
            "ID": str(req.get("ID") or (existing["ID"] if existing else "")),
            "Node": name,
            "Address": str(req.get("Address") or ""),
            "TaggedAddresses": dict(tagged)
            if tagged is not None
            else dict(existing["TaggedAddresses"] if existing else {}),
            "Meta": dict(meta) if meta is not None else dict(existing["Meta"] if existing else {}),
            "CreateIndex": existing["CreateIndex"] if existing else idx,
            "ModifyIndex": idx,
        }
        if existing is not None and _same(existing, record):
            return
        self._set(self._nodes, name, record)
        self._touch("nodes", idx, name)

    def _ensure_service(self, idx: int, node: str, svc: dict[str, Any]) -> None:
        if node not in self._nodes:
            raise StateError("Missing node registration")
        sid = str(svc.get("ID") or svc.get("Service") or "")
        existing = self._services.get((node, sid))
        record = {
            "ID": sid,
            "Service": str(svc.get("Service") or ""),
            "Tags": [str(t) for t in (svc.get("Tags") or [])],
            "Address": str(svc.get("Address") or ""),
            "Port": _uint(svc.get("Port"), "Port"),
            "Meta": dict(svc.get("Meta") or {}),
            "EnableTagOverride": bool(svc.get("EnableTagOverride")),
            # Consul 1.x's fields (a record from an older snapshot lacks them: read with .get)
            "Kind": str(svc.get("Kind") or ""),
            "TaggedAddresses": dict(svc.get("TaggedAddresses") or {}),
            "Weights": dict(svc.get("Weights") or {"Passing": 1, "Warning": 1}),
            "CreateIndex": existing["CreateIndex"] if existing else idx,
            "ModifyIndex": idx,
        }
        if existing is not None and _same(existing, record):
            return
        if existing is not None:
            self._del(self._service_names, (existing["Service"], node, sid))
        self._set(self._service_names, (record["Service"], node, sid), None)
        self._set(self._services, (node, sid), record)
        self._touch("services", idx, sid)

    def _ensure_check(self, idx: int, chk: dict[str, Any]) -> None:
        node = str(chk.get("Node") or "")
        if node not in self._nodes:
            raise StateError("Missing node registration")
        check_id = str(chk.get("CheckID") or chk.get("Name") or "")
        service_id = str(chk.get("ServiceID") or "")
        service_name = ""
        if service_id:
            svc = self._services.get((node, service_id))
            if svc is None:
                raise StateError("Missing service registration")
            service_name = svc["Service"]
        status = str(chk.get("Status") or HEALTH_CRITICAL)
        existing = self._checks.get((node, check_id))
        record = {
            "Node": node,
            "CheckID": check_id,
            "Name": str(chk.get("Name") or ""),
            "Status": status,
            "Notes": str(chk.get("Notes") or ""),
            "Output": str(chk.get("Output") or ""),
            "ServiceID": service_id,
            "ServiceName": service_name,
            "CreateIndex": existing["CreateIndex"] if existing else idx,
            "ModifyIndex": idx,
        }
        if existing is not None and _same(existing, record):
            return
        self._set(self._checks, (node, check_id), record)
        self._touch("checks", idx, check_id)
        if status == HEALTH_CRITICAL:
            self._invalidate_check_sessions(idx, node, check_id)

    def deregister(self, idx: int, req: dict[str, Any]) -> None:
        """Catalog.Deregister: a service, a check, or (with neither) the whole node."""
        node = str(req.get("Node") or "")
        service_id = str(req.get("ServiceID") or "")
        check_id = str(req.get("CheckID") or "")
        with self._write():
            if service_id:
                self._delete_service(idx, node, service_id)
            if check_id:
                self._delete_check(idx, node, check_id)
            if not service_id and not check_id:
                self._delete_node(idx, node)

    def _delete_check(self, idx: int, node: str, check_id: str) -> None:
        if (node, check_id) not in self._checks:
            return
        self._del(self._checks, (node, check_id))
        self._touch("checks", idx, check_id)
        self._invalidate_check_sessions(idx, node, check_id)

    def _delete_service(self, idx: int, node: str, service_id: str) -> None:
        if (node, service_id) not in self._services:
            return
        for (n, cid), chk in list(self._node_checks(node)):
            if chk["ServiceID"] == service_id:
                self._delete_check(idx, n, cid)
        self._del(
            self._service_names, (self._services[(node, service_id)]["Service"], node, service_id)
        )
        self._del(self._services, (node, service_id))
        self._touch("services", idx, service_id)

    def _node_checks(self, node: str) -> Iterator[tuple[tuple[str, str], dict[str, Any]]]:
        for k in self._checks.irange((node, ""), (node, _KEY_MAX)):
            yield k, self._checks[k]

    def _node_services(self, node: str) -> list[dict[str, Any]]:
        return [self._services[k] for k in self._services.irange((node, ""), (node, _KEY_MAX))]

    def _delete_node(self, idx: int, node: str) -> None:
        if node not in self._nodes:
            return
        for svc in self._node_services(node):
            self._delete_service(idx, node, svc["ID"])
        for (n, cid), _chk in list(self._node_checks(node)):
            self._delete_check(idx, n, cid)
        if node in self._coords:
            self._del(self._coords, node)
            self._touch("coordinates", idx, node)
        for _node, sid in self._node_session_ids(node):
            self._session_delete(idx, sid)
        self._del(self._nodes, node)
        self._touch("nodes", idx, node)

    def get_node(self, node: str) -> dict[str, Any] | None:
        rec = self._nodes.get(node)
        return _copy(rec) if rec is not None else None

    def nodes(self, meta_filter: dict[str, str] | None = None) -> tuple[int, list[dict[str, Any]]]:
        out = [
            _copy(n)
            for n in self._nodes.values()
            if not meta_filter or all(n["Meta"].get(k) == v for k, v in meta_filter.items())
        ]
        return self.table_index("nodes"), out

    @staticmethod
    def _meta_ok(node: dict[str, Any] | None, meta: dict[str, str] | None) -> bool:
        """A node carries every `meta` pair (Consul's NodeMetaFilters; none: any node)."""
        if not meta:
            return True
        return node is not None and all(node["Meta"].get(k) == v for k, v in meta.items())

    def services(
        self,
        meta: dict[str, str] | None = None,
        keep: Callable[[dict[str, Any]], bool] | None = None,
    ) -> tuple[int, dict[str, list[str]]]:
        """Service name -> tags, over the instances on nodes carrying every `meta` pair and,
        with `keep`, the instances (as ServiceNode dicts) it keeps (Consul's ?filter)."""
        tags: dict[str, set[str]] = {}
        for (node, _sid), svc in self._services.items():
            rec = self._nodes.get(node)
            if meta and not self._meta_ok(rec, meta):
                continue
            if keep is not None and (rec is None or not keep(self._service_node(rec, svc))):
                continue
            tags.setdefault(svc["Service"], set()).update(svc["Tags"])
        return self.table_index("services"), {name: sorted(t) for name, t in sorted(tags.items())}

    def _service_node(self, node: dict[str, Any], svc: dict[str, Any]) -> dict[str, Any]:
        return {
            "ID": node["ID"],
            "Node": node["Node"],
            "Address": node["Address"],
            "TaggedAddresses": dict(node["TaggedAddresses"]),
            "NodeMeta": dict(node["Meta"]),
            "ServiceID": svc["ID"],
            "ServiceName": svc["Service"],
            "ServiceTags": list(svc["Tags"]),
            "ServiceAddress": svc["Address"],
            "ServicePort": svc["Port"],
            "ServiceMeta": dict(svc["Meta"]),
            "ServiceEnableTagOverride": svc["EnableTagOverride"],
            "ServiceKind": svc.get("Kind", ""),
            "ServiceTaggedAddresses": dict(svc.get("TaggedAddresses") or {}) or None,
            "ServiceWeights": dict(svc.get("Weights") or {"Passing": 1, "Warning": 1}),
            "CreateIndex": svc["CreateIndex"],
            "ModifyIndex": svc["ModifyIndex"],
        }

    def _matching_services(
        self,
        service: str,
        tags: Sequence[str] | str | None,
        meta: dict[str, str] | None = None,
    ) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
        """Instances of `service` carrying every tag (case-insensitive, as Consul) on nodes
        carrying every `meta` pair."""
        wanted = [tags] if isinstance(tags, str) else list(tags or ())
        wanted = [w.lower() for w in wanted]
        for _name, node, sid in self._service_names.irange(
            (service, "", ""), (service, _KEY_MAX, _KEY_MAX)
        ):
            svc = self._services[(node, sid)]
            if wanted:
                have = {t.lower() for t in svc["Tags"]}
                if not all(w in have for w in wanted):
                    continue
            rec = self._nodes[node]
            if meta and not self._meta_ok(rec, meta):
                continue
            yield rec, svc

    def service_nodes(
        self,
        service: str,
        tags: Sequence[str] | str | None = None,
        meta: dict[str, str] | None = None,
    ) -> tuple[int, list[dict[str, Any]]]:
        out = [self._service_node(n, s) for n, s in self._matching_services(service, tags, meta)]
        return self.table_index("nodes", "services"), out

    def node_services(self, node: str) -> tuple[int, dict[str, Any] | None]:
        """The node named `node` (or, as Consul's NodeServices, the one node whose ID
        starts with it) and its services."""
        idx = self.table_index("nodes", "services")
        rec = self._nodes.get(node)
        if rec is None:
            rec = self._node_by_id_prefix(node)
        if rec is None:
            return idx, None
        node = rec["Node"]
        return idx, {
            "Node": _copy(rec),
            "Services": {s["ID"]: _copy(s) for s in self._node_services(node)},
        }

    def _node_by_id_prefix(self, prefix: str) -> dict[str, Any] | None:
        if len(prefix) < MIN_UUID_LOOKUP_LEN:
            return None
        wanted = prefix.lower()
        found = [r for r in self._nodes.values() if str(r.get("ID") or "").startswith(wanted)]
        return found[0] if len(found) == 1 else None

    def usage(self) -> tuple[int, dict[str, int]]:
        """Consul's /v1/operator/usage counts for this datacenter."""
        instances = len(self._services)
        names = {svc["Service"] for svc in self._services.values()}
        counts = {
            "Services": len(names),
            "ServiceInstances": instances,
            "BillableServiceInstances": instances,
            "Nodes": len(self._nodes),
        }
        return self.table_index("nodes", "services"), counts

    def checks_in_state(
        self, state: str, meta: dict[str, str] | None = None
    ) -> tuple[int, list[dict[str, Any]]]:
        out = [
            _copy(c)
            for c in self._checks.values()
            if (state == HEALTH_ANY or c["Status"] == state)
            and (not meta or self._meta_ok(self._nodes.get(c["Node"]), meta))
        ]
        return self.table_index("checks"), out

    def node_checks(self, node: str) -> tuple[int, list[dict[str, Any]]]:
        return self.table_index("checks"), [_copy(c) for _k, c in self._node_checks(node)]

    def service_checks(
        self, service: str, meta: dict[str, str] | None = None
    ) -> tuple[int, list[dict[str, Any]]]:
        out = [
            _copy(c)
            for c in self._checks.values()
            if c["ServiceName"] == service
            and (not meta or self._meta_ok(self._nodes.get(c["Node"]), meta))
        ]
        return self.table_index("checks"), out

    def check_service_nodes(
        self,
        service: str,
        tags: Sequence[str] | str | None = None,
        passing_only: bool = False,
        meta: dict[str, str] | None = None,
    ) -> tuple[int, list[dict[str, Any]]]:
        out = []
        for node, svc in self._matching_services(service, tags, meta):
            checks = [
                _copy(c)
                for _k, c in self._node_checks(node["Node"])
                if c["ServiceID"] in ("", svc["ID"])
            ]
            if passing_only and any(c["Status"] != HEALTH_PASSING for c in checks):
                continue
            out.append({"Node": _copy(node), "Service": _copy(svc), "Checks": checks})
        return self.table_index("nodes", "services", "checks"), out


def healthy_instances(
    nodes: Iterable[dict[str, Any]], only_passing: bool, ignore: Collection[str] = ()
) -> list[dict[str, Any]]:
    """Consul's CheckServiceNodes.Filter (and FilterIgnore): drop instances with a critical
    check or, with `only_passing`, any check that is not passing; the checks whose CheckID is
    in `ignore` do not count. DNS and prepared queries both answer with it."""
    out = []
    for csn in nodes:
        for check in csn.get("Checks") or ():
            if ignore and check.get("CheckID") in ignore:
                continue
            status = check.get("Status")
            if status == "critical" or (only_passing and status != "passing"):
                break
        else:
            out.append(csn)
    return out
