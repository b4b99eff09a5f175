"""Where to send a message for a raft server ID (raft protocol 3: IDs are node IDs, addresses
may change), shared by the asyncio runner and the simulator.

Two sources say where a server is: the configuration (what the leader last committed for its
ID) and the server itself, in the hello of every connection it opens (its ID and its own raft
address). The most recent word wins: an address a server announced is used until a
configuration change gives that ID a different address. So a server restarted on a new address
is answered at once (before the leader has rewritten its entry), and a server the
configuration does not list yet (a joining one) can be answered at all. A protocol-2 ID is an
address itself, which is the last resort.
"""

from __future__ import annotations

from collections.abc import Iterable

from agent.raft.messages import ServerInfo


class PeerAddresses:
    def __init__(self) -> None:
        self._configured: dict[str, str] = {}
        self._announced: dict[str, str] = {}

    def configuration(self, servers: Iterable[ServerInfo]) -> None:
        """The configuration changed: an ID it moves elsewhere forgets what was announced."""
        new = {s.id: s.address for s in servers}
        for sid, address in new.items():
            if self._configured.get(sid) != address and self._announced.get(sid) != address:
                self._announced.pop(sid, None)
        self._configured = new

    def announced(self, server_id: str, address: str) -> None:
        """A server said it is `server_id` at `address` (a connection's hello)."""
        if server_id != address:
            self._announced[server_id] = address

    def resolve(self, server_id: str) -> str | None:
        """The address for `server_id`, or None when nothing names one."""
        return self._announced.get(server_id) or self._configured.get(server_id)

    def addresses(self) -> set[str]:
        """Every address some server may be reached at (the connections worth keeping)."""
        return {*self._configured.values(), *self._announced.values()}
