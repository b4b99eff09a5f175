"""The Raft consensus algorithm as a pure state machine (sans-IO), in the manner of etcd-io/raft.

Theory of operation
-------------------
`RaftCore` owns no socket, no task, no clock and no file. The caller (the asyncio runner in
`runner.py`, or the simulator in `agent/sim/raft_cluster.py`) drives it with

* `step(msg)`       — a message from another server arrived;
* `tick(now)`       — time moved on (`next_deadline()` says when the core next cares);
* `propose(data)`   — a client command (leader only); `propose_config(servers)` for membership;
* `read_index(id)`  — a consistent read wants a confirmed commit index (ReadIndex, thesis §6.4);

and collects the effects with `ready()`, which returns a `Ready`:

1. `hard_state`, `entries`, `snapshot` — what must be on disk (fsynced) **before** anything
   else of this Ready happens. Entries whose first index is at or below the stored last index
   replace the stored suffix from that index.
2. `messages` — to send only after step 1: a vote granted or an entry acknowledged in a message
   is thereby always durable (§5.1: "updated on stable storage before responding"). The one
   exception is `early_messages`: a leader's AppendEntries may leave before its own write
   (thesis §10.2.1), because the leader counts its own copy only after `advance`.
3. `committed` — entries to apply to the state machine, in order, after step 1.
4. `reads` — ReadIndex results.

and then calls `advance(ready)`. Everything in one Ready is persisted, then sent, then applied,
and the core is not asked for the next Ready before `advance` — that single sequence is what
makes group commit work: every proposal that arrives while one Ready is being written lands in
the next Ready, one disk write and one AppendEntries per follower for all of them.

The leader counts itself towards a commit only for entries that are on its disk (it learns that
in `advance`), so a leader that crashes mid-write never counted an entry it lost.

Rules this file keeps (paper sections are of "In Search of an Understandable Consensus
Algorithm", extended version; "thesis" is Ongaro's dissertation):

* at most one vote per term, persisted before it is sent (§5.2);
* a vote only for a candidate whose log is at least as up-to-date (§5.4.1);
* a new leader appends a no-op and counts replicas only for entries of its own term (§5.4.2);
* pre-vote (thesis §9.6) and check-quorum (thesis §6.2): a server that heard from a leader
  within the minimum election timeout ignores vote requests, so a partitioned server that comes
  back cannot depose a healthy leader; a leader that has not heard from a quorum within
  `leader_lease_timeout` steps down;
* membership changes one server at a time, effective as soon as appended (thesis §4.1);
* fast backtracking: a rejection carries the conflicting term and its first index (§5.3, the
  optimisation described at the end of that section).

The one subtle case: a leader's AppendEntries carry `ctx`, a counter bumped by every heartbeat
round. A ReadIndex request waits for a quorum to echo a ctx at least as new as the round sent
after the request arrived: only then is it known that no newer leader existed when it arrived.
The echoed `sent_at` (the leader's own clock) likewise dates the leader's lease.
"""

from __future__ import annotations

import logging

from agent.raft.messages import (
    AppendEntries,
    AppendResponse,
    ConfigChangeInProgress,
    Entry,
    EntryKind,
    HardState,
    InstallSnapshot,
    Message,
    NotLeader,
    ReadState,
    Ready,
    RequestVote,
    Role,
    ServerInfo,
    Snapshot,
    SnapshotResponse,
    TimeoutNow,
    VoteResponse,
)
from agent.raft.replication import LeaderReplication

log = logging.getLogger("raft")


#: asserts each change against this table).
TRANSITIONS: dict[Role, dict[Role, str]] = {
    Role.FOLLOWER: {
        Role.PRE_CANDIDATE: "election timeout (pre-vote, thesis §9.6)",
        Role.CANDIDATE: "election timeout as the only voter, or TimeoutNow (thesis §3.10)",
    },
    Role.PRE_CANDIDATE: {
        Role.CANDIDATE: "a quorum would vote for us",
        Role.FOLLOWER: "a leader or a higher term was heard, or a quorum refused",
    },
    Role.CANDIDATE: {
        Role.LEADER: "votes from a quorum (§5.2)",
        Role.FOLLOWER: "a leader or a higher term was heard, or a quorum refused",
        Role.PRE_CANDIDATE: "election timeout: split vote, try again",
    },
    Role.LEADER: {
        Role.FOLLOWER: "a higher term, no quorum within the lease (thesis §6.2), "
        "or removed from the configuration (thesis §4.2.2)",
    },
}


