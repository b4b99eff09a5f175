"""The programs provision runs on a host, one module each, shipped as their source text.

Each module here is a whole program: a `main(argv)` and `if __name__ == "__main__"`, run on
the host as `python -c <the module's source> args...` (see `remote`). So it can import
nothing of provision, nor of another module here:

    probe         preflight: what is installed and running, free ports and disk (host python3)
    install       makes a release's venv from the uploaded wheelhouse (host python3)
    wait_agent    until a started agent answers CLI RPC (the release's python: uses agent.client)
    wait_leader   until a server's agent knows a raft leader (the release's python)
    http_request  one request to the node's own HTTP API (the release's python)
    acl_setup     ACL bootstrap, the agents' policy and tokens, on a primary server (the
                  release's python)

probe and install run before the release's venv exists, with the host's python3 (>= 3.11):
the standard library only.
"""

from __future__ import annotations

import functools
from importlib import resources
from types import ModuleType


@functools.cache
def source(program: ModuleType) -> str:
    """The source text of the host-side `program` (one of this package's modules), exactly as
    it is checked here and run on the host."""
    package, _, name = program.__name__.rpartition(".")
    if package != __name__:
        raise ValueError(f"{program.__name__} is not a host-side program")
    return resources.files(__name__).joinpath(f"{name}.py").read_text(encoding="utf-8")
