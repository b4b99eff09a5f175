"""The known-members snapshot under `<data_dir>/serf/` (serf snapshot.go), sans-IO.

A line-oriented text file, as Serf writes it:
    alive: node1 10.0.0.1:8301
    not-alive: node1
    clock: 5
    event-clock: 3
    query-clock: 1
    leave
A restarted agent rejoins the nodes still alive in it and keeps its Lamport clocks so it
does not replay old user events. `leave` (a graceful leave) means: do not rejoin -- unless
the agent runs with `rejoin_after_leave`, which ignores it, as Serf's RejoinAfterLeave.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class SnapshotState:
    alive: dict[str, str] = field(default_factory=dict)  # name -> "ip:port"
    clock: int = 0
    event_clock: int = 0
    query_clock: int = 0
    left: bool = False
    bad_lines: int = 0


def parse(text: str, rejoin_after_leave: bool = False) -> SnapshotState:
    state = SnapshotState()
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, _, value = line.partition(":")
        value = value.strip()
        try:
            if key == "alive":
                name, addr = value.rsplit(" ", 1)
                state.alive[name] = addr
                state.left = False
            elif key == "not-alive":
                state.alive.pop(value, None)
            elif key == "clock":
                state.clock = int(value)
            elif key == "event-clock":
                state.event_clock = int(value)
            elif key == "query-clock":
                state.query_clock = int(value)
            elif key == "leave":
                state.left = True
                if not rejoin_after_leave:
                    state.alive.clear()
            else:
                state.bad_lines += 1
        except ValueError:
            state.bad_lines += 1
    return state


def render(state: SnapshotState) -> str:
    lines = [f"alive: {name} {addr}" for name, addr in sorted(state.alive.items())]
    lines += [
        f"clock: {state.clock}",
        f"event-clock: {state.event_clock}",
        f"query-clock: {state.query_clock}",
    ]
    if state.left:
        lines.append("leave")
    return "\n".join(lines) + "\n"
