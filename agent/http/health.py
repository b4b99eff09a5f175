"""/v1/health/*: checks by node, service and state; service instances with their checks."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from agent.http.catalog import service_tag
from agent.http.common import (
    HTTPError,
    flag,
)
from agent.http.query import query

CHECK_STATES = ("any", "passing", "warning", "critical")


def _service_health(request: web.Request, args: dict[str, Any]) -> None:
    service_tag(request, args)
    args["Passing"] = flag(request, "passing")


def _passing_only(request: web.Request, nodes: Any) -> Any:
    if not flag(request, "passing") or not isinstance(nodes, list):
        return nodes
    return [n for n in nodes if all(c.get("Status") == "passing" for c in (n.get("Checks") or []))]


def _check_state(request: web.Request, args: dict[str, Any]) -> None:
    if args["State"] not in CHECK_STATES:
        raise HTTPError(400, "Invalid check state")


def routes() -> list[web.RouteDef]:
    return [
        web.get(
            "/v1/health/node/{node}",
            query("Health.NodeChecks", "HealthChecks", {"node": "Node"}, empty=[]),
            allow_head=False,
        ),
        web.get(
            "/v1/health/checks/{service}",
            query("Health.ServiceChecks", "HealthChecks", {"service": "ServiceName"}, empty=[]),
            allow_head=False,
        ),
        web.get(
            "/v1/health/service/{service}",
            query(
                "Health.ServiceNodes",
                "Nodes",
                {"service": "ServiceName"},
                _service_health,
                empty=[],
                shape=_passing_only,
            ),
            allow_head=False,
        ),
        web.get(
            "/v1/health/state/{state}",
            query(
                "Health.ChecksInState", "HealthChecks", {"state": "State"}, _check_state, empty=[]
            ),
            allow_head=False,
        ),
    ]
