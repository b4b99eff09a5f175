"""The leader's half of log replication (§5.3, §5.4.2, thesis §6.4): what to send each
follower (AppendEntries, pipelined or probing, or a snapshot in chunks), what their answers
mean, when an entry is committed by quorum, and when a ReadIndex read is confirmed."""

from __future__ import annotations

import logging

from agent.raft.messages import (
    VOTER,
    AppendEntries,
    AppendResponse,
    InstallSnapshot,
    ReadState,
    Role,
    SnapshotResponse,
    TimeoutNow,
)
from agent.raft.state import Progress, ProgressState, RaftState

log = logging.getLogger("raft")


class LeaderReplication(RaftState):
    """Leader-side replication; `RaftCore` supplies the role changes."""

    def _become_follower(self, term: int, leader: str | None) -> None:
        raise NotImplementedError

    def _handle_append_response(self, m: AppendResponse) -> None:
        if self.role != Role.LEADER:
            return
        pr = self.progress.get(m.frm)
        if pr is None:
            return
        self._acked(pr, m.ctx, m.sent_at)
        if m.success:
            if m.match_index > pr.match:
                pr.match = m.match_index
                pr.match_ctx = max(pr.match_ctx, m.ctx)
                pr.last_progress = self.now
                while pr.inflight and pr.inflight[0] <= pr.match:
                    pr.inflight.popleft()
                if pr.state == ProgressState.PROBE:
                    pr.state = ProgressState.REPLICATE
                    pr.inflight.clear()
                pr.next = max(pr.next, pr.match + 1)
                self._maybe_commit()
                if m.frm == self.transferee and pr.match == self.last_index:
                    self._msgs.append(TimeoutNow(self.term, self.id, m.frm))
            elif pr.state == ProgressState.PROBE:
                pr.probe_sent = False
        elif m.reject_index > 0 or m.conflict_index > 0:
            stale = (
                m.reject_index <= pr.match
                if pr.state == ProgressState.REPLICATE
                else m.reject_index != pr.next - 1
            )
            if self._lost_its_log(pr, m):
                # Not a reordered answer: a later round than the one that acked `match` finds
                # the follower's log ending before it, so its store was lost (wiped, restored
                # from an old copy). Raft assumes a durable log; rather than leave it behind
                # for ever, forget what it acked and repair it from where its log ends (by
                # entries or, past our snapshot, by a snapshot). Lowering `match` never lowers
                # the commit index, and counts it for less: safe.
                log.warning(
                    "peer %s lost its log: it ends at %d, it had acknowledged %d; "
                    "sending it again from there",
                    m.frm,
                    m.conflict_index - 1,
                    pr.match,
                )
                pr.match, pr.match_ctx = max(0, m.conflict_index - 1), m.ctx
                pr.state = ProgressState.PROBE
                pr.next = pr.match + 1
                pr.inflight.clear()
                pr.probe_sent = False
                self._process_reads()
                return
            if stale or pr.state == ProgressState.SNAPSHOT:
                return
            nxt = m.conflict_index
            if m.conflict_term > 0:
                # Skip the follower's whole conflicting term, or ours if we have it (§5.3).
                last_of_term = self._last_index_of_term(m.conflict_term, m.reject_index)
                if last_of_term is not None:
                    nxt = last_of_term + 1
            pr.next = max(pr.match + 1, min(nxt, m.reject_index))
            pr.state = ProgressState.PROBE
            pr.inflight.clear()
            pr.probe_sent = False

        self._process_reads()

    @staticmethod
    def _lost_its_log(pr: Progress, m: AppendResponse) -> bool:
        """A rejection from a later heartbeat round than the answer that raised `match`,
        saying the follower's log ends (conflict_index, with no conflicting term) at or
        before `match`: the follower no longer holds what it acknowledged."""
        return (
            pr.state != ProgressState.SNAPSHOT
            and m.ctx > pr.match_ctx
            and m.conflict_term == 0
            and 0 < m.conflict_index <= pr.match
        )

    def _last_index_of_term(self, term: int, upto: int) -> int | None:
        i = min(upto, self.last_index)
        while i > self.snap_index:
            t = self.term_at(i)
            assert t is not None
            if t == term:
                return i
            if t < term:
                return None
            i -= 1
        return None

    def _acked(self, pr: Progress, ctx: int, sent_at: float) -> None:
        pr.acked_ctx = max(pr.acked_ctx, ctx)
        pr.acked_sent_at = max(pr.acked_sent_at, sent_at)

    def _maybe_commit(self) -> None:
        matches = []
        for s in self.servers:
            if s.suffrage != VOTER:
                continue
            if s.id == self.id:
                matches.append(self.stable_index)
            else:
                pr = self.progress.get(s.id)
                matches.append(pr.match if pr else 0)
        if not matches:
            return
        matches.sort(reverse=True)
        n = matches[self.quorum() - 1]
        # §5.4.2: only an entry of the current term is committed by counting replicas.
        if n > self.commit_index and self.term_at(n) == self.term:
            self.commit_index = n
            self._process_reads()
            if self.config_index <= n and not self.is_voter() and self.config_index > 0:
                # Thesis §4.2.2: a leader removed from the configuration steps down once
                # the configuration without it is committed.
                log.info("removed ourself, transitioning to follower")
                self._become_follower(self.term, None)

    def _quorum_recent(self, within: float, now: float | None = None) -> bool:
        now = self.now if now is None else max(now, self.now)
        times = []
        for v in self.voters():
            if v == self.id:
                times.append(now)
            else:
                pr = self.progress.get(v)
                times.append(pr.acked_sent_at if pr else -1.0)
        if not times:
            return False
        times.sort(reverse=True)
        return now - times[self.quorum() - 1] < within

    def _process_reads(self) -> None:
        if not self._pending_reads:
            return
        committed_in_term = self._committed_in_term()
        keep: list[tuple[int, int | None, int]] = []
        for rid, index, need in self._pending_reads:
            if index is None:
                if not committed_in_term:
                    keep.append((rid, None, need))
                    continue
                index = self.commit_index
            if need == 0 or self._ctx_quorum(need):
                self._reads.append(ReadState(rid, index))
            else:
                keep.append((rid, index, need))
        self._pending_reads = keep

    def _ctx_quorum(self, need: int) -> bool:
        n = 0
        for v in self.voters():
            if v == self.id:
                n += 1
            else:
                pr = self.progress.get(v)
                if pr is not None and pr.acked_ctx >= need:
                    n += 1
        return n >= self.quorum()

    def _fail_pending_reads(self) -> None:
        for rid, _, _ in self._pending_reads:
            self._reads.append(ReadState(rid, None))
        self._pending_reads = []

    def _broadcast_heartbeat(self) -> None:
        self.ctx += 1
        for peer, pr in self.progress.items():
            if pr.state == ProgressState.PROBE:
                pr.probe_sent = False
            if pr.state == ProgressState.SNAPSHOT:
                pr.snap_sent = False  # resend the chunk in flight if it was lost
            t = self.term_at(pr.match)
            if t is None:
                t = 0
                match = 0
            else:
                match = pr.match
            self._msgs.append(
                AppendEntries(
                    self.term,
                    self.id,
                    peer,
                    match,
                    t,
                    (),
                    min(self.commit_index, match),
                    self.ctx,
                    self.now,
                )
            )

    def _recover_stalled(self) -> None:
        """A pipelined AppendEntries may be lost: fall back to probing after a while."""
        for pr in self.progress.values():
            if (
                pr.state == ProgressState.REPLICATE
                and pr.match < pr.next - 1
                and self.now - pr.last_progress > 2 * self.cfg.heartbeat_interval
            ):
                pr.state = ProgressState.PROBE
                pr.next = pr.match + 1
                pr.inflight.clear()
                pr.probe_sent = False
                pr.last_progress = self.now

    def _send_appends(self, peer: str) -> None:
        pr = self.progress[peer]
        if pr.state == ProgressState.SNAPSHOT:
            self._send_snapshot_chunk(peer, pr)
            return
        while True:
            if pr.state == ProgressState.PROBE and pr.probe_sent:
                return
            if pr.state == ProgressState.REPLICATE and (
                pr.next > self.last_index or len(pr.inflight) >= self.cfg.max_inflight
            ):
                return
            prev = pr.next - 1
            prev_term = self.term_at(prev)
            if prev_term is None:
                self._start_snapshot(peer, pr)
                return
            if pr.state == ProgressState.PROBE and pr.next > self.last_index and pr.match == prev:
                return  # nothing to send, nothing to probe
            hi = min(self.last_index, pr.next + self.cfg.max_append_entries - 1)
            entries = tuple(self.entries_from(pr.next, hi)) if pr.next <= hi else ()
            size = 0
            for n, e in enumerate(entries):
                size += len(e.data)
                if size > self.cfg.max_append_bytes and n > 0:
                    entries = entries[:n]
                    hi = pr.next + n - 1
                    break
            self._msgs.append(
                AppendEntries(
                    self.term,
                    self.id,
                    peer,
                    prev,
                    prev_term,
                    entries,
                    self.commit_index,
                    self.ctx,
                    self.now,
                )
            )
            if pr.state == ProgressState.PROBE:
                pr.probe_sent = True
                return
            pr.next = hi + 1
            pr.inflight.append(hi)

    # --- snapshots (§7)

    def _start_snapshot(self, peer: str, pr: Progress) -> None:
        meta = self.snapshot_meta()
        if meta is None or self.snapshot_data is None:
            log.error("need to send a snapshot to %s but have none", peer)
            return
        pr.state = ProgressState.SNAPSHOT
        pr.snap_index = meta.index
        pr.snap_offset = 0
        pr.snap_sent = False
        pr.inflight.clear()
        log.info("starting snapshot transfer to %s at index %d", peer, meta.index)
        self._send_snapshot_chunk(peer, pr)

    def _send_snapshot_chunk(self, peer: str, pr: Progress) -> None:
        meta = self.snapshot_meta()
        data = self.snapshot_data
        if meta is None or data is None:
            return
        if meta.index != pr.snap_index:  # a newer snapshot was taken meanwhile: restart
            pr.snap_index, pr.snap_offset = meta.index, 0
        if pr.snap_sent:
            return
        chunk = data[pr.snap_offset : pr.snap_offset + self.cfg.snapshot_chunk_size]
        done = pr.snap_offset + len(chunk) >= len(data)
        self._msgs.append(
            InstallSnapshot(
                self.term, self.id, peer, meta, pr.snap_offset, chunk, done, self.ctx, self.now
            )
        )
        pr.snap_sent = True

    def _handle_snapshot_response(self, m: SnapshotResponse) -> None:
        if self.role != Role.LEADER:
            return
        pr = self.progress.get(m.frm)
        if pr is None:
            return
        self._acked(pr, m.ctx, m.sent_at)
        if pr.state != ProgressState.SNAPSHOT or m.index != pr.snap_index:
            if m.installed and m.index > pr.match:
                pr.match = m.index
                pr.next = max(pr.next, m.index + 1)
            self._process_reads()
            return
        if m.installed:
            pr.match = max(pr.match, m.index)
            pr.next = pr.match + 1
            pr.state = ProgressState.PROBE
            pr.probe_sent = False
            pr.last_progress = self.now
            self._maybe_commit()
        else:
            pr.snap_offset = m.next_offset
            pr.snap_sent = False
        self._process_reads()
