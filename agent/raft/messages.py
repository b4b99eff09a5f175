"""What crosses `RaftCore`'s boundary: log records, the messages servers exchange, `Ready`,
and the errors a proposal can raise. Plain frozen data, shared by the core, the runner, the
wire codec, the log store and the simulator."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

VOTER = "Voter"
NONVOTER = "Nonvoter"


class Role(enum.Enum):
    FOLLOWER = "Follower"
    PRE_CANDIDATE = "PreCandidate"
    CANDIDATE = "Candidate"
    LEADER = "Leader"


class EntryKind(enum.IntEnum):
    COMMAND = 0
    NOOP = 1
    CONFIGURATION = 2


@dataclass(frozen=True, slots=True)
class ServerInfo:
    id: str  # Consul 0.7 uses the raft address "ip:8300" as the server ID
    address: str  # "ip:port"
    suffrage: str  # "Voter" | "Nonvoter"


@dataclass(frozen=True, slots=True)
class Entry:
    index: int
    term: int
    kind: EntryKind
    data: bytes = b""
    #: Servers of a CONFIGURATION entry.
    servers: tuple[ServerInfo, ...] = ()


@dataclass(frozen=True, slots=True)
class HardState:
    term: int
    vote: str | None


@dataclass(frozen=True, slots=True)
class SnapshotMeta:
    index: int
    term: int
    servers: tuple[ServerInfo, ...]


@dataclass(frozen=True, slots=True)
class Snapshot:
    meta: SnapshotMeta
    data: bytes


# --- messages ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RequestVote:
    term: int
    frm: str
    to: str
    last_index: int
    last_term: int
    pre_vote: bool = False
    transfer: bool = False  # sent because of TimeoutNow: voters ignore their leader lease


@dataclass(frozen=True, slots=True)
class VoteResponse:
    term: int
    frm: str
    to: str
    granted: bool
    pre_vote: bool = False


@dataclass(frozen=True, slots=True)
class AppendEntries:
    term: int
    frm: str
    to: str
    prev_index: int
    prev_term: int
    entries: tuple[Entry, ...]
    commit: int
    ctx: int = 0
    sent_at: float = 0.0


@dataclass(frozen=True, slots=True)
class AppendResponse:
    term: int
    frm: str
    to: str
    success: bool
    match_index: int  # on success: the follower's log matches the leader's up to here
    reject_index: int = 0  # on rejection: the prev_index that did not match
    conflict_index: int = (
        0  # hint: first index of conflict_term in the follower's log, or its last+1
    )
    conflict_term: int = 0
    ctx: int = 0
    sent_at: float = 0.0


@dataclass(frozen=True, slots=True)
class InstallSnapshot:
    term: int
    frm: str
    to: str
    meta: SnapshotMeta
    offset: int
    data: bytes
    done: bool
    ctx: int = 0
    sent_at: float = 0.0


@dataclass(frozen=True, slots=True)
class SnapshotResponse:
    term: int
    frm: str
    to: str
    index: int  # the snapshot's index
    next_offset: int  # bytes received so far
    installed: bool
    ctx: int = 0
    sent_at: float = 0.0


@dataclass(frozen=True, slots=True)
class TimeoutNow:
    term: int
    frm: str
    to: str


Message = (
    RequestVote
    | VoteResponse
    | AppendEntries
    | AppendResponse
    | InstallSnapshot
    | SnapshotResponse
    | TimeoutNow
)


@dataclass(frozen=True, slots=True)
class ReadState:
    request_id: int
    index: int | None  # None: leadership was lost, the read must be retried elsewhere


@dataclass(slots=True)
class Ready:
    hard_state: HardState | None = None
    entries: list[Entry] = field(default_factory=list)
    snapshot: Snapshot | None = None  # received from the leader: persist, then restore the FSM
    #: The leader's replication messages: they may be sent *before* this Ready is on disk,
    #: so the leader's write overlaps its followers' (thesis §10.2.1). Safe because the
    #: leader counts its own copy of an entry only after advance().
    early_messages: list[Message] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)
    committed: list[Entry] = field(default_factory=list)
    reads: list[ReadState] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (
            self.hard_state
            or self.early_messages
            or self.entries
            or self.snapshot
            or self.messages
            or self.committed
            or self.reads
        )


class NotLeader(Exception):
    """A proposal reached a server that is not (or no longer, or not now) the leader."""

    def __init__(self, leader: str | None, reason: str = "node is not the leader") -> None:
        super().__init__(reason)
        self.leader = leader


class ConfigChangeInProgress(Exception):
    """Only one membership change may be uncommitted at a time (thesis §4.1)."""
