"""The agent's own node: its services and checks, and anti-entropy that keeps the catalog in step.

Every agent (client or server) owns the truth about its node. `LocalState` holds the services
and checks registered on this agent (from config files or the agent HTTP API later); `AntiEntropy`
compares them with what the servers' catalog says about this node and writes the differences,
on every change and periodically, as Consul's agent/local.go does, with its log lines
(`Synced node info`, `Synced service 'consul'`, `failed to sync remote state: No cluster leader`).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from agent.errors import RPCError
from agent.tasks import cancel_and_wait

log = logging.getLogger("agent")

RPC = Callable[[str, dict[str, Any]], Awaitable[Any]]

#: Consul's aeInterval / retry interval (scaled up with cluster size in Consul; fixed here).
SYNC_INTERVAL = 60.0
RETRY_INTERVAL = 15.0


def service_from_config(svc: dict[str, Any]) -> dict[str, Any]:
    """A config file's service definition -> NodeService."""
    name = str(svc["name"])
    return {
        "ID": str(svc.get("id") or name),
        "Service": name,
        "Tags": list(svc.get("tags") or []),
        "Address": str(svc.get("address") or ""),
        "Port": int(svc.get("port") or 0),
        "Meta": dict(svc.get("meta") or {}),
        "EnableTagOverride": bool(svc.get("enable_tag_override", False)),
    }


def service_checks_from_config(node: str, svc: dict[str, Any]) -> list[dict[str, Any]]:
    """The checks embedded in a service definition ("check" / "checks"), bound to it."""
    service = service_from_config(svc)
    raw = list(svc.get("checks") or [])
    if isinstance(svc.get("check"), dict):
        raw.insert(0, svc["check"])
    out = []
    for i, chk in enumerate(c for c in raw if isinstance(c, dict)):
        # Consul names them "service:<id>" (":<n>" when there are several).
        cid = (
            chk.get("id")
            or chk.get("check_id")
            or (f"service:{service['ID']}" if len(raw) == 1 else f"service:{service['ID']}:{i + 1}")
        )
        name = chk.get("name") or f"Service '{service['Service']}' check"
        out.append(check_from_config(node, dict(chk, id=cid, name=name, service_id=service["ID"])))
    return out


def check_from_config(node: str, chk: dict[str, Any]) -> dict[str, Any]:
    """A config file's check definition -> HealthCheck (critical until it first runs)."""
    name = str(chk["name"])
    return {
        "Node": node,
        "CheckID": str(chk.get("id") or chk.get("check_id") or name),
        "Name": name,
        "Status": str(chk.get("status") or "critical"),
        "Notes": str(chk.get("notes") or ""),
        "Output": "",
        "ServiceID": str(chk.get("service_id") or ""),
        "ServiceName": "",
    }


_SERVICE_KEYS = ("ID", "Service", "Tags", "Address", "Port", "Meta", "EnableTagOverride")
_CHECK_KEYS = ("CheckID", "Name", "Status", "Notes", "Output", "ServiceID")
_CHECK_KEYS_NO_OUTPUT = tuple(k for k in _CHECK_KEYS if k != "Output")


def _same(a: dict[str, Any], b: dict[str, Any], keys: tuple[str, ...]) -> bool:
    for k in keys:
        va, vb = a.get(k), b.get(k)
        if k in ("Tags",):
            va, vb = list(va or []), list(vb or [])
        elif k == "Meta":
            va, vb = dict(va or {}), dict(vb or {})
        elif va in (None, "") and vb in (None, ""):
            continue
        if va != vb:
            return False
    return True


