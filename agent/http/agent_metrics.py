"""/v1/agent/metrics: the last completed 10 s interval of the agent's metrics as go-metrics'
JSON, or `?format=prometheus` (also an OpenMetrics Accept header) the Prometheus text
exposition when `telemetry.prometheus_retention_time` is set (else an empty 200 saying why in
X-Consul-Reason, as Consul 1.x); /v1/agent/metrics/stream each
interval's summary as it completes, one JSON document a line. Both need agent:read of this
node, as Consul's."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time

from aiohttp import web

from agent.http.common import agent_of, json_response, need
from agent.metrics.prom import CONTENT_TYPE

PROMETHEUS_OFF = "Prometheus is not enabled since its retention time is not positive"


def _wants_prometheus(request: web.Request) -> bool:
    if request.query.get("format") == "prometheus":
        return True
    return "application/openmetrics-text" in request.headers.get("Accept", "")


async def agent_metrics(request: web.Request) -> web.Response:
    agent = agent_of(request)
    await need(request, "agent", "read", agent.node_name)
    telemetry = agent.telemetry
    if _wants_prometheus(request):
        if telemetry.prometheus is None:
            # Consul 1.x's CodeWithPayloadError(415) with no body: its HTTP wrapper sets the
            # X-Consul-Reason header and returns before writing the status, so Go answers an
            # empty 200 (py-consul's suite expects exactly that)
            return web.Response(status=200, body=b"", headers={"X-Consul-Reason": PROMETHEUS_OFF})
        return web.Response(
            body=telemetry.prometheus.exposition(), headers={"Content-Type": CONTENT_TYPE}
        )
    return json_response(request, telemetry.inmem.summary())


async def agent_metrics_stream(request: web.Request) -> web.StreamResponse:
    agent = agent_of(request)
    await need(request, "agent", "read", agent.node_name)
    inmem = agent.telemetry.inmem
    resp = web.StreamResponse(headers={"Content-Type": "application/json"})
    await resp.prepare(request)
    with contextlib.suppress(ConnectionResetError, RuntimeError):
        while True:
            start, end = inmem.closing()
            await asyncio.sleep(max(0.0, end - time.time()) + 0.01)
            interval = inmem.interval_at(start)
            if interval is not None:
                await resp.write(json.dumps(inmem.summary(interval)).encode() + b"\n")
    return resp


def routes() -> list[web.RouteDef]:
    return [
        web.get("/v1/agent/metrics", agent_metrics, allow_head=False),
        web.get("/v1/agent/metrics/stream", agent_metrics_stream, allow_head=False),
    ]
