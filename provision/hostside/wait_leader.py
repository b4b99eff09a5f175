"""Waits on a server until its agent knows a raft leader: polls the node's own HTTP API,
/v1/status/leader ("" until there is one, as Consul's), with a growing interval; prints the
leader's address and exits 0, exits EXITED when the agent has not answered for SILENT_S, or
TIMED_OUT at the deadline, saying on stderr what it last saw.

    python -c <this file> URL DEADLINE_S EXITED TIMED_OUT

An https:// URL is asked with the CA and client certificate of CONSUL_CACERT,
CONSUL_CLIENT_CERT and CONSUL_CLIENT_KEY. Standard library only.
"""

from __future__ import annotations

import json
import os
import ssl
import sys
import time
import urllib.request

SILENT_S = 5.0  # an agent that has not answered for this long is gone: ask another server
REQUEST_TIMEOUT_S = 2.0
FIRST_DELAY_S, MAX_DELAY_S = 0.05, 0.25


def tls_context() -> ssl.SSLContext | None:
    """For an https:// URL: the CA and client certificate of CONSUL_CACERT, CONSUL_CLIENT_CERT
    and CONSUL_CLIENT_KEY, as the senate CLI takes them (None: the default context)."""
    ca = os.environ.get("CONSUL_CACERT")
    if not ca:
        return None
    ctx = ssl.create_default_context(cafile=ca)
    cert = os.environ.get("CONSUL_CLIENT_CERT")
    if cert:
        ctx.load_cert_chain(cert, os.environ.get("CONSUL_CLIENT_KEY") or None)
    return ctx


def main(argv: list[str]) -> int:
    url, deadline_s = argv[0], float(argv[1])
    exited, timed_out = int(argv[2]), int(argv[3])
    deadline = time.monotonic() + deadline_s
    delay, last = FIRST_DELAY_S, "no answer yet"
    silent_since: float | None = time.monotonic()
    ctx = tls_context()
    while True:
        try:
            with urllib.request.urlopen(url, timeout=REQUEST_TIMEOUT_S, context=ctx) as r:
                leader = json.loads(r.read() or b'""')
            if leader:
                print(leader)
                return 0
            last, silent_since = "the agent knows no leader yet", None
        except Exception as exc:
            last, silent_since = str(exc), silent_since or time.monotonic()
            if time.monotonic() - silent_since >= SILENT_S:
                print(f"the agent does not answer: {last}", file=sys.stderr)
                return exited
        if time.monotonic() >= deadline:
            print(f"no leader within {deadline_s:g}s: {last}", file=sys.stderr)
            return timed_out
        time.sleep(delay)
        delay = min(delay * 1.5, MAX_DELAY_S)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
