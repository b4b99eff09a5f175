"""The state every Raft server keeps, whatever its role: the log after the snapshot floor, the
membership configuration it implies, the latest snapshot, and (for a leader) one `Progress` per
follower. `RaftState` is the base of `RaftCore`; it changes no role and sends nothing."""

from __future__ import annotations

import enum
import random
from collections import deque
from dataclasses import dataclass, field

from agent.raft.config import RaftConfig
from agent.raft.messages import (
    VOTER,
    Entry,
    EntryKind,
    HardState,
    Message,
    ReadState,
    Role,
    ServerInfo,
    Snapshot,
    SnapshotMeta,
)


class ProgressState(enum.Enum):
    PROBE = 1  # one AppendEntries at a time until the follower's match is found
    REPLICATE = 2  # pipelined: up to max_inflight AppendEntries in flight
    SNAPSHOT = 3  # sending InstallSnapshot chunks


@dataclass(slots=True)
class Progress:
    """What the leader knows about one follower."""

    match: int = 0
    next: int = 1
    state: ProgressState = ProgressState.PROBE
    probe_sent: bool = False
    inflight: deque[int] = field(default_factory=deque)  # last index of each AE in flight
    acked_ctx: int = 0
    acked_sent_at: float = -1.0
    #: the heartbeat round (ctx) of the answer that last raised `match`
    match_ctx: int = 0
    last_progress: float = 0.0
    snap_index: int = 0
    snap_offset: int = 0
    snap_sent: bool = False


