"""The catalog reads behind DNS names, over `AgentAPI.rpc` (the asyncio half of the query
path; records.py turns what they return into records).

Each read carries AllowStale as dns_config says and the agent's default token (Consul's DNS
token), is asked again without AllowStale when the answering server's LastContact exceeds
max_stale, and with use_cache is served from cache.py. After an exact miss, a node or
service spelled in another case is looked up (Consul's catalog is case-insensitive).
A lookup's outcome is `Found`: (rcode, payload).
"""

from __future__ import annotations

import ipaddress
import logging
import random
from typing import Any

from dnslib import RCODE

from agent.api import AgentAPI, RPCError
from agent.dns.cache import ReadCache
from agent.dns.config import DNSConfig
from agent.dns.names import NodeQuery, PreparedQueryName, ServiceQuery
from agent.durations import parse_seconds
from agent.state.catalog import healthy_instances

log = logging.getLogger("dns")

#: the server's error for a prepared query no ID or name names (answered NXDOMAIN)
ERR_QUERY_NOT_FOUND = "Query not found"
#: Consul's service of the servers themselves (NS records name its instances)
CONSUL_SERVICE = "consul"

#: A catalog lookup's outcome: (rcode, payload) — the node, or the instances.
Found = tuple[int, Any]


def _same_address(address: str, wanted: str) -> bool:
    """Whether a catalog address is the address a reverse name names (IPv6 in any form)."""
    if address == wanted:
        return True
    if ":" not in address:
        return False
    try:
        return str(ipaddress.IPv6Address(address)) == wanted
    except ValueError:
        return False


def _wan_node(node: dict[str, Any]) -> dict[str, Any]:
    """The node with its WAN address (TaggedAddresses["wan"]) as Address, when it has one."""
    wan = (node.get("TaggedAddresses") or {}).get("wan")
    return dict(node, Address=wan) if wan else node


