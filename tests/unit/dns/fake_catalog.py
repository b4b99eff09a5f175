"""A fake agent for the DNS tests: a small catalog answered in the shapes of
agent/server/endpoints.py, with every RPC recorded."""

from __future__ import annotations

from typing import Any

from agent_double import WithoutACLs

from agent.api import RPCError


class FakeCatalogAgent(WithoutACLs):
    node_name = "n1"
    datacenter = "dc1"
    is_server = True

    def __init__(self) -> None:
        self.nodes: dict[str, str] = {}  # name -> address
        #: (node, service id) -> {Service, Tags, Address, Port, Status}
        self.services: list[dict[str, Any]] = []
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.error: str | None = None
        self.last_contact: list[float] = []

    def add_node(self, name: str, address: str) -> None:
        self.nodes[name] = address

    def add_service(
        self,
        node: str,
        service: str,
        port: int,
        *,
        tags: list[str] | None = None,
        address: str = "",
        status: str = "passing",
        sid: str = "",
    ) -> None:
        self.services.append(
            {
                "Node": node,
                "ID": sid or service,
                "Service": service,
                "Tags": tags or [],
                "Address": address,
                "Port": port,
                "Status": status,
            }
        )

    def _meta(self) -> dict[str, Any]:
        lc = self.last_contact.pop(0) if self.last_contact else 0.0
        return {"Index": 7, "KnownLeader": True, "LastContact": lc}

    def _node(self, name: str) -> dict[str, Any]:
        return {
            "ID": "",
            "Node": name,
            "Address": self.nodes[name],
            "TaggedAddresses": {},
            "Meta": {},
            "CreateIndex": 1,
            "ModifyIndex": 1,
        }

    async def rpc(self, method: str, args: dict[str, Any]) -> Any:
        self.calls.append((method, dict(args)))
        if self.error is not None:
            raise RPCError(self.error)
        if method == "Catalog.NodeServices":
            name = args["Node"]
            if name not in self.nodes:
                return {"NodeServices": None, **self._meta()}
            svcs = {s["ID"]: s for s in self.services if s["Node"] == name}
            return {"NodeServices": {"Node": self._node(name), "Services": svcs}, **self._meta()}
        if method == "Catalog.ListNodes":
            return {"Nodes": [self._node(n) for n in sorted(self.nodes)], **self._meta()}
        if method == "Catalog.ListServices":
            services: dict[str, list[str]] = {}
            for s in self.services:
                services.setdefault(s["Service"], []).extend(s["Tags"])
            return {"Services": services, **self._meta()}
        if method == "Health.ServiceNodes":
            out = []
            for s in self.services:
                if s["Service"] != args["ServiceName"]:
                    continue
                if args.get("TagFilter") and args["ServiceTag"].lower() not in [
                    t.lower() for t in s["Tags"]
                ]:
                    continue
                out.append(
                    {
                        "Node": self._node(s["Node"]),
                        "Service": {k: s[k] for k in ("ID", "Service", "Tags", "Address", "Port")},
                        "Checks": [
                            {"Node": s["Node"], "CheckID": "serfHealth", "Status": "passing"},
                            {
                                "Node": s["Node"],
                                "CheckID": "service:" + s["ID"],
                                "Status": s["Status"],
                            },
                        ],
                    }
                )
            return {"Nodes": out, **self._meta()}
        raise RPCError(f"unexpected method {method}")