class RaftState:
    """One server's Raft state; `agent.raft.core` says how it is driven."""

    def __init__(
        self,
        node_id: str,
        config: RaftConfig,
        rng: random.Random,
        *,
        now: float = 0.0,
        hard_state: HardState | None = None,
        entries: list[Entry] | None = None,
        snapshot: Snapshot | None = None,
        aliases: tuple[str, ...] = (),
    ) -> None:
        # Who this server is: its raft ID (a node ID under raft protocol 3, its address under
        # 2) and the other IDs that also mean it (its address: a configuration written under
        # protocol 2 names it so until the leader rewrites the entry). `id` is the one the
        # current configuration uses, the name it votes, leads and answers under.
        self.identities = (node_id, *(a for a in aliases if a != node_id))
        self.id = node_id
        self.cfg = config
        self.rng = rng
        self.now = now
        self.term = hard_state.term if hard_state else 0
        self.vote: str | None = hard_state.vote if hard_state else None
        self.role = Role.FOLLOWER
        self.leader_id: str | None = None
        # The log: entries after the "floor" (snap_index/snap_term: the last entry dropped from
        # the log; it is at or before the latest snapshot's index, since a snapshot keeps
        # trailing_logs entries). log[i - log_start] is the entry at index i.
        self.snap: SnapshotMeta | None = snapshot.meta if snapshot else None
        self.snap_index = snapshot.meta.index if snapshot else 0
        self.snap_term = snapshot.meta.term if snapshot else 0
        self.snap_servers: tuple[ServerInfo, ...] = snapshot.meta.servers if snapshot else ()
        self.snapshot_data: bytes | None = snapshot.data if snapshot else None
        self.log: list[Entry] = [e for e in (entries or []) if e.index > self.snap_index]
        for i, e in enumerate(self.log):
            assert e.index == self.snap_index + 1 + i, "log store returned a gap"
        self.commit_index = self.snap_index
        self.applied_index = self.snap_index  # last index handed out in Ready.committed
        self.stable_index = self.last_index  # last index known to be on disk
        self.unstable_from = self.last_index + 1  # first index not yet handed out in a Ready
        self.servers: tuple[ServerInfo, ...] = ()
        self.config_index = 0
        self.progress: dict[str, Progress] = {}  # leader only: one per other server
        self._reload_configuration()
        self._persisted_hs = HardState(self.term, self.vote)
        self._msgs: list[Message] = []
        self._reads: list[ReadState] = []
        self._incoming_snapshot: Snapshot | None = None
        self._snap_buffer: bytearray | None = None
        self._snap_buffer_meta: SnapshotMeta | None = None
        # Timers (absolute times on the caller's clock).
        self.last_leader_contact: float | None = None
        self._election_deadline = 0.0
        self._heartbeat_deadline = 0.0
        self._reset_election_timer()
        # Candidate state.
        self._votes: dict[str, bool] = {}
        # Leader state.
        self.ctx = 0
        self._heartbeat_needed = False
        self._pending_reads: list[tuple[int, int | None, int]] = []  # (id, index, ctx needed)
        self.transferee: str | None = None
        self._transfer_deadline = 0.0
        self.lead_since = 0.0
        self._became_leader_index = 0
        self._logged_no_peers = False

    # ------------------------------------------------------------------ log helpers

    @property
    def last_index(self) -> int:
        return self.log[-1].index if self.log else self.snap_index

    @property
    def last_term(self) -> int:
        return self.log[-1].term if self.log else self.snap_term

    @property
    def log_start(self) -> int:
        return self.snap_index + 1

    def term_at(self, index: int) -> int | None:
        if index == self.snap_index:
            return self.snap_term
        if index < self.snap_index or index > self.last_index:
            return None
        return self.log[index - self.log_start].term

    def entry(self, index: int) -> Entry:
        return self.log[index - self.log_start]

    def entries_from(self, lo: int, hi: int) -> list[Entry]:
        """Entries lo..hi inclusive (all must be in the log)."""
        return self.log[lo - self.log_start : hi - self.log_start + 1]

    def _truncate_from(self, index: int) -> None:
        assert index > self.commit_index, "tried to truncate a committed entry"
        del self.log[index - self.log_start :]
        self.unstable_from = min(self.unstable_from, index)
        self.stable_index = min(self.stable_index, index - 1)
        if self.config_index >= index:
            self._reload_configuration()

    def _append(self, entry: Entry) -> None:
        assert entry.index == self.last_index + 1
        self.log.append(entry)
        if entry.kind == EntryKind.CONFIGURATION:
            self._set_configuration(entry.servers, entry.index)

    def _reload_configuration(self) -> None:
        for e in reversed(self.log):
            if e.kind == EntryKind.CONFIGURATION:
                self._set_configuration(e.servers, e.index)
                break
        else:
            self._set_configuration(self.snap_servers, self.snap_index)

    def _set_configuration(self, servers: tuple[ServerInfo, ...], index: int) -> None:
        before = self.servers
        self.servers, self.config_index = servers, index
        listed = {s.id for s in servers}
        me = next((i for i in self.identities if i in listed), self.identities[0])
        if me != self.id:
            # The entry naming this server was rewritten (protocol 2's address ID to the
            # node ID): same server, same log, same vote; a leader leads under the new name.
            if self.leader_id == self.id:
                self.leader_id = me
            self.id = me
        self._on_configuration_changed(before)

    # ------------------------------------------------------------------ configuration

    def voters(self) -> list[str]:
        return [s.id for s in self.servers if s.suffrage == VOTER]

    def is_voter(self) -> bool:
        return any(s.id == self.id and s.suffrage == VOTER for s in self.servers)

    def quorum(self) -> int:
        return len(self.voters()) // 2 + 1

    def me(self, addressed_to: str) -> str:
        """The ID to answer a message under: the one it was sent to, if that is one of ours
        (a leader whose configuration already renamed us expects the new name)."""
        return addressed_to if addressed_to in self.identities else self.id

    def address_of(self, node_id: str) -> str | None:
        for s in self.servers:
            if s.id == node_id:
                return s.address
        return None

    def _on_configuration_changed(self, before: tuple[ServerInfo, ...] = ()) -> None:
        if self.role != Role.LEADER:
            return
        # Iterate in configuration order, never over sets: the order of messages must not
        # depend on string hashing, or a simulator seed would not replay.
        ids = [s.id for s in self.servers if s.id != self.id]
        old_address = {s.id: s.address for s in before}
        renamed: dict[str, Progress] = {}  # address -> progress of an ID that left it
        for gone in [p for p in self.progress if p not in ids]:
            pr = self.progress.pop(gone)
            if gone in old_address:
                renamed[old_address[gone]] = pr
        for s in self.servers:
            if s.id == self.id or s.id in self.progress:
                continue
            # An entry rewritten to a new ID at the same address is the same server (the
            # protocol-3 upgrade): it keeps what we know of its log and its acks.
            carried = renamed.pop(s.address, None)
            self.progress[s.id] = carried or Progress(
                next=self.last_index + 1, last_progress=self.now
            )

    # ------------------------------------------------------------------ timers

    def _reset_election_timer(self) -> None:
        t = self.cfg.election_timeout
        self._election_deadline = self.now + t + self.rng.random() * t

    def _committed_in_term(self) -> bool:
        return self.commit_index >= self._became_leader_index

    def compact(self, index: int, data: bytes) -> None:
        """The state machine's snapshot at applied `index`: keep `trailing_logs` entries before it."""
        assert index <= self.applied_index, "snapshot of unapplied entries"
        if self.snap is not None and index <= self.snap.index:
            return
        term = self.term_at(index)
        assert term is not None
        self.snap = SnapshotMeta(index, term, self._servers_at(index))
        self.snapshot_data = data
        floor = index - self.cfg.trailing_logs
        if floor > self.snap_index:
            floor_term = self.term_at(floor)
            assert floor_term is not None
            floor_servers = self._servers_at(floor)
            del self.log[: floor - self.log_start + 1]
            self.snap_index, self.snap_term, self.snap_servers = floor, floor_term, floor_servers

    def snapshot_meta(self) -> SnapshotMeta | None:
        return self.snap

    def _servers_at(self, index: int) -> tuple[ServerInfo, ...]:
        lo = self.log_start
        for i in range(min(index, self.last_index), lo - 1, -1):
            e = self.log[i - lo]
            if e.kind == EntryKind.CONFIGURATION:
                return e.servers
        return self.snap_servers