class CatalogReader:
    def __init__(self, agent: AgentAPI, config: DNSConfig, datacenter: str) -> None:
        self.agent = agent
        self.config = config
        self.datacenter = datacenter
        self.cache = ReadCache(agent.rpc, config.cache_max_age) if config.use_cache else None

    async def read(self, method: str, args: dict[str, Any]) -> Any:
        """A catalog read with AllowStale as configured; too stale -> asked again of the leader."""
        stale = self.config.allow_stale
        args["AllowStale"] = stale
        # DNS answers as the agent's default token may see (Consul's DNS token)
        args["Token"] = self.agent.tokens.user_token()
        if self.cache is not None:
            reply = await self.cache.get(method, args)
        else:
            reply = await self.agent.rpc(method, args)
        if stale and float((reply or {}).get("LastContact") or 0.0) > self.config.max_stale:
            log.warning("Query results too stale, re-requesting")
            args = dict(args, AllowStale=False)
            reply = await self.agent.rpc(method, args)
        return reply

    def translate(self, datacenter: str) -> bool:
        return self.config.translate_wan_addrs and datacenter != self.datacenter

    async def node(self, query: NodeQuery) -> Found:
        """The node a name (or node ID) names: its dict, Address translated for the WAN."""
        try:
            node_args = {"Datacenter": query.datacenter, "Node": query.node}
            out = await self.read("Catalog.NodeServices", node_args)
            node_services = (out or {}).get("NodeServices")
            if not node_services:
                spelled = await self._other_case(query.datacenter, "node", query.node)
                if spelled is not None:
                    out = await self.read("Catalog.NodeServices", dict(node_args, Node=spelled))
                    node_services = (out or {}).get("NodeServices")
        except RPCError as exc:
            log.error("rpc error: %s", exc)
            return RCODE.SERVFAIL, None
        if not node_services:
            return RCODE.NXDOMAIN, None
        node = node_services.get("Node") or {}
        if self.translate(query.datacenter):
            node = _wan_node(node)
        return RCODE.NOERROR, node

    async def service(self, query: ServiceQuery) -> Found:
        """The instances that pass the health filter, shuffled; NXDOMAIN for none."""
        args = {
            "Datacenter": query.datacenter,
            "ServiceName": query.service,
            "ServiceTag": query.tag,
            "TagFilter": query.tag != "",
        }
        try:
            out = await self.read("Health.ServiceNodes", args)
            if not (out or {}).get("Nodes"):
                spelled = await self._other_case(query.datacenter, "service", query.service)
                if spelled is not None:
                    out = await self.read("Health.ServiceNodes", dict(args, ServiceName=spelled))
        except RPCError as exc:
            log.error("rpc error: %s", exc)
            return RCODE.SERVFAIL, None
        nodes = healthy_instances((out or {}).get("Nodes") or (), self.config.only_passing)
        if not nodes:
            return RCODE.NXDOMAIN, None
        if self.translate(query.datacenter):
            nodes = [dict(csn, Node=_wan_node(csn.get("Node") or {})) for csn in nodes]
        random.shuffle(nodes)
        return RCODE.NOERROR, nodes

    async def servers(self) -> list[dict[str, Any]]:
        """This datacenter's healthy servers (instances of "consul"), shuffled."""
        rcode, nodes = await self.service(ServiceQuery(self.datacenter, CONSUL_SERVICE, ""))
        if rcode != RCODE.NOERROR:
            log.warning("Unable to get list of servers")
            return []
        return list(nodes)

    async def _other_case(self, datacenter: str, kind: str, name: str) -> str | None:
        """The catalog's spelling of a node or service name that differs from `name` only in
        case, or None; asked only after an exact lookup found nothing."""
        if kind == "node":
            out = await self.read("Catalog.ListNodes", {"Datacenter": datacenter})
            names: Any = [n.get("Node", "") for n in (out or {}).get("Nodes") or ()]
        else:
            out = await self.read("Catalog.ListServices", {"Datacenter": datacenter})
            names = (out or {}).get("Services") or {}
        folded = name.lower()
        for other in names:
            if other != name and other.lower() == folded:
                return str(other)
        return None

    async def prepared_query(
        self, query: PreparedQueryName, client: str
    ) -> tuple[int, Any, str, int]:
        """Execute a prepared query as Consul's DNS does (the asking agent and address as the
        source, for Near): (rcode, instances, the datacenter they are in, TTL)."""
        ip = client.rpartition(":")[0].strip("[]") if client else ""
        agent = self.agent
        args: dict[str, Any] = {
            "Datacenter": query.datacenter,
            "QueryIDOrName": query.query,
            "Limit": 0,
            "Agent": {"Datacenter": self.datacenter, "Node": agent.node_name, "Segment": ""},
            "Source": {"Datacenter": query.datacenter, "Node": "", "Ip": ip},
        }
        try:
            out = await self.read("PreparedQuery.Execute", args)
        except RPCError as exc:
            if str(exc) == ERR_QUERY_NOT_FOUND:
                return RCODE.NXDOMAIN, None, query.datacenter, 0
            log.error("rpc error: %s", exc)
            return RCODE.SERVFAIL, None, query.datacenter, 0
        out = out if isinstance(out, dict) else {}
        datacenter = str(out.get("Datacenter") or query.datacenter)
        ttl_text = str((out.get("DNS") or {}).get("TTL") or "")
        ttl = self.config.ttl_for_service(str(out.get("Service") or ""))
        if ttl_text:
            try:
                ttl = int(parse_seconds(ttl_text))
            except ValueError:
                log.warning(
                    "Failed to parse TTL for prepared query , ignoring: ttl=%s prepared_query=%s",
                    ttl_text,
                    query.query,
                )
                ttl = 0
        nodes = list(out.get("Nodes") or ())
        if not nodes:
            return RCODE.NXDOMAIN, None, datacenter, ttl
        if self.translate(datacenter):
            nodes = [dict(csn, Node=_wan_node(csn.get("Node") or {})) for csn in nodes]
        return RCODE.NOERROR, nodes, datacenter, ttl

    async def node_at(self, address: str) -> str | None:
        """The name of this datacenter's node with `address` (a reverse name's), or None."""
        try:
            out = await self.read("Catalog.ListNodes", {"Datacenter": self.datacenter})
        except RPCError as exc:
            log.error("rpc error: %s", exc)
            return None
        for node in (out or {}).get("Nodes") or ():
            if _same_address(node.get("Address") or "", address):
                return str(node.get("Node", ""))
        return None

    async def close(self) -> None:
        if self.cache is not None:
            await self.cache.close()
