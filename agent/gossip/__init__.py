"""Gossip membership: SWIM with Lifeguard (memberlist) and Serf, in sans-IO cores.

The public surface is `agent.gossip.runner.GossipPool` and the types re-exported here.
"""

from agent.gossip.config import Profile
from agent.gossip.coordinate import Coordinate
from agent.gossip.keyring import Keyring, KeyringError, KeyringResponse, generate_key
from agent.gossip.runner import GossipPool, JoinError
from agent.gossip.serf_types import Member, MemberEvent, Query, UserEvent, UserEventError

__all__ = [
    "Coordinate",
    "GossipPool",
    "JoinError",
    "Keyring",
    "KeyringError",
    "KeyringResponse",
    "Member",
    "MemberEvent",
    "Profile",
    "Query",
    "UserEvent",
    "UserEventError",
    "generate_key",
]
