"""The errors every part of the agent raises to its callers, with Consul's wording."""

from __future__ import annotations


class RPCError(Exception):
    """A server RPC failed; the message is Consul's wording (e.g. "No cluster leader")."""


class AgentError(Exception):
    """An operation of the agent itself failed (e.g. force-leave of a node it does not know);
    the message is Consul's wording. HTTP answers it with a 500, as Consul does."""


class JoinError(Exception):
    """A join contacted no node; the message lists each address and why, as Consul prints it."""


class StartError(Exception):
    """The agent cannot start; the message says why (e.g. the data dir is in use)."""


class ConfigError(Exception):
    """A configuration a user wrote is invalid; the message says where and why."""
