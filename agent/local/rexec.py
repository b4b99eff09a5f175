"""Remote execution as Consul 0.7 does it, both ends: the KV layout and job spec that
`senate exec` writes, and the agent-side runner that executes a job on a `_rexec` event.

Theory of operation: the CLI creates a session (Behavior "delete", TTL 15 s), writes the job
spec JSON to `<prefix>/<session>/job` holding the session's lock, and fires the user event
`_rexec` with payload `{"Prefix", "Session"}` and the node/service/tag filters. Every agent the
event reaches reads the job, writes `<prefix>/<session>/<node>/ack`, runs the command under
`/bin/sh -c`, writes its output in chunks `<node>/out/00000`, `00001`, ... (an empty chunk is a
heartbeat) and finally `<node>/exit` with the exit code — every write a KV lock with the
session, so nothing can be written once the CLI destroys the session. The CLI watches the
prefix with blocking key listings and stops after a quiet period without news.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import tempfile
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger("agent")

RPC = Callable[[str, dict[str, Any]], Awaitable[Any]]

EVENT_NAME = "_rexec"
DEFAULT_PREFIX = "_rexec"
JOB_FILE = "job"
ACK_SUFFIX = "/ack"
EXIT_SUFFIX = "/exit"
OUTPUT_DIVIDER = "/out/"
SESSION_TTL = "15s"
#: Output is uploaded in chunks of at most this many bytes, at most this often.
OUTPUT_CHUNK = 4096
OUTPUT_FLUSH_INTERVAL = 0.5


def job_key(prefix: str, session: str) -> str:
    return f"{prefix}/{session}/{JOB_FILE}"


def node_key(prefix: str, session: str, node: str, suffix: str) -> str:
    return f"{prefix}/{session}/{node}{suffix}"


def output_key(prefix: str, session: str, node: str, num: int) -> str:
    return f"{prefix}/{session}/{node}{OUTPUT_DIVIDER}{num:05x}"


def encode_spec(command: str, script: bytes, wait_seconds: float) -> bytes:
    """rExecSpec as Consul's JSON: Command / Script (base64) omitted when empty, Wait in ns."""
    spec: dict[str, Any] = {}
    if command:
        spec["Command"] = command
    if script:
        spec["Script"] = base64.b64encode(script).decode()
    spec["Wait"] = int(wait_seconds * 1e9)
    return json.dumps(spec).encode()


def decode_spec(data: bytes) -> tuple[str, bytes, float]:
    spec = json.loads(data)
    if not isinstance(spec, dict):
        raise ValueError("job spec is not a JSON object")
    script = base64.b64decode(spec["Script"]) if spec.get("Script") else b""
    wait = float(spec.get("Wait") or 0) / 1e9
    return str(spec.get("Command") or ""), script, wait


class RemoteExecError(Exception):
    """The job could not be read or a result could not be written (session gone)."""


async def _write(rpc: RPC, datacenter: str, key: str, value: bytes, session: str) -> None:
    ok = await rpc(
        "KVS.Apply",
        {
            "Datacenter": datacenter,
            "Op": "lock",
            "DirEnt": {"Key": key, "Flags": 0, "Value": value, "Session": session},
        },
    )
    if not ok:
        raise RemoteExecError(f"failed to write {key}: the session's lock is gone")


async def _read_job(rpc: RPC, datacenter: str, key: str) -> bytes | None:
    # A stale read first, as Consul's: the CLI waited for replication before firing.
    for stale in (True, False):
        reply = await rpc("KVS.Get", {"Datacenter": datacenter, "Key": key, "AllowStale": stale})
        entries = (reply or {}).get("Entries") or []
        if entries:
            return bytes(entries[0].get("Value") or b"")
    return None


async def handle_remote_exec(rpc: RPC, node_name: str, datacenter: str, payload: bytes) -> None:
    """Run the job of one `_rexec` user event on this agent (Consul's handleRemoteExec)."""
    try:
        event = json.loads(payload or b"{}")
        prefix, session = str(event["Prefix"]), str(event["Session"])
    except (ValueError, KeyError, TypeError) as exc:
        log.error("failed to decode remote exec event: %s", exc)
        return
    try:
        job = await _read_job(rpc, datacenter, job_key(prefix, session))
        if job is None:
            log.error("remote exec failed, job not found")
            return
        command, script, wait = decode_spec(job)
    except (ValueError, KeyError, TypeError) as exc:
        log.error("failed to decode remote exec job: %s", exc)
        return
    except Exception as exc:
        log.error("failed to get remote exec job: %s", exc)
        return
    try:
        await _write(
            rpc, datacenter, node_key(prefix, session, node_name, ACK_SUFFIX), b"", session
        )
    except Exception as exc:
        log.error("failed to ack remote exec job: %s", exc)
        return
    code = 0
    try:
        code = await _run(rpc, datacenter, prefix, session, node_name, command, script, wait)
    except Exception as exc:
        log.error("remote exec failed: %s", exc)
        code = 255
    finally:
        with contextlib.suppress(Exception):
            key = node_key(prefix, session, node_name, EXIT_SUFFIX)
            await _write(rpc, datacenter, key, str(code).encode(), session)


async def _run(
    rpc: RPC,
    datacenter: str,
    prefix: str,
    session: str,
    node: str,
    command: str,
    script: bytes,
    wait: float,
) -> int:
    script_path = None
    if script:
        fd, script_path = tempfile.mkstemp(prefix="rexec")
        with os.fdopen(fd, "wb") as f:
            f.write(script)
        os.chmod(script_path, 0o700)
        command = script_path
    log.info("remote exec '%s'", command)
    try:
        proc = await asyncio.create_subprocess_exec(
            "/bin/sh",
            "-c",
            command,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
    except OSError as exc:
        log.debug("failed to start remote exec: %s", exc)
        return 255
    assert proc.stdout is not None
    heartbeat = max(wait, 1.0)
    num = 0
    try:
        while True:
            try:
                chunk = await asyncio.wait_for(proc.stdout.read(OUTPUT_CHUNK), heartbeat)
            except TimeoutError:
                chunk = None  # quiet: send a heartbeat (an empty chunk)
            if chunk == b"":
                break
            await _write(
                rpc, datacenter, output_key(prefix, session, node, num), chunk or b"", session
            )
            num += 1
        return await proc.wait()
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        raise
    finally:
        if script_path is not None:
            with contextlib.suppress(OSError):
                os.unlink(script_path)
