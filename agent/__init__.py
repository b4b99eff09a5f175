"""senate: a Consul-compatible cluster agent."""

__version__ = "0.7.2"
