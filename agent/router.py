"""Which server a client agent talks to (the client side of Consul's router: agent/router's
Manager). Pure: it is told the servers gossip shows and what time it is, and answers which
server to use; the agent does the calls.

- The servers of our datacenter come from LAN gossip (`update`); each one added or removed is
  reported so the agent logs it in Consul's words.
- A client keeps one server (`current`) and moves to a random one every 120-180 s (longer in
  big clusters: at most 64 new connections per second per server), so clients that failed over
  while a server restarted spread out again.
- A server that cannot be reached is rotated away from (`failed`) to one not tried yet.
"""

from __future__ import annotations

import logging
import random

log = logging.getLogger("consul")

#: Consul's router: clientRPCMinReuseDuration (plus up to half of it again as stagger) and
#: newRebalanceConnsPerSecPerServer.
MIN_REUSE = 120.0
REUSE_STAGGER = 60.0
CONNS_PER_SEC_PER_SERVER = 64.0


def rebalance_interval(servers: int, members: int, rng: random.Random | None = None) -> float:
    """How long a client keeps its server: at least 120 s plus up to 60 s of stagger, and long
    enough that all `members` moving at once stay within 64 new connections per second per
    server."""
    low = MIN_REUSE + (rng or random).random() * REUSE_STAGGER
    return max(low, members / (max(1, servers) * CONNS_PER_SEC_PER_SERVER))


class ServerRouter:
    """The servers a client may use (name -> "ip:port") and the one it uses now."""

    def __init__(self, rng: random.Random | None = None) -> None:
        self._rng = rng or random.Random()
        self.servers: dict[str, str] = {}
        self._current: str | None = None
        self._until = 0.0  # when `current` picks again

    def update(self, servers: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
        """Replace the known servers; returns (added, removed), each name -> address."""
        added = {n: a for n, a in servers.items() if n not in self.servers}
        removed = {n: a for n, a in self.servers.items() if n not in servers}
        self.servers = dict(servers)
        return added, removed

    def name_of(self, address: str) -> str | None:
        return next((n for n, a in self.servers.items() if a == address), None)

    def current(self, now: float, members: int = 1) -> str | None:
        """The server to send the next request to (None when none is known). Past its time
        the client moves to a random server."""
        addrs = list(self.servers.values())
        if not addrs:
            return None
        if self._current not in addrs or now >= self._until:
            rebalance = self._current is not None
            self._current = self._rng.choice(addrs)
            self._until = now + rebalance_interval(len(addrs), members, self._rng)
            if rebalance:
                log.debug(
                    "manager: Rebalanced %d servers, next active server is %s",
                    len(addrs),
                    self._current,
                )
        return self._current

    def failed(self, address: str, tried: list[str]) -> str | None:
        """`address` could not be reached: move to a server not in `tried` (None when every
        one was tried); the new one is kept until its time is up."""
        rest = [a for a in self.servers.values() if a not in tried and a != address]
        if not rest:
            return None
        self._current = self._rng.choice(rest)
        return self._current

    def keep_until(self) -> float:
        """When the current server is given up for a random one (monotonic seconds)."""
        return self._until
