"""The agent's own views of its services, as Consul 1.x serves them: /v1/agent/services and
/v1/agent/service/:id in the api.AgentService shape, the local health of a service by ID or
name (/v1/agent/health/service/*: 200 passing, 429 warning, 503 critical, as load balancers
read it), and /v1/agent/host and /v1/agent/version."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import socket
import time
from typing import Any

import psutil
from aiohttp import web

from agent.filter import FilterError, filter_dict
from agent.http.common import HTTPError, access_of, agent_of, json_response, need
from agent.http.query import request_filter
from agent.version import BUILD_DATE, REVISION, VERSION

#: Consul's aggregated status order: the worst check wins
_SEVERITY = {"passing": 0, "warning": 1, "critical": 2}
_HTTP_STATUS = {"passing": 200, "warning": 429, "critical": 503}


def agent_service_json(svc: dict[str, Any], datacenter: str) -> dict[str, Any]:
    """A local service as api.AgentService: 1.x's fields, Weights and Datacenter included."""
    out: dict[str, Any] = {
        "ID": svc.get("ID", ""),
        "Service": svc.get("Service", ""),
        "Tags": list(svc.get("Tags") or []),
        "Meta": dict(svc.get("Meta") or {}),
        "Port": svc.get("Port", 0),
        "Address": svc.get("Address", ""),
    }
    if svc.get("Kind"):
        out["Kind"] = svc["Kind"]
    if svc.get("TaggedAddresses"):
        out["TaggedAddresses"] = dict(svc["TaggedAddresses"])
    out["Weights"] = dict(svc.get("Weights") or {"Passing": 1, "Warning": 1})
    out["EnableTagOverride"] = bool(svc.get("EnableTagOverride"))
    out["Datacenter"] = datacenter
    return out


def _services(request: web.Request) -> dict[str, dict[str, Any]]:
    agent = agent_of(request)
    return {
        sid: agent_service_json(svc, agent.datacenter)
        for sid, svc in agent.local_services().items()
    }


async def _visible_services(request: web.Request) -> dict[str, dict[str, Any]]:
    """The agent's services the request's token may read (service:read of each)."""
    acc = await access_of(request)
    return {
        sid: s for sid, s in _services(request).items() if acc.can("service", "read", s["Service"])
    }


async def _visible_checks(request: web.Request) -> dict[str, dict[str, Any]]:
    acc = await access_of(request)
    agent = agent_of(request)
    out = {}
    for cid, chk in agent.local_checks().items():
        if chk.get("ServiceName"):
            ok = acc.can("service", "read", str(chk["ServiceName"]))
        else:
            ok = acc.can("node", "read", agent.node_name)
        if ok:
            out[cid] = chk
    return out


async def agent_services(request: web.Request) -> web.Response:
    flt = request_filter(request)
    services = await _visible_services(request)
    try:
        return json_response(request, filter_dict(flt, services))
    except FilterError as exc:
        raise HTTPError(400, str(exc)) from None


async def agent_checks(request: web.Request) -> web.Response:
    flt = request_filter(request)
    checks = await _visible_checks(request)
    try:
        return json_response(request, filter_dict(flt, checks))
    except FilterError as exc:
        raise HTTPError(400, str(exc)) from None


async def agent_service(request: web.Request) -> web.Response:
    sid = request.match_info["id"]
    svc = _services(request).get(sid)
    if svc is None:
        raise HTTPError(404, f"unknown service ID: {sid}")
    await need(request, "service", "read", svc["Service"])
    body = dict(svc, ContentHash=_hash(svc))
    return json_response(request, body, {"X-Consul-ContentHash": body["ContentHash"]})


def _hash(obj: Any) -> str:
    return hashlib.blake2b(json.dumps(obj, sort_keys=True).encode(), digest_size=8).hexdigest()


