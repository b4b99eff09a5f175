"""The shapes of Consul's request structs senate checks before they reach state or the raft
log (see agent/schema.py); field names as Consul's JSON and msgpack spell them."""

from __future__ import annotations

from agent.schema import ListOf, MapOf, Struct

_STR_MAP = MapOf(str)

#: structs.HealthCheck (a registration's Check/Checks, a Txn Check op's body)
HEALTH_CHECK = Struct(
    {
        "Node": str,
        "CheckID": str,
        "Name": str,
        "Status": str,
        "Notes": str,
        "Output": str,
        "ServiceID": str,
        "ServiceName": str,
        "ServiceTags": ListOf(str),
        "Type": str,
        # HealthCheckDefinition: durations as strings or nanoseconds; passed on as sent
        "Definition": MapOf(object),
        "Namespace": str,
    }
)

#: structs.NodeService
NODE_SERVICE = Struct(
    {
        "ID": str,
        "Service": str,
        "Tags": ListOf(str),
        "Address": str,
        "TaggedAddresses": MapOf(Struct({"Address": str, "Port": int})),
        "Meta": _STR_MAP,
        "Port": int,
        "Weights": Struct({"Passing": int, "Warning": int}),
        "EnableTagOverride": bool,
        "Kind": str,
        "Proxy": MapOf(object),
        "Connect": MapOf(object),
        "Namespace": str,
    }
)

#: structs.RegisterRequest
REGISTER_REQUEST = Struct(
    {
        "Datacenter": str,
        "ID": str,
        "Node": str,
        "Address": str,
        "TaggedAddresses": _STR_MAP,
        "NodeMeta": _STR_MAP,
        "Service": NODE_SERVICE,
        "Check": HEALTH_CHECK,
        "Checks": ListOf(HEALTH_CHECK),
        "SkipNodeUpdate": bool,
    }
)

#: structs.DeregisterRequest
DEREGISTER_REQUEST = Struct({"Datacenter": str, "Node": str, "ServiceID": str, "CheckID": str})
