"""The agent's configuration: Consul 1.x's flags, JSON and HCL config files and directories,
and `-hcl` fragments -> one frozen AgentConfig.

model.py holds AgentConfig; schema.py every key Consul knows; document.py what senate does
with each (a key Consul knows but senate does not implement is a warning, a key Consul does
not know is an error naming file, key and the nearest valid key); sources.py reads files,
directories and fragments; flags.py parses the command line; builder.py puts them together
in Consul's order; sockaddr.py renders go-sockaddr templates in addresses.
"""

from agent.config.builder import finish, load, load_files, resolve_advertise
from agent.config.flags import FlagError, HelpRequested, flags_help
from agent.config.model import Addresses, AgentConfig, Ports
from agent.errors import ConfigError

__all__ = [
    "Addresses",
    "AgentConfig",
    "ConfigError",
    "FlagError",
    "HelpRequested",
    "Ports",
    "finish",
    "flags_help",
    "load",
    "load_files",
    "resolve_advertise",
]