@dataclass
class LocalState:
    """Services and checks this agent owns; `changed` wakes anti-entropy."""

    node_name: str
    services: dict[str, dict[str, Any]] = field(default_factory=dict)
    checks: dict[str, dict[str, Any]] = field(default_factory=dict)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    check_update_interval: float = 300.0
    #: checks whose new output waits for its write-back (Consul's DeferCheck timers)
    deferred: dict[str, asyncio.TimerHandle] = field(default_factory=dict)
    #: the ACL token each service and check was registered with ("service:<id>",
    #: "check:<id>"); anti-entropy syncs it with that token, or the agent's when none
    tokens: dict[str, str] = field(default_factory=dict)

    def set_token(self, kind: str, ident: str, token: str) -> None:
        if token:
            self.tokens[f"{kind}:{ident}"] = token
        else:
            self.tokens.pop(f"{kind}:{ident}", None)

    def token_args(self, kind: str, ident: str) -> dict[str, str]:
        """{"Token": ...} for an RPC about a service or check registered with a token."""
        token = self.tokens.get(f"{kind}:{ident}")
        return {"Token": token} if token else {}

    def add_service(self, svc: dict[str, Any]) -> None:
        self.services[svc["ID"]] = svc
        self.changed.set()

    def remove_service(self, service_id: str) -> bool:
        found = self.services.pop(service_id, None) is not None
        self.changed.set()
        return found

    def add_check(self, chk: dict[str, Any]) -> None:
        chk = dict(chk, Node=self.node_name)
        sid = chk.get("ServiceID") or ""
        if sid and sid in self.services:
            chk["ServiceName"] = self.services[sid]["Service"]
        self.checks[chk["CheckID"]] = chk
        self.changed.set()

    def remove_check(self, check_id: str) -> bool:
        found = self.checks.pop(check_id, None) is not None
        self._undefer(check_id)
        self.changed.set()
        return found

    def update_check(
        self, check_id: str, status: str, output: str, *, defer_output: bool = False
    ) -> None:
        """Set a check's result. A new status is synced at once. With defer_output (a check's
        own run, not an API update), a change of output alone is written back only after
        check_update_interval/2 plus up to one interval of stagger, as Consul's agent does, so
        checks whose output varies run after run do not keep the servers writing; periodic
        syncs meanwhile ignore its output. check_update_interval 0 syncs it at once."""
        chk = self.checks.get(check_id)
        if chk is None:
            return
        status_changed = chk.get("Status") != status
        if not status_changed and chk.get("Output") == output:
            return
        chk["Status"] = status
        chk["Output"] = output
        if status_changed or not defer_output or self.check_update_interval <= 0:
            self._undefer(check_id)
            self.changed.set()
            return
        if check_id in self.deferred:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop (a check loaded before the agent runs): sync it
            self.changed.set()
            return
        d = self.check_update_interval
        self.deferred[check_id] = loop.call_later(
            d / 2 + random.random() * d, self._deferred_due, check_id
        )

    def _deferred_due(self, check_id: str) -> None:
        self.deferred.pop(check_id, None)
        self.changed.set()

    def _undefer(self, check_id: str) -> None:
        timer = self.deferred.pop(check_id, None)
        if timer is not None:
            timer.cancel()


