"""senate: a Consul-compatible cluster agent."""

from agent.version import VERSION

__version__ = VERSION