def _health(
    local: list[dict[str, Any]], sid: str, svc: dict[str, Any]
) -> tuple[str, dict[str, Any]]:
    """The worst status of a service's checks and of the node's own (`local`: the agent's)."""
    checks = [c for c in local if c.get("ServiceID") == sid]
    node_checks = [c for c in local if not c.get("ServiceID")]
    status = "passing"
    for c in (*checks, *node_checks):
        s = c.get("Status", "critical")
        if _SEVERITY.get(s, 2) > _SEVERITY[status]:
            status = s if s in _SEVERITY else "critical"
    return status, {"AggregatedStatus": status, "Service": svc, "Checks": checks}


def _answer(request: web.Request, status: str, body: Any) -> web.Response:
    code = _HTTP_STATUS[status]
    if request.query.get("format") == "text":
        return web.Response(status=code, text=status, content_type="text/plain")
    return json_response(request, body, status=code)


async def health_by_id(request: web.Request) -> web.Response:
    sid = request.match_info["id"]
    svc = _services(request).get(sid)
    if svc is None:
        if request.query.get("format") == "text":
            return web.Response(status=404, text=f"ServiceId {sid} not found")
        raise HTTPError(404, f"ServiceId {sid} not found")
    await need(request, "service", "read", svc["Service"])
    status, body = _health(list(agent_of(request).local_checks().values()), sid, svc)
    return _answer(request, status, body)


async def health_by_name(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    await need(request, "service", "read", name)
    found = [(sid, s) for sid, s in _services(request).items() if s["Service"] == name]
    if not found:
        if request.query.get("format") == "text":
            return web.Response(status=404, text=f"ServiceName {name} Not Found")
        return json_response(request, [], status=404)
    local = list(agent_of(request).local_checks().values())
    results = [_health(local, sid, svc) for sid, svc in found]
    worst = max((s for s, _ in results), key=lambda s: _SEVERITY[s])
    return _answer(request, worst, [body for _, body in results])


async def agent_host(request: web.Request) -> web.Response:
    """/v1/agent/host: what Consul's debug.CollectHostInfo gathers (gopsutil), via psutil."""
    await need(request, "operator", "read")  # as Consul's AgentHost
    vm = psutil.virtual_memory()
    disk = psutil.disk_usage(os.getcwd())
    boot = int(psutil.boot_time())
    uname = platform.uname()
    freq = psutil.cpu_freq()
    body = {
        "Memory": {
            "total": vm.total,
            "available": vm.available,
            "used": vm.used,
            "usedPercent": vm.percent,
            "free": vm.free,
        },
        "CPU": [
            {
                "cpu": i,
                "vendorId": "",
                "modelName": uname.processor or uname.machine,
                "mhz": freq.current if freq else 0,
                "cores": 1,
            }
            for i in range(psutil.cpu_count() or 1)
        ],
        "Host": {
            "hostname": socket.gethostname(),
            "uptime": int(time.time()) - boot,
            "bootTime": boot,
            "procs": len(psutil.pids()),
            "os": uname.system.lower(),
            "platform": platform.system().lower(),
            "kernelVersion": uname.release,
            "kernelArch": uname.machine,
        },
        "Disk": {
            "path": os.getcwd(),
            "total": disk.total,
            "free": disk.free,
            "used": disk.used,
            "usedPercent": disk.percent,
        },
        "CollectionTime": time.time_ns(),
        "Errors": None,
    }
    return json_response(request, body)


async def agent_version(request: web.Request) -> web.Response:
    body = {
        "SHA": REVISION,
        "BuildDate": BUILD_DATE,
        "HumanVersion": VERSION,
        "FIPS": "",
    }
    return json_response(request, body)


def routes() -> list[web.RouteDef]:
    ident = "{id:.*}"
    return [
        web.get("/v1/agent/services", agent_services, allow_head=False),
        web.get("/v1/agent/checks", agent_checks, allow_head=False),
        web.get(f"/v1/agent/service/{ident}", agent_service, allow_head=False),
        web.get(f"/v1/agent/health/service/id/{ident}", health_by_id, allow_head=False),
        web.get("/v1/agent/health/service/name/{name}", health_by_name, allow_head=False),
        web.get("/v1/agent/host", agent_host, allow_head=False),
        web.get("/v1/agent/version", agent_version, allow_head=False),
    ]