class RaftCore(LeaderReplication):
    """One server's Raft state machine. See the module docstring for how to drive it."""

    def next_deadline(self) -> float:
        """The next time `tick` has something to do."""
        if self.role == Role.LEADER:
            d = self._heartbeat_deadline
            if self.transferee is not None:
                d = min(d, self._transfer_deadline)
            return d
        return self._election_deadline

    def tick(self, now: float) -> None:
        self.now = max(self.now, now)
        if self.role == Role.LEADER:
            if self.cfg.check_quorum and not self._quorum_recent(self.cfg.leader_lease_timeout):
                log.warning("Failed to contact quorum of nodes, stepping down")
                self._become_follower(self.term, None)
                return
            if self.transferee is not None and self.now >= self._transfer_deadline:
                log.warning("leadership transfer to %s timed out", self.transferee)
                self.transferee = None
            if self.now >= self._heartbeat_deadline:
                self._heartbeat_deadline = self.now + self.cfg.heartbeat_interval
                self._broadcast_heartbeat()
                self._recover_stalled()
            return
        if self.now >= self._election_deadline:
            self._reset_election_timer()
            self._campaign(transfer=False)

    def leader_address(self) -> str | None:
        if self.leader_id is None:
            return None
        return self.address_of(self.leader_id) or self.leader_id

    def _in_lease(self) -> bool:
        """Heard from a leader within the minimum election timeout (thesis §6.2 / §4.2.3)."""
        if self.role == Role.LEADER:
            return True
        return (
            self.leader_id is not None
            and self.last_leader_contact is not None
            and self.now - self.last_leader_contact < self.cfg.election_timeout
        )

    # ------------------------------------------------------------------ role changes

    def log_state(self) -> None:
        if self.role == Role.CANDIDATE:
            log.info(
                "Node at %s [Candidate] entering Candidate state in term %d", self.id, self.term
            )
        elif self.role == Role.LEADER:
            log.info("Node at %s [Leader] entering Leader state", self.id)
        elif self.role == Role.FOLLOWER:
            log.info(
                'Node at %s [Follower] entering Follower state (Leader: "%s")',
                self.id,
                self.leader_address() or "",
            )

    def _set_role(self, role: Role) -> None:
        assert role == self.role or role in TRANSITIONS[self.role], (
            f"illegal transition {self.role.value} -> {role.value}"
        )
        self.role = role

    def _become_follower(self, term: int, leader: str | None) -> None:
        was = self.role
        if term > self.term:
            self.term = term
            self.vote = None
        self._set_role(Role.FOLLOWER)
        self.leader_id = leader
        if leader is not None:
            self.last_leader_contact = self.now
        self._reset_election_timer()
        if was == Role.LEADER:
            self._fail_pending_reads()
            self.progress.clear()
            self.transferee = None
        if was != Role.FOLLOWER:
            self.log_state()

    def _campaign(self, transfer: bool) -> None:
        if not self.is_voter():
            if not self._logged_no_peers:
                self._logged_no_peers = True
                if not self.servers:
                    log.warning("no known peers, aborting election")
                else:
                    log.warning("not part of stable configuration, aborting election")
            return
        self._logged_no_peers = False
        if self.role == Role.FOLLOWER and not transfer:
            log.warning(
                'Heartbeat timeout from "%s" reached, starting election',
                self.leader_address() or "",
            )
        voters = self.voters()
        if self.cfg.pre_vote and not transfer and len(voters) > 1:
            self._set_role(Role.PRE_CANDIDATE)
            self.leader_id = None
            self._votes = {self.id: True}
            for v in voters:
                if v != self.id:
                    self._msgs.append(
                        RequestVote(
                            self.term + 1,
                            self.id,
                            v,
                            self.last_index,
                            self.last_term,
                            pre_vote=True,
                        )
                    )
            return
        self._become_candidate(transfer)

    def _become_candidate(self, transfer: bool) -> None:
        self._set_role(Role.CANDIDATE)
        self.term += 1
        self.vote = self.id
        self.leader_id = None
        self._votes = {self.id: True}
        self._reset_election_timer()
        self.log_state()
        voters = self.voters()
        if len(voters) == 1:
            log.info("Election won. Tally: %d", 1)
            self._become_leader()
            return
        for v in voters:
            if v != self.id:
                self._msgs.append(
                    RequestVote(
                        self.term, self.id, v, self.last_index, self.last_term, transfer=transfer
                    )
                )

    def _become_leader(self) -> None:
        self._set_role(Role.LEADER)
        self.leader_id = self.id
        self.lead_since = self.now
        self.transferee = None
        self.progress = {}
        self._on_configuration_changed()
        for pr in self.progress.values():
            pr.acked_sent_at = self.now  # grace period: check-quorum counts from election
        self.log_state()
        # §5.4.2: a no-op of the new term lets earlier entries commit by counting it.
        self._append(Entry(self.last_index + 1, self.term, EntryKind.NOOP))
        self._became_leader_index = self.last_index
        self._heartbeat_deadline = self.now  # send the first round right away
        self.tick(self.now)

    # ------------------------------------------------------------------ client API

    def propose(self, data: bytes) -> tuple[int, int]:
        """Append a command; returns (index, term). The commit shows up in a later Ready."""
        self._check_can_propose()
        e = Entry(self.last_index + 1, self.term, EntryKind.COMMAND, data)
        self._append(e)
        return e.index, e.term

    def propose_config(self, servers: tuple[ServerInfo, ...]) -> tuple[int, int]:
        """A new membership, differing from the current by one server (thesis §4.1)."""
        self._check_can_propose()
        if self.config_index > self.commit_index:
            raise ConfigChangeInProgress("a configuration change is already in progress")
        if not self._committed_in_term():
            raise ConfigChangeInProgress("leader has not committed an entry in its term yet")
        e = Entry(self.last_index + 1, self.term, EntryKind.CONFIGURATION, servers=servers)
        self._append(e)
        return e.index, e.term

    def _check_can_propose(self) -> None:
        if self.role != Role.LEADER:
            raise NotLeader(self.leader_address())
        if self.transferee is not None:
            raise NotLeader(None, "leadership transfer in progress")

    def read_index(self, request_id: int) -> None:
        """Ask for a commit index that is safe to read at (thesis §6.4); result in Ready.reads."""
        if self.role != Role.LEADER:
            self._reads.append(ReadState(request_id, None))
            return
        index = self.commit_index if self._committed_in_term() else None
        if len(self.voters()) == 1 and self.is_voter():
            if index is not None:
                self._reads.append(ReadState(request_id, index))
            else:
                self._pending_reads.append((request_id, None, 0))
            return
        self._pending_reads.append((request_id, index, self.ctx + 1))
        self._heartbeat_needed = True

    def lease_valid(self, now: float | None = None) -> bool:
        """The leader may serve reads locally: a quorum acknowledged it within the lease,
        measured at `now` (the caller's clock; default the time of the last tick/step)."""
        # The lease rests on followers refusing votes while they hear from a leader, which
        # they do only with check_quorum.
        return (
            self.role == Role.LEADER
            and self.cfg.check_quorum
            and self._committed_in_term()
            and self._quorum_recent(self.cfg.leader_lease_timeout, now)
        )

    def transfer_leadership(self, to: str | None = None) -> str:
        """Start a transfer (thesis §3.10); returns the chosen target."""
        if self.role != Role.LEADER:
            raise NotLeader(self.leader_address())
        candidates = [v for v in self.voters() if v != self.id]
        if to is None:
            if not candidates:
                raise NotLeader(self.id, "no other voter to transfer leadership to")
            to = max(candidates, key=lambda v: self.progress[v].match)
        elif to not in candidates:
            raise ValueError(f"cannot transfer leadership to {to}: not a voter")
        self.transferee = to
        self._transfer_deadline = self.now + self.cfg.transfer_timeout
        pr = self.progress[to]
        if pr.match == self.last_index:
            self._msgs.append(TimeoutNow(self.term, self.id, to))
        return to

    # ------------------------------------------------------------------ Ready

    def ready(self) -> Ready:
        if self.role == Role.LEADER:
            if self._heartbeat_needed:
                self._heartbeat_needed = False
                self._broadcast_heartbeat()
            for peer in self.progress:
                self._send_appends(peer)
        rd = Ready()
        hs = HardState(self.term, self.vote)
        if hs != self._persisted_hs:
            rd.hard_state = hs
        if self._incoming_snapshot is not None:
            rd.snapshot = self._incoming_snapshot
            self._incoming_snapshot = None
        if self.unstable_from <= self.last_index:
            rd.entries = self.entries_from(max(self.unstable_from, self.log_start), self.last_index)
        self.unstable_from = self.last_index + 1
        upto = min(self.commit_index, self.last_index)
        if upto > self.applied_index:
            rd.committed = self.entries_from(self.applied_index + 1, upto)
            self.applied_index = upto
        msgs, self._msgs = self._msgs, []
        if self.role == Role.LEADER and rd.hard_state is None:
            # Only once the leader's term is on disk (else a crash could reuse the term for
            # different entries), and only messages of that term that no vote depends on; a
            # vote answered earlier in this Ready still waits for the disk.
            for m in msgs:
                if isinstance(m, (AppendEntries, InstallSnapshot)) and m.term == self.term:
                    rd.early_messages.append(m)
                else:
                    rd.messages.append(m)
        else:
            rd.messages = msgs
        rd.reads, self._reads = self._reads, []
        return rd

    def advance(self, rd: Ready) -> None:
        """`rd` is on disk: the leader may now count its own copy of its entries."""
        if rd.hard_state is not None:
            self._persisted_hs = rd.hard_state
        if rd.snapshot is not None:
            self.stable_index = max(self.stable_index, rd.snapshot.meta.index)
        if rd.entries:
            last = rd.entries[-1]
            # Only if it is still our entry (a follower may have truncated it since).
            if self.term_at(last.index) == last.term:
                self.stable_index = max(self.stable_index, last.index)
        if self.role == Role.LEADER:
            self._maybe_commit()

    # ------------------------------------------------------------------ step

    def step(self, m: Message) -> None:
        if m.term > self.term:
            if isinstance(m, RequestVote):
                if not m.transfer and self.cfg.check_quorum and self._in_lease():
                    # A healthy leader exists; a rejoining server must not depose it (§6.2).
                    if m.pre_vote:
                        self._msgs.append(
                            VoteResponse(self.term, self.me(m.to), m.frm, False, True)
                        )
                    return
                if m.pre_vote:
                    self._handle_vote_request(m)  # never changes our term
                    return
                self._become_follower(m.term, None)
            elif isinstance(m, VoteResponse) and m.pre_vote and m.granted:
                pass  # a pre-vote grant carries the term we would campaign in
            elif isinstance(m, (AppendEntries, InstallSnapshot, TimeoutNow)):
                self._become_follower(m.term, m.frm)
            else:
                self._become_follower(m.term, None)
        elif m.term < self.term:
            # A stale leader learns our term from the rejection and steps down.
            if isinstance(m, AppendEntries):
                self._msgs.append(AppendResponse(self.term, self.me(m.to), m.frm, False, 0))
            elif isinstance(m, InstallSnapshot):
                self._msgs.append(SnapshotResponse(self.term, self.me(m.to), m.frm, 0, 0, False))
            elif isinstance(m, RequestVote):
                self._msgs.append(VoteResponse(self.term, self.me(m.to), m.frm, False, m.pre_vote))
            return

        if isinstance(m, RequestVote):
            self._handle_vote_request(m)
        elif isinstance(m, VoteResponse):
            self._handle_vote_response(m)
        elif isinstance(m, AppendEntries):
            self._handle_append(m)
        elif isinstance(m, AppendResponse):
            self._handle_append_response(m)
        elif isinstance(m, InstallSnapshot):
            self._handle_snapshot(m)
        elif isinstance(m, SnapshotResponse):
            self._handle_snapshot_response(m)
        elif isinstance(m, TimeoutNow) and self.role == Role.FOLLOWER and m.term == self.term:
            log.info("received TimeoutNow from %s, starting election", m.frm)
            self._campaign(transfer=True)

    # --- elections (§5.2, §5.4.1, thesis §9.6)

    def _log_ok(self, m: RequestVote) -> bool:
        return (m.last_term, m.last_index) >= (self.last_term, self.last_index)

    def _handle_vote_request(self, m: RequestVote) -> None:
        if m.pre_vote:
            granted = m.term > self.term and self._log_ok(m)
            term = m.term if granted else self.term
            self._msgs.append(VoteResponse(term, self.me(m.to), m.frm, granted, True))
            return
        can_vote = self.vote == m.frm or (self.vote is None and self.leader_id is None)
        granted = can_vote and self._log_ok(m)
        if granted:
            self.vote = m.frm
            self._reset_election_timer()
        self._msgs.append(VoteResponse(self.term, self.me(m.to), m.frm, granted, False))

    def _handle_vote_response(self, m: VoteResponse) -> None:
        if m.pre_vote:
            if self.role != Role.PRE_CANDIDATE or m.term != self.term + 1:
                return
        elif self.role != Role.CANDIDATE or m.term != self.term:
            return
        self._votes[m.frm] = m.granted
        voters = self.voters()
        yes = sum(1 for v in voters if self._votes.get(v))
        no = sum(1 for v in voters if self._votes.get(v) is False)
        if yes >= self.quorum():
            if m.pre_vote:
                self._become_candidate(transfer=False)
            else:
                log.info("Election won. Tally: %d", yes)
                self._become_leader()
        elif no >= len(voters) - self.quorum() + 1:
            self._become_follower(self.term, None)

    # --- replication, follower side (§5.3)

    def _handle_append(self, m: AppendEntries) -> None:
        if self.role != Role.FOLLOWER:
            self._become_follower(self.term, m.frm)
        self.leader_id = m.frm
        self.last_leader_contact = self.now
        self._reset_election_timer()

        def reply(success: bool, match: int, ci: int = 0, ct: int = 0) -> None:
            self._msgs.append(
                AppendResponse(
                    self.term,
                    self.me(m.to),
                    m.frm,
                    success,
                    match,
                    reject_index=0 if success else m.prev_index,
                    conflict_index=ci,
                    conflict_term=ct,
                    ctx=m.ctx,
                    sent_at=m.sent_at,
                )
            )

        entries = m.entries
        prev_index, prev_term = m.prev_index, m.prev_term
        if prev_index < self.commit_index:
            # Entries up to our commit index are committed, hence in every later leader's log.
            skip = self.commit_index - prev_index
            if skip >= len(entries):
                reply(True, self.commit_index)
                return
            prev_index = self.commit_index
            prev_term = entries[skip - 1].term if skip > 0 else prev_term
            entries = entries[skip:]
        local = self.term_at(prev_index)
        if local is None:
            reply(False, 0, ci=self.last_index + 1)
            return
        if local != prev_term:
            # Fast backtracking: the first index we hold of the conflicting term.
            first = prev_index
            while first - 1 > self.snap_index and self.term_at(first - 1) == local:
                first -= 1
            reply(False, 0, ci=first, ct=local)
            return
        for e in entries:
            have = self.term_at(e.index)
            if have == e.term:
                continue
            if have is not None:
                self._truncate_from(e.index)
            self._append(e)
        match = prev_index + len(entries)
        if m.commit > self.commit_index:
            self.commit_index = max(self.commit_index, min(m.commit, match))
        reply(True, match)

    # --- snapshots, follower side (§7)

    def _handle_snapshot(self, m: InstallSnapshot) -> None:
        if self.role != Role.FOLLOWER:
            self._become_follower(self.term, m.frm)
        self.leader_id = m.frm
        self.last_leader_contact = self.now
        self._reset_election_timer()

        def reply(next_offset: int, installed: bool) -> None:
            self._msgs.append(
                SnapshotResponse(
                    self.term,
                    self.me(m.to),
                    m.frm,
                    m.meta.index,
                    next_offset,
                    installed,
                    m.ctx,
                    m.sent_at,
                )
            )

        if m.meta.index <= self.commit_index:
            reply(0, True)
            return
        if m.offset == 0:
            self._snap_buffer = bytearray()
            self._snap_buffer_meta = m.meta
        buf = self._snap_buffer
        if buf is None or self._snap_buffer_meta != m.meta or m.offset != len(buf):
            reply(len(buf) if buf is not None and self._snap_buffer_meta == m.meta else 0, False)
            return
        buf.extend(m.data)
        if not m.done:
            reply(len(buf), False)
            return
        meta = m.meta
        data = bytes(buf)
        self._snap_buffer = None
        self._snap_buffer_meta = None
        # Thesis §5.3: keep the log after the snapshot if it agrees; otherwise discard it.
        # (meta.index > commit_index >= snap_index, so it is past the log floor.)
        if self.term_at(meta.index) == meta.term:
            del self.log[: meta.index - self.log_start + 1]
        else:
            self.log = []
        self.snap_index, self.snap_term, self.snap_servers = meta.index, meta.term, meta.servers
        self.snap = meta
        self.snapshot_data = data
        self.commit_index = max(self.commit_index, meta.index)
        self.applied_index = max(self.applied_index, meta.index)
        self._reload_configuration()
        self._incoming_snapshot = Snapshot(meta, data)
        # The store resets its log on a snapshot; the retained suffix is written again.
        self.unstable_from = self.log_start
        log.info("Installed remote snapshot at index %d", meta.index)
        reply(len(data), True)
