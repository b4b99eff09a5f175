"""What an agent tells the others about itself in its gossip tags, and how they read it
(Consul's agent/metadata package).

Every agent sets these tags on its LAN member (servers on their WAN member too); the leader,
bootstrap-expect, the client's server router and `senate members` read them back.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol, TypeVar

#: Tag names, as Consul's (serf tags are strings).
TAG_ROLE = "role"
TAG_DC = "dc"
TAG_ID = "id"
TAG_VSN = "vsn"
TAG_VSN_MIN = "vsn_min"
TAG_VSN_MAX = "vsn_max"
TAG_BUILD = "build"
TAG_PORT = "port"
TAG_RAFT_VSN = "raft_vsn"
TAG_WAN_JOIN_PORT = "wan_join_port"
TAG_BOOTSTRAP = "bootstrap"
TAG_EXPECT = "expect"

#: Values of the role tag.
ROLE_SERVER = "consul"
ROLE_CLIENT = "node"

DEFAULT_SERVER_PORT = 8300
#: the raft protocol servers announce in their raft_vsn tag (Consul 1.x's default, 3)
RAFT_PROTOCOL = 3


class MemberLike(Protocol):
    name: str
    addr: str
    port: int
    tags: dict[str, str]
    status: str


M = TypeVar("M", bound=MemberLike)


@dataclass(frozen=True, slots=True)
class ServerParts:
    """What a member's tags say about it as a server (Consul's metadata.IsConsulServer)."""

    name: str
    datacenter: str
    address: str  # "ip:port" of its server RPC/raft port; its raft ID under protocol 2
    bootstrap: bool
    expect: int
    node_id: str  # its raft ID under protocol 3
    #: the raft protocol it speaks (its raft_vsn tag; 0 when it names none, as Consul)
    raft_version: int = 0

    @property
    def raft_id(self) -> str:
        """The ID raft knows it by when it joins: its node ID under protocol 3."""
        return self.node_id if self.raft_version >= 3 and self.node_id else self.address

    @property
    def port(self) -> int:
        return int(self.address.rpartition(":")[2])


def server_parts(member: MemberLike) -> ServerParts | None:
    """The server a member is, or None for a client (or tags that do not parse)."""
    tags = member.tags
    if tags.get(TAG_ROLE) != ROLE_SERVER:
        return None
    try:
        port = int(tags.get(TAG_PORT, str(DEFAULT_SERVER_PORT)))
        expect = int(tags.get(TAG_EXPECT, "0"))
        raft_version = int(tags.get(TAG_RAFT_VSN, "0"))
    except ValueError:
        return None
    return ServerParts(
        name=member.name,
        datacenter=tags.get(TAG_DC, ""),
        address=f"{member.addr}:{port}",
        bootstrap=tags.get(TAG_BOOTSTRAP) == "1",
        expect=expect,
        node_id=tags.get(TAG_ID, ""),
        raft_version=raft_version,
    )


def agent_tags(
    *,
    server: bool,
    datacenter: str,
    node_id: str,
    protocol: int,
    protocol_min: int,
    protocol_max: int,
    build: str,
    server_port: int = DEFAULT_SERVER_PORT,
    wan_join_port: int = 0,
    bootstrap: bool = False,
    expect: int = 0,
    read_replica: bool = False,
    raft_protocol: int = RAFT_PROTOCOL,
) -> dict[str, str]:
    """The tags an agent gossips (Consul's setupSerf)."""
    tags = {
        TAG_ROLE: ROLE_SERVER if server else ROLE_CLIENT,
        TAG_DC: datacenter,
        TAG_ID: node_id,
        TAG_VSN: str(protocol),
        TAG_VSN_MIN: str(protocol_min),
        TAG_VSN_MAX: str(protocol_max),
        TAG_BUILD: build,
    }
    if server:
        tags[TAG_PORT] = str(server_port)
        # raft protocol 3 as Consul 1.x's: raft names a server by its node ID; the leader
        # rewrites protocol 2's address IDs once every server says 3 here
        tags[TAG_RAFT_VSN] = str(raft_protocol)
        tags[TAG_WAN_JOIN_PORT] = str(wan_join_port)
        if bootstrap:
            tags[TAG_BOOTSTRAP] = "1"
        if expect:
            tags[TAG_EXPECT] = str(expect)
        if read_replica:
            # Consul's read replicas (non-voting servers): autopilot never promotes them
            tags["read_replica"] = "1"
            tags["nonvoter"] = "1"
    return tags


_META_KEY = re.compile(r"[a-zA-Z0-9_-]+")


def meta_problem(meta: dict[str, str], allow_reserved: bool = False) -> str:
    """Consul's structs.ValidateMetadata, "" when the metadata is fine; `allow_reserved`
    accepts the `consul-` keys (a prepared query may filter on them)."""
    if len(meta) > 64:
        return "Node metadata cannot contain more than 64 key/value pairs"
    for key, value in meta.items():
        if not key:
            return "Key cannot be blank"
        if not _META_KEY.fullmatch(key):
            return f"Key contains invalid characters: {key}"
        if len(key) > 128:
            return f"Key is too long (limit: 128 characters): {key}"
        if key.startswith("consul-") and not allow_reserved:
            return f"Key prefix 'consul-' is reserved for internal use: {key}"
        if len(value) > 512:
            return f"Value is too long (limit: 512 characters): {key}"
    return ""


def server_member(members: Iterable[M], address: str, raft_id: str = "") -> M | None:
    """The member that is raft server (`raft_id`, `address`): the server with that node ID
    (a protocol-3 ID, which survives a new address), else the server at that address."""
    at_address = None
    for m in members:
        parts = server_parts(m)
        if parts is None:
            continue
        if raft_id and parts.node_id == raft_id:
            return m
        if parts.address == address and at_address is None:
            at_address = m
    return at_address


def min_raft_protocol(members: Iterable[MemberLike], datacenter: str) -> int:
    """The lowest raft protocol the servers of `datacenter` speak, left ones aside (Consul's
    autopilot MinRaftProtocol); 0 with no server."""
    versions = [
        parts.raft_version
        for m in members
        if m.status != "left"
        and (parts := server_parts(m)) is not None
        and parts.datacenter == datacenter
    ]
    return min(versions, default=0)
