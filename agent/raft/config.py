"""The raft tuning profile: every timeout in one frozen object, Consul's defaults.

Consul 0.7 takes hashicorp/raft's base timings (tuned for `raft_multiplier = 1`, i.e. the
fastest, production-hardware profile) and multiplies them by `performance.raft_multiplier`
(default 5 in Consul 0.7). `RaftConfig.for_multiplier(m)` does the same.
"""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True, slots=True)
class RaftConfig:
    #: A follower that hears nothing from a leader for a random time in
    #: [election_timeout, 2 * election_timeout) starts a (pre-)election. hashicorp/raft's
    #: HeartbeatTimeout and ElectionTimeout are both 1 s at multiplier 1.
    election_timeout: float = 1.0
    #: The leader sends a heartbeat AppendEntries this often (hashicorp/raft: HeartbeatTimeout/10).
    heartbeat_interval: float = 0.1
    #: The leader steps down when it has not heard from a quorum for this long (check-quorum),
    #: and serves default reads from its lease only while a quorum answered within it. Must be
    #: shorter than election_timeout: followers refuse votes for that long after leader contact.
    leader_lease_timeout: float = 0.5
    #: How long a proposal may wait for commit before the runner reports a timeout
    #: (hashicorp/raft CommitTimeout is 50 ms; here it is the runner's apply deadline default).
    commit_timeout: float = 0.05
    #: Entries per AppendEntries message (hashicorp/raft MaxAppendEntries = 64; larger here
    #: because group commit batches many small proposals).
    max_append_entries: int = 512
    #: ...and at most about this many bytes of entry data per AppendEntries (at least one entry).
    max_append_bytes: int = 1024 * 1024
    #: AppendEntries messages with entries in flight per follower (pipelining window).
    max_inflight: int = 64
    #: Take a snapshot when this many entries are in the log since the last one (Consul: 16384).
    snapshot_threshold: int = 16384
    #: Entries kept after a snapshot so that slow followers can catch up from the log.
    trailing_logs: int = 10240
    #: Bytes of snapshot per InstallSnapshot message.
    snapshot_chunk_size: int = 1024 * 1024
    #: Leadership transfer gives up after this long (hashicorp/raft: ElectionTimeout).
    transfer_timeout: float = 1.0
    #: Pre-vote (Raft thesis §9.6): a node asks whether it could win before bumping its term.
    pre_vote: bool = True
    #: Check-quorum (thesis §6.2): a leader that cannot reach a quorum steps down, and
    #: followers ignore vote requests while they hear from a leader.
    check_quorum: bool = True

    def __post_init__(self) -> None:
        if self.leader_lease_timeout >= self.election_timeout:
            raise ValueError("leader_lease_timeout must be shorter than election_timeout")
        if self.heartbeat_interval >= self.leader_lease_timeout:
            raise ValueError("heartbeat_interval must be shorter than leader_lease_timeout")

    @classmethod
    def for_multiplier(cls, m: int) -> RaftConfig:
        """Consul's performance.raft_multiplier: 1 (fastest) .. 10; Consul 0.7's default is 5."""
        if not 1 <= m <= 10:
            raise ValueError(f"raft_multiplier must be between 1 and 10, got {m}")
        base = cls()
        return replace(
            base,
            election_timeout=base.election_timeout * m,
            heartbeat_interval=base.heartbeat_interval * m,
            leader_lease_timeout=base.leader_lease_timeout * m,
            transfer_timeout=base.transfer_timeout * m,
        )

    @classmethod
    def dev(cls) -> RaftConfig:
        """Fast timings for `senate agent -dev` and tests on loopback."""
        return cls(
            election_timeout=0.4,
            heartbeat_interval=0.04,
            leader_lease_timeout=0.2,
            transfer_timeout=0.4,
        )
