"""Waits, on the host, until the agent just started answers on its CLI RPC address.

Polls the process (the launcher's pid file, else `senatectl status`) and the agent with a
growing interval, asking it for the LAN members over Consul's CLI RPC as `senate members` does
(agent.client.RPCClient: the handshake and `members-lan`), without starting the CLI. Exits 0
when it answers; EXITED, with the end of the agent's log on stderr, when the agent is gone;
TIMED_OUT at the deadline, saying what it last saw.

    <install_dir>/current/bin/python -I -c <this file> INSTALL_DIR RPC_ADDR DEADLINE_S EXITED TIMED_OUT

Run by the release's python, where `agent` is installed. With ACLs on, the token the agent is
asked with is CONSUL_HTTP_TOKEN (the node's agent recovery token).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

GONE_S = 0.3  # without a process for this long, the agent exited (a launcher's child may not
# have exec'd the agent yet at first)
FIRST_DELAY_S, MAX_DELAY_S = 0.05, 0.5
CONNECT_TIMEOUT_S = 2.0  # and the handshake's reply (RPCClient has one timeout for both)
READ_TIMEOUT_S = 5.0  # the members' reply
_CLOSED = "RPC connection closed by the agent"  # agent.client's words for it


def alive(base: str) -> bool:
    """The agent of <base> runs: the launcher's pid file names a process started with its
    config dir, or `senatectl status` says so."""
    try:
        with open(f"{base}/run/senate.pid") as f:
            pid = int(f.read().strip())
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            if f"-config-dir={base}/etc".encode() in f.read():
                return True
    except (OSError, ValueError):
        pass
    status = subprocess.run(
        [f"{base}/bin/senatectl", "status"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    return status.returncode == 0


def tail(base: str) -> str:
    """The end of the agent's log (12 lines)."""
    try:
        with open(f"{base}/log/senate.log", errors="replace") as f:
            lines = f.read().splitlines()[-12:]
    except OSError:
        lines = []
    return "\n".join(lines).strip() or "(no log output; under systemd see journalctl -u senate)"


def members(base: str, rpc: str) -> str | None:
    """None when the agent at `rpc` answered `members-lan`, else what went wrong."""
    try:
        from agent.client import ClientError, RPCClient
    except ImportError:  # a release without agent.client: ask its CLI
        return _members_by_cli(base, rpc)
    try:
        token = os.environ.get("CONSUL_HTTP_TOKEN", "")
        with RPCClient(rpc, timeout=CONNECT_TIMEOUT_S, token=token) as client:
            client.sock.settimeout(READ_TIMEOUT_S)
            client.members()
    except ClientError as exc:
        # A failed connection (RPCClient words it as Go would; the OSError is its context)
        # says nothing listens yet; anything else is the agent's own answer.
        cause = exc.__context__
        if isinstance(cause, OSError):
            return f"nothing listening on {rpc} yet ({cause.strerror or cause})"
        if str(exc) == _CLOSED:
            return f"nothing listening on {rpc} yet ({exc})"
        return str(exc)
    return None


def _members_by_cli(base: str, rpc: str) -> str | None:
    r = subprocess.run(
        [f"{base}/current/bin/senate", "members", f"-rpc-addr={rpc}"],
        capture_output=True,
        text=True,
    )
    lines = (r.stderr or r.stdout).strip().splitlines()
    return None if r.returncode == 0 else (lines[-1] if lines else f"exit {r.returncode}")


def main(argv: list[str]) -> int:
    base, rpc, deadline_s = argv[0], argv[1], float(argv[2])
    exited, timed_out = int(argv[3]), int(argv[4])
    deadline = time.monotonic() + deadline_s
    delay, last = FIRST_DELAY_S, "not started"
    gone_since: float | None = None
    while True:
        if not alive(base):
            gone_since = gone_since or time.monotonic()
            if time.monotonic() - gone_since >= GONE_S:
                print(
                    f"agent exited while starting ({base}/current/bin/senate agent"
                    f" -config-dir={base}/etc); end of its log:\n{tail(base)}",
                    file=sys.stderr,
                )
                return exited
            last = "agent process not found"
        else:
            gone_since = None
            try:
                problem = members(base, rpc)
            except OSError as exc:  # the CLI could not be started
                problem = f"nothing listening on {rpc} yet ({exc.strerror or exc})"
            if problem is None:
                return 0
            last = problem
        if time.monotonic() >= deadline:
            print(f"agent did not answer within {deadline_s:g}s: {last}", file=sys.stderr)
            return timed_out
        time.sleep(delay)
        delay = min(delay * 1.5, MAX_DELAY_S)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
