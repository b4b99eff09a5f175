"""What the agent's listeners share to refuse a client cheaply: a count of each client
address's open connections against a limit (limits.*_max_conns_per_client), and a log of
refusals that says so once a minute per client, whatever the number of clients."""

from __future__ import annotations

import time

#: a refusal is logged once this often per client address, at most
REFUSAL_LOG_EVERY = 60.0
_MAX_REMEMBERED = 4096


class OncePerClient:
    """`due(client)`: whether a refusal of `client` is to be logged now."""

    def __init__(self, every: float = REFUSAL_LOG_EVERY) -> None:
        self.every = every
        self._last: dict[str, float] = {}

    def due(self, client: str) -> bool:
        now = time.monotonic()
        if now - self._last.get(client, -self.every) < self.every:
            return False
        if len(self._last) > _MAX_REMEMBERED:  # bounded whatever the number of clients
            self._last.clear()
        self._last[client] = now
        return True


class ConnsPerClient:
    """Open connections per client address; `admit` refuses past `limit` (0: no limit)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open: dict[str, int] = {}
        self.refused = 0
        self.log_due = OncePerClient()

    def admit(self, client: str) -> bool:
        """Count a new connection of `client`, or refuse it (False: log when log_due says)."""
        held = self.open.get(client, 0)
        if self.limit and held >= self.limit:
            self.refused += 1
            return False
        self.open[client] = held + 1
        return True

    def release(self, client: str, _done: object = None) -> None:
        left = self.open.get(client, 1) - 1
        if left > 0:
            self.open[client] = left
        else:
            self.open.pop(client, None)