@dataclass
class AntiEntropy:
    """Keeps the catalog's view of this node equal to LocalState."""

    state: LocalState
    rpc: RPC
    datacenter: str
    node_id: str
    address: Callable[[], str]
    tagged_addresses: Callable[[], dict[str, str]]
    node_meta: dict[str, str]
    sync_interval: float = SYNC_INTERVAL
    retry_interval: float = RETRY_INTERVAL
    synced_once: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task[None] | None = None
    _kick: asyncio.Event = field(default_factory=asyncio.Event)

    def start(self) -> None:
        if not self.running:
            self._task = asyncio.create_task(self._loop())

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def trigger(self) -> None:
        """Sync soon (e.g. we joined a cluster, or a server became known)."""
        self._kick.set()

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)

    async def _wait(self, timeout: float) -> None:
        waits = [
            asyncio.create_task(self.state.changed.wait()),
            asyncio.create_task(self._kick.wait()),
        ]
        try:
            await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()

    async def _loop(self) -> None:
        while True:
            self.state.changed.clear()
            self._kick.clear()
            try:
                await self.sync_full()
                self.synced_once.set()
                # Consul staggers periodic syncs so a datacenter does not sync in lock step.
                await self._wait(self.sync_interval * (1 + random.random() / 8))
            except asyncio.CancelledError:
                raise
            except (RPCError, ConnectionError, OSError, TimeoutError) as exc:
                log.error("failed to sync remote state: %s", exc or type(exc).__name__)
                await self._wait(self.retry_interval * (0.5 + random.random() / 2))
            except Exception as exc:
                log.exception("failed to sync remote state: %s", exc)
                await self._wait(self.retry_interval)

    @staticmethod
    async def _acl_guarded(what: str, call: Awaitable[Any]) -> bool:
        """Run one sync RPC; a write the token may not do is logged as Consul logs it
        (`[WARN] agent: Node info update blocked by ACLs`) and the sync goes on."""
        try:
            await call
        except RPCError as exc:
            if not str(exc).startswith("Permission denied"):
                raise
            log.warning("%s blocked by ACLs: %s", what, exc)
            return False
        return True

    async def sync_full(self) -> None:
        node = self.state.node_name
        reply = await self.rpc(
            "Catalog.NodeServices", {"Datacenter": self.datacenter, "Node": node}
        )
        checks_reply = await self.rpc(
            "Health.NodeChecks", {"Datacenter": self.datacenter, "Node": node}
        )
        ns = (reply or {}).get("NodeServices") or {}
        remote_node = ns.get("Node") or {}
        remote_services: dict[str, dict[str, Any]] = dict(ns.get("Services") or {})
        remote_checks = {
            c["CheckID"]: c
            for c in (checks_reply or {}).get("HealthChecks") or []
            if "CheckID" in c
        }
        tagged = self.tagged_addresses()
        node_in_sync = (
            bool(remote_node)
            and remote_node.get("Address") == self.address()
            and dict(remote_node.get("TaggedAddresses") or {}) == tagged
            and dict(remote_node.get("Meta") or {}) == self.node_meta
        )
        base: dict[str, Any] = {
            "Datacenter": self.datacenter,
            "ID": self.node_id,
            "Node": node,
            "Address": self.address(),
            "TaggedAddresses": tagged,
            "NodeMeta": self.node_meta,
        }
        if not node_in_sync and await self._acl_guarded(
            "Node info update", self.rpc("Catalog.Register", dict(base))
        ):
            log.info("Synced node info")
        # Services: register missing or different ones; deregister ones we no longer have.
        for sid, svc in list(self.state.services.items()):
            remote = remote_services.get(sid)
            if remote is None or not _same(svc, remote, _SERVICE_KEYS):
                svc_checks = [c for c in self.state.checks.values() if c.get("ServiceID") == sid]
                req = dict(base, Service=svc, Checks=svc_checks or None, SkipNodeUpdate=True)
                req.update(self.state.token_args("service", sid))
                if not await self._acl_guarded(
                    f"Service registration of '{sid}'", self.rpc("Catalog.Register", req)
                ):
                    continue
                log.info("Synced service '%s'", sid)
                for c in svc_checks:
                    remote_checks[c["CheckID"]] = c
        for sid in remote_services:
            if sid not in self.state.services and sid != "consul":
                await self.rpc(
                    "Catalog.Deregister",
                    {"Datacenter": self.datacenter, "Node": node, "ServiceID": sid},
                )
                log.info("Deregistered service '%s'", sid)
        for cid, chk in list(self.state.checks.items()):
            remote = remote_checks.get(cid)
            # a check whose output waits for its write-back differs in output alone
            keys = _CHECK_KEYS_NO_OUTPUT if cid in self.state.deferred else _CHECK_KEYS
            if remote is None or not _same(chk, remote, keys):
                req = dict(base, Check=chk, SkipNodeUpdate=True)
                req.update(self.state.token_args("check", cid))
                if not await self._acl_guarded(
                    f"Check registration of '{cid}'", self.rpc("Catalog.Register", req)
                ):
                    continue
                log.info("Synced check '%s'", cid)
        for cid in remote_checks:
            if cid not in self.state.checks and cid != "serfHealth":
                await self.rpc(
                    "Catalog.Deregister",
                    {"Datacenter": self.datacenter, "Node": node, "CheckID": cid},
                )
                log.info("Deregistered check '%s'", cid)
