"""Autopilot, as Consul 1.x's (hashicorp/raft-autopilot): on the leader, every server's health,
the datacenter's failure tolerance, promotion of new servers once they have been healthy for
`ServerStabilizationTime`, and removal of dead servers while quorum and `MinQuorum` allow.

The decisions are pure functions over one observation of raft and gossip (`ServerView`s), so
the simulator and unit tests drive them with a virtual clock; `Autopilot` keeps what must
survive between passes (each server's StableSince) and turns the decisions into raft changes.

Health (raft-autopilot's isHealthy): serf status alive; for a follower, last contact with the
leader under `LastContactThreshold`, the leader's term, and at most `MaxTrailingLogs` entries
behind the leader's last index. The leader is healthy while it is alive. FailureTolerance is
the number of healthy voters beyond a quorum of the voters.

Configuration JSON (/v1/operator/autopilot/configuration), durations as Go strings:
    {CleanupDeadServers, LastContactThreshold, MaxTrailingLogs, MinQuorum,
     ServerStabilizationTime, RedundancyZoneTag, DisableUpgradeMigration, UpgradeVersionTag,
     CreateIndex, ModifyIndex}
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from agent.durations import DurationError, format_duration, parse_duration

log = logging.getLogger("consul.autopilot")

#: Consul's defaults (agent/config/default.go)
DEFAULT_CONFIG: dict[str, Any] = {
    "CleanupDeadServers": True,
    "LastContactThreshold": "200ms",
    "MaxTrailingLogs": 250,
    "MinQuorum": 0,
    "ServerStabilizationTime": "10s",
    "RedundancyZoneTag": "",
    "DisableUpgradeMigration": False,
    "UpgradeVersionTag": "",
}
_DURATIONS = ("LastContactThreshold", "ServerStabilizationTime")
_BOOLS = ("CleanupDeadServers", "DisableUpgradeMigration")
_INTS = ("MaxTrailingLogs", "MinQuorum")
_STRINGS = ("RedundancyZoneTag", "UpgradeVersionTag")

VOTER, NONVOTER = "Voter", "Nonvoter"


class AutopilotConfigError(ValueError):
    """An autopilot configuration that cannot be used; the message names the field."""


def normalize_config(raw: Any, base: dict[str, Any] | None = None) -> dict[str, Any]:
    """A configuration body (Consul's JSON; durations as Go strings or nanoseconds) over
    `base` (the current one): every field checked, durations kept as Go strings."""
    if not isinstance(raw, dict):
        raise AutopilotConfigError("Request decode failed: expected a JSON object")
    out = dict(base or DEFAULT_CONFIG)
    fields = {str(k).replace("_", "").lower(): v for k, v in raw.items()}
    for name in (*_DURATIONS, *_BOOLS, *_INTS, *_STRINGS):
        if name.lower() not in fields:
            continue
        value = fields[name.lower()]
        if name in _DURATIONS:
            out[name] = _duration(name, value)
        elif name in _BOOLS:
            if not isinstance(value, bool):
                raise AutopilotConfigError(f"{name}: expected true or false, got {value!r}")
            out[name] = value
        elif name in _INTS:
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise AutopilotConfigError(
                    f"{name}: expected a non-negative integer, got {value!r}"
                )
            out[name] = value
        else:
            if not isinstance(value, str):
                raise AutopilotConfigError(f"{name}: expected a string, got {value!r}")
            out[name] = value
    return out


def _duration(name: str, value: Any) -> str:
    try:
        if isinstance(value, str):
            ns = parse_duration(value)
        elif isinstance(value, int) and not isinstance(value, bool):
            ns = value
        else:
            raise AutopilotConfigError(f'{name}: expected a duration such as "10s", got {value!r}')
    except DurationError as exc:
        raise AutopilotConfigError(f"{name}: {exc}") from None
    if ns < 0:
        raise AutopilotConfigError(f"{name}: must not be negative")
    return format_duration(ns)


def initial_config(settings: Iterable[tuple[str, Any]]) -> dict[str, Any]:
    """The agent's `autopilot` block (durations in seconds) over Consul's defaults."""
    out = dict(DEFAULT_CONFIG)
    for name, value in settings:
        out[name] = format_duration(round(value * 1e9)) if name in _DURATIONS else value
    return out


def seconds(config: dict[str, Any], name: str) -> float:
    return parse_duration(str(config[name])) / 1e9


@dataclass(frozen=True, slots=True)
class ServerView:
    """One server as the leader sees it in one pass."""

    id: str  # the raft ID
    name: str
    address: str
    serf_status: str  # "alive", "failed", "left", "none" (not in gossip)
    version: str
    voter: bool
    leader: bool
    #: seconds since the leader last heard from it (0 for the leader; None: never)
    last_contact: float | None
    last_term: int
    last_index: int
    #: a read replica (`read_replica`): replicates, is never promoted
    read_replica: bool = False


def healthy(view: ServerView, config: dict[str, Any], term: int, last_index: int) -> bool:
    if view.serf_status != "alive":
        return False
    if view.leader:
        return True
    if view.last_contact is None or view.last_contact > seconds(config, "LastContactThreshold"):
        return False
    if view.last_term != term:
        return False
    return last_index - view.last_index <= int(config["MaxTrailingLogs"])


def _rfc3339(wall: float) -> str:
    stamp = datetime.datetime.fromtimestamp(wall, datetime.UTC)
    return stamp.isoformat().replace("+00:00", "Z")


@dataclass
class Autopilot:
    """What autopilot remembers between passes on the leader (StableSince per server)."""

    #: monotonic and wall clocks (the simulator gives virtual ones)
    clock: Callable[[], float]
    wall: Callable[[], float]
    #: when each server was last seen to change health: id -> (healthy, since)
    _since: dict[str, tuple[bool, float]] = field(default_factory=dict)

    def observe(
        self, views: Sequence[ServerView], config: dict[str, Any], term: int, last_index: int
    ) -> dict[str, Any]:
        """The health reply (OperatorHealthReply) of this pass; updates StableSince."""
        now = self.clock()
        servers = []
        for v in views:
            ok = healthy(v, config, term, last_index)
            prev = self._since.get(v.id)
            if prev is None or prev[0] != ok:
                self._since[v.id] = (ok, now)
            since = self._since[v.id][1]
            servers.append(
                {
                    "ID": v.id,  # raft's ID, as the raft configuration shows it
                    "Name": v.name,
                    "Address": v.address,
                    "SerfStatus": v.serf_status,
                    "Version": v.version,
                    "Leader": v.leader,
                    "LastContact": format_duration(round((v.last_contact or 0.0) * 1e9))
                    if v.last_contact is not None
                    else "-1ns",
                    "LastTerm": v.last_term,
                    "LastIndex": v.last_index,
                    "Healthy": ok,
                    "Voter": v.voter,
                    "StableSince": _rfc3339(self.wall() - (now - since)),
                    "_stable_for": now - since if ok else 0.0,
                    "_raft_id": v.id,
                    "_read_replica": v.read_replica,
                }
            )
        for gone in set(self._since) - {v.id for v in views}:
            self._since.pop(gone, None)
        voters = [s for s in servers if s["Voter"]]
        healthy_voters = sum(1 for s in voters if s["Healthy"])
        quorum = len(voters) // 2 + 1
        return {
            "Healthy": all(s["Healthy"] for s in servers),
            "FailureTolerance": max(0, healthy_voters - quorum),
            "Servers": servers,
        }


def public(health: dict[str, Any]) -> dict[str, Any]:
    """The reply without autopilot's private bookkeeping fields."""
    return {
        **health,
        "Servers": [
            {k: v for k, v in s.items() if not k.startswith("_")} for s in health["Servers"]
        ],
    }


def to_promote(health: dict[str, Any], config: dict[str, Any]) -> list[str]:
    """Non-voters healthy for at least ServerStabilizationTime (raft-autopilot's promoter)."""
    stable = seconds(config, "ServerStabilizationTime")
    return [
        s["_raft_id"]
        for s in health["Servers"]
        if not s["Voter"] and not s["_read_replica"] and s["Healthy"] and s["_stable_for"] >= stable
    ]


def to_remove(
    views: Sequence[ServerView], config: dict[str, Any], *, stale: Iterable[str] = ()
) -> list[str]:
    """Dead servers to remove (raft-autopilot's pruneDeadServers): failed or left in gossip,
    or `stale` (in raft, unknown to gossip). Non-voters always go; voters only while fewer
    than half of the voters are dead, never below MinQuorum voters, and never so that the
    alive voters are not a majority of those left."""
    if not config.get("CleanupDeadServers", True):
        return []
    stale_ids = set(stale)

    def is_dead(v: ServerView) -> bool:
        return not v.leader and (v.serf_status in ("failed", "left") or v.id in stale_ids)

    out = [v.id for v in views if not v.voter and is_dead(v)]
    voters = [v for v in views if v.voter]
    dead_voters = [v for v in voters if is_dead(v)]
    if not dead_voters or len(dead_voters) * 2 >= len(voters):
        return out
    remaining = list(voters)
    for v in dead_voters:
        left = [x for x in remaining if x.id != v.id]
        if len(left) < int(config.get("MinQuorum") or 0):
            log.debug("not removing %s: MinQuorum is %s", v.name, config.get("MinQuorum"))
            break
        alive = sum(1 for x in left if not is_dead(x))
        if alive < len(left) // 2 + 1:
            break
        remaining = left
        out.append(v.id)
    return out
