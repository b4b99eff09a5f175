"""What a token may see of the catalog, health and sessions (Consul's aclFilter in
acl.go): each function takes a state read's value and returns (what is left, whether
anything was dropped). Filtering needs `node:read` for node-level records and
`service:read` for service-level ones; a health check of a service needs the service's."""

from __future__ import annotations

from typing import Any

from agent.server.endpoints.base import access


def nodes(value: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], bool]:
    return access().filter(value, "node", lambda n: str(n.get("Node") or ""))


def services(value: dict[str, list[str]]) -> tuple[dict[str, list[str]], bool]:
    acc = access()
    kept = {name: tags for name, tags in value.items() if acc.can("service", "read", name)}
    return kept, len(kept) != len(value)


def service_nodes(value: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], bool]:
    acc = access()
    kept = [
        sn
        for sn in value
        if acc.can("node", "read", str(sn.get("Node") or ""))
        and acc.can("service", "read", str(sn.get("ServiceName") or ""))
    ]
    return kept, len(kept) != len(value)


def node_services(value: dict[str, Any] | None) -> tuple[dict[str, Any] | None, bool]:
    if value is None:
        return None, False
    acc = access()
    node = value.get("Node") or {}
    if not acc.can("node", "read", str(node.get("Node") or "")):
        return None, True
    svcs = value.get("Services") or {}
    kept = {
        sid: s for sid, s in svcs.items() if acc.can("service", "read", str(s.get("Service") or ""))
    }
    return {**value, "Services": kept}, len(kept) != len(svcs)


def _check_visible(check: dict[str, Any]) -> bool:
    acc = access()
    if check.get("ServiceName"):
        return acc.can("service", "read", str(check["ServiceName"]))
    return acc.can("node", "read", str(check.get("Node") or ""))


def checks(value: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], bool]:
    kept = [c for c in value if _check_visible(c)]
    return kept, len(kept) != len(value)


def check_service_nodes(value: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], bool]:
    acc = access()
    out = []
    dropped = False
    for csn in value:
        node = str((csn.get("Node") or {}).get("Node") or "")
        svc = str((csn.get("Service") or {}).get("Service") or "")
        if not acc.can("node", "read", node) or not acc.can("service", "read", svc):
            dropped = True
            continue
        kept, gone = checks(csn.get("Checks") or [])
        dropped = dropped or gone
        out.append({**csn, "Checks": kept})
    return out, dropped


def sessions(value: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], bool]:
    return access().filter(value, "session", lambda s: str(s.get("Node") or ""))
