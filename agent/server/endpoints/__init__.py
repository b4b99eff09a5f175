"""Server RPC endpoints: Consul's KVS, Txn, Session, Catalog, Health, Status, Coordinate,
Operator and Snapshot methods, answered from the replicated StateStore and written through
raft. One module per resource, each with its methods' request and reply shapes; what they
share (query options, blocking queries, raft writes) is in `base`.

`Endpoints.handle(method, args)` is the one entry point. The server's RPC listener on 8300 and
`Server.rpc` both call it with a dict of Consul's request struct (PascalCase fields); the
reply is a dict (or a scalar where Consul's reply is one).

Routing (Consul's `Server.forward`), in this order, for every method:

1. ``args["Datacenter"]`` set and not ours -> ``forward_dc(dc, method, args)``;
   a datacenter not in ``known_datacenters()`` -> RPCError("No path to datacenter").
2. LOCAL methods (Status.*, Catalog.ListDatacenters, Coordinate.ListDatacenters,
   Internal.EventFire) are answered
   by any server from its own view.
3. A READ with ``AllowStale`` -> answered locally on any server.
4. Not the leader -> ``forward_leader(method, args)``; no known leader ->
   RPCError("No cluster leader").
5. On the leader: writes go through ``raft.apply``; reads run locally. Default reads need
   a valid leader lease (else a ``verify_leader`` round); ``RequireConsistent`` always runs
   ``raft.verify_leader()`` first.

`on_leadership` arms the leader's timers that the methods feed (session TTLs, tombstone GC,
coordinate batches) on gaining leadership and disarms them on losing it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from agent.acl import builtin
from agent.acl.resolver import DISABLED, Access, ACLResolver, Identity
from agent.config.model import ACLConfig
from agent.errors import RPCError
from agent.metrics import metrics
from agent.server.endpoints import acl as acl_endpoint
from agent.server.endpoints import autopilot as autopilot_endpoint
from agent.server.endpoints import (
    catalog,
    config_entry,
    coordinate,
    health,
    internal,
    kvs,
    operator,
    prepared_query,
    session,
    snapshot,
    status,
    txn,
)
from agent.server.endpoints.base import (
    _ACCESS,
    _WROTE,
    ERR_NO_LEADER,
    Context,
    Handler,
    Kind,
    RaftLike,
    as_bool,
)
from agent.state.acl import ANONYMOUS_ACCESSOR_ID, ANONYMOUS_SECRET
from agent.state.commands import MessageType
from agent.state.store import StateStore

log = logging.getLogger("consul.acl")

ERR_NO_DC_PATH = "No path to datacenter"

#: the endpoints Consul times on their own (defer metrics.MeasureSince in each endpoint)
ENDPOINT_KEYS = {
    "KVS.Apply": "kvs.apply",
    "Txn.Apply": "txn.apply",
    "Txn.Read": "txn.read",
    "Session.Apply": "session.apply",
    "Catalog.Register": "catalog.register",
    "Catalog.Deregister": "catalog.deregister",
    "ACL.TokenSet": "acl.token.upsert",
    "ACL.PolicySet": "acl.policy.upsert",
    "ACL.RoleSet": "acl.role.upsert",
    "Coordinate.Update": "coordinate.update",
    "PreparedQuery.Apply": "prepared-query.apply",
    "PreparedQuery.Explain": "prepared-query.explain",
    "PreparedQuery.Execute": "prepared-query.execute",
    "PreparedQuery.ExecuteRemote": "prepared-query.execute_remote",
}

RESOURCES = (
    kvs,
    txn,
    session,
    catalog,
    health,
    status,
    coordinate,
    operator,
    snapshot,
    internal,
    config_entry,
    acl_endpoint,
    autopilot_endpoint,
    prepared_query,
)

#: methods no ACL governs (each resource module's UNCHECKED)
UNCHECKED_METHODS = frozenset(
    name for resource in RESOURCES for name in getattr(resource, "UNCHECKED", ())
)

ForwardLeader = Callable[[str, dict[str, Any]], Awaitable[Any]]
ForwardDC = Callable[[str, str, dict[str, Any]], Awaitable[Any]]


class Endpoints(Context):
    """The server RPC methods of every resource module, routed as Consul's Server.forward."""

    def __init__(
        self,
        *,
        datacenter: str,
        state: StateStore,
        raft: RaftLike,
        forward_leader: ForwardLeader,
        forward_dc: ForwardDC,
        known_datacenters: Callable[[], list[str]],
        wan_coordinates: Callable[[], list[dict[str, Any]]] | None = None,
        server_name: Callable[[str, str], str | None] | None = None,
        server_tags: Callable[[str, str], dict[str, str] | None] | None = None,
        user_event: Callable[[str, bytes], None] | None = None,
        apply_timeout: float = 10.0,
        acl: ACLConfig | None = None,
        data_dir: str = "",
        datacenters_by_distance: Callable[[], list[str]] | None = None,
    ) -> None:
        acl = acl or ACLConfig()
        super().__init__(
            datacenter=datacenter,
            state=state,
            raft=raft,
            known_datacenters=known_datacenters,
            wan_coordinates=wan_coordinates,
            server_name=server_name,
            server_tags=server_tags,
            user_event=user_event,
            apply_timeout=apply_timeout,
            acl_enabled=acl.enabled,
            primary_datacenter=acl.primary_datacenter,
            data_dir=data_dir,
            forward_dc=forward_dc,
            datacenters_by_distance=datacenters_by_distance,
        )
        self.acl_config = acl
        in_primary = self.datacenter == self.primary_datacenter
        self.resolver = ACLResolver(
            self._fetch_identity,
            default_policy=acl.default_policy,
            down_policy=acl.down_policy,
            enable_key_list_policy=acl.enable_key_list_policy,
            token_ttl=acl.identity_ttl,
            version=(lambda: state.table_index(*acl_endpoint.ACL_TABLES)) if in_primary else None,
        )
        self._acl_init: asyncio.Task[None] | None = None
        self._forward_leader = forward_leader
        self._forward_dc = forward_dc
        self._methods: dict[str, tuple[Handler, Kind]] = {}
        for resource in RESOURCES:
            self._methods.update(resource.METHODS)

    def methods(self) -> list[str]:
        return sorted(self._methods)

    def on_leadership(self, is_leader: bool) -> None:
        """On the leader, arms session TTL timers, the tombstone GC and the coordinate
        batcher; on losing leadership, disarms them. Needs a running event loop."""
        if is_leader:
            self.session_timers.start()
            self.tombstone_gc.start()
            self.coordinates.start()
            if self.acl_enabled and self.datacenter == self.primary_datacenter:
                self._acl_init = asyncio.ensure_future(self._initialize_acls())
        else:
            self.session_timers.stop()
            self.tombstone_gc.stop()
            self.coordinates.stop()
            if self._acl_init is not None:
                self._acl_init.cancel()
                self._acl_init = None

    async def _initialize_acls(self) -> None:
        """Consul's initializeACLs on a new leader of the primary datacenter: the built-in
        global-management policy, the anonymous token, and the acl.tokens.initial_management
        token (which also ends bootstrapping), each written only when missing."""
        for attempt in range(30):
            try:
                await self._write_builtin_acls()
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # raft not ready yet, or leadership lost
                if not self.raft.is_leader():
                    return
                if attempt == 29:
                    log.error("failed to initialize ACLs: %s", exc)
                    return
                await asyncio.sleep(0.5)

    async def _write_builtin_acls(self) -> None:
        state = self.state
        if state.acl_policy(builtin.GLOBAL_MANAGEMENT_ID)[1] is None:
            policy = {
                "ID": builtin.GLOBAL_MANAGEMENT_ID,
                "Name": builtin.GLOBAL_MANAGEMENT_NAME,
                "Description": builtin.GLOBAL_MANAGEMENT_DESCRIPTION,
                "Rules": builtin.GLOBAL_MANAGEMENT_RULES,
            }
            policy["Hash"] = acl_endpoint._hash(policy, ("Name", "Description", "Rules"))
            await self.raft_apply(MessageType.ACL_POLICY_SET, {"Policy": policy})
            log.info("Created ACL 'global-management' policy")
        if state.acl_token(ANONYMOUS_ACCESSOR_ID)[1] is None:
            token = acl_endpoint.make_token(
                self,
                {"AccessorID": ANONYMOUS_ACCESSOR_ID, "Description": "Anonymous Token"},
                create=True,
            )
            token["SecretID"] = ANONYMOUS_SECRET
            await self.raft_apply(MessageType.ACL_TOKEN_SET, {"Token": token})
            log.info("Created ACL anonymous token from configuration")
        secret = self.acl_config.token_initial_management
        if secret and state.acl_token_by_secret(secret) is None:
            token = acl_endpoint.make_token(
                self,
                {
                    "Description": "Initial Management Token",
                    "Policies": [{"ID": builtin.GLOBAL_MANAGEMENT_ID}],
                },
                create=True,
            )
            token["SecretID"] = secret
            if state.acl_bootstrap_state()["AllowBootstrap"]:
                await self.raft_apply(MessageType.ACL_BOOTSTRAP, {"Token": token, "ResetIndex": 0})
            else:
                await self.raft_apply(MessageType.ACL_TOKEN_SET, {"Token": token})
            log.info("Created ACL initial management token from configuration")

    async def _fetch_identity(self, secret: str) -> Identity:
        if self.datacenter == self.primary_datacenter:
            return acl_endpoint.identity_of(self, secret)
        reply = await self._forward_dc(
            self.primary_datacenter,
            "ACL.Resolve",
            {"Token": secret, "Datacenter": self.primary_datacenter, "AllowStale": True},
        )
        return Identity.from_wire(reply)

    async def resolve_access(self, secret: str) -> Access:
        """The access a request carrying `secret` has (DISABLED when ACLs are off)."""
        if not self.acl_enabled:
            return DISABLED
        return await self.resolver.resolve(secret)

    async def handle_internal(self, method: str, args: dict[str, Any]) -> Any:
        """A request of this server's own (the leader's reconcile): never checked."""
        entry = self._methods.get(method)
        if entry is None:
            raise RPCError(f"rpc: can't find method {method}")
        stale_ok = entry[1] is Kind.LOCAL or (
            entry[1] is Kind.READ and as_bool(args.get("AllowStale"))
        )
        if not stale_ok and not self.raft.is_leader():
            raise RPCError("node is not the leader")
        reset = _ACCESS.set(DISABLED)
        try:
            return await entry[0](self, args)
        finally:
            _ACCESS.reset(reset)

    async def handle(self, method: str, args: dict[str, Any]) -> Any:
        """One RPC request, counted and timed in Consul's names (rpc.request, rpc.query for a
        blocking one, rpc.request_error, rpc.server.call; kvs.apply, txn.apply, ...)."""
        start = time.perf_counter()
        metrics.incr("rpc.request")
        errored = "false"
        try:
            return await self._handle(method, args)
        except RPCError:
            errored = "true"
            metrics.incr("rpc.request_error")
            raise
        finally:
            metrics.measure_since(
                "rpc.server.call", start, (("method", method), ("errored", errored))
            )
            key = ENDPOINT_KEYS.get(method)
            if key is not None:
                metrics.measure_since(key, start)

    async def _handle(self, method: str, args: dict[str, Any]) -> Any:
        entry = self._methods.get(method)
        if entry is None:
            raise RPCError(f"rpc: can't find method {method}")
        handler, kind = entry
        if not isinstance(args, dict):
            raise RPCError(f"rpc: {method} takes a map of arguments")
        dc = args.get("Datacenter") or ""
        if not isinstance(dc, str):
            raise RPCError("Datacenter must be a string")
        if (
            not dc
            and method.startswith("ACL.")
            and method != "ACL.Resolve"
            and self.datacenter != self.primary_datacenter
        ):
            # tokens, policies and roles live in the primary datacenter (Consul forwards)
            dc = self.primary_datacenter
        if dc and dc != self.datacenter:
            if dc not in self.known_datacenters():
                raise RPCError(ERR_NO_DC_PATH)
            return await self._forward_dc(dc, method, args)
        if kind is Kind.READ and args.get("MinQueryIndex"):
            metrics.incr("rpc.query")
        local = kind is Kind.LOCAL or (kind is Kind.READ and as_bool(args.get("AllowStale")))
        if not local and not self.raft.is_leader():
            if self.raft.leader() is None:
                raise RPCError(ERR_NO_LEADER)
            return await self._forward_leader(method, args)
        token = args.get("Token") or ""
        if not isinstance(token, str):
            raise RPCError("Token must be a string")
        # methods that check no ACL never resolve the token: an unknown one is no error there
        # (Consul answers /v1/status/* and /v1/acl/bootstrap whatever token a request carries)
        acc = DISABLED if method in UNCHECKED_METHODS else await self.resolve_access(token)
        reset = _ACCESS.set(acc)
        fresh = _WROTE.set(False)
        try:
            return await handler(self, args)
        finally:
            _WROTE.reset(fresh)
            _ACCESS.reset(reset)
