"""`senate lock`: hold a lock (or one slot of a semaphore) in the KV store while a child runs.

As Consul's `lock` command and its api.Lock / api.Semaphore: a session (TTL 15 s, renewed
in the background) acquires `<prefix>/.lock` — or, with -n > 1, a contender key
`<prefix>/<session>` plus a place in the holders of `<prefix>/.lock`, updated with
check-and-set. The child runs under `/bin/sh -c` while the lock is held; if the lock is lost
the child gets SIGTERM, then SIGKILL after a grace period. The exit code is the child's.
Once released, the `.lock` key is deleted as api.Lock.Destroy does: only when nobody else
holds it, with check-and-set.
"""

from __future__ import annotations

import argparse
import base64
import json
import signal
import subprocess
import sys
import threading
import time
from typing import Any

from agent.cli.common import Parser, add_http_flags, err, http_client, out, run_guarded
from agent.client import ClientError, HTTPClient, Response
from agent.durations import parse_duration

#: api.LockFlagValue / api.SemaphoreFlagValue: mark keys as owned by a lock or a semaphore.
LOCK_FLAG = 0x2DDCCBC058A50C18
SEMAPHORE_FLAG = 0xE0F69A2BAA414DE0
LOCK_KEY = ".lock"
SESSION_TTL = "15s"
RENEW_INTERVAL = 7.5
BLOCK_WAIT_SECONDS = 15.0
KILL_GRACE = 5.0


class LockError(Exception):
    """The lock could not be taken or kept; the message is what the command prints."""


class LockInUse(LockError):
    """api.ErrLockInUse / api.ErrSemaphoreInUse: cleanup left the key to its other users."""


class Holder:
    """One session acquiring a lock (limit 1) or a semaphore slot (limit > 1) at a prefix."""

    def __init__(self, client: HTTPClient, prefix: str, limit: int, name: str, dc: str | None):
        self.client = client
        self.prefix = prefix.rstrip("/")
        self.limit = limit
        self.name = name
        self.params: dict[str, Any] = {"dc": dc}
        self.session = ""
        self.lost = threading.Event()
        self.stop = threading.Event()
        #: when set, blocking queries wait no longer than this (time.monotonic()) instant
        self.deadline: float | None = None

    # --- session ------------------------------------------------------------------------

    def create_session(self) -> None:
        body = json.dumps({"Name": self.name, "TTL": SESSION_TTL, "Behavior": "release"})
        reply = self.client.request("PUT", "/v1/session/create", self.params, body=body.encode())
        self.session = str(reply.json()["ID"])

    def destroy_session(self) -> None:
        if self.session:
            try:
                self.client.request("PUT", f"/v1/session/destroy/{self.session}", self.params)
            except ClientError:
                pass  # its TTL ends it anyway
            self.session = ""

    def renew_forever(self, base: HTTPClient) -> None:
        """Runs in a thread: renews the session until stopped; a lost session is a lost lock.
        `base` is the client whose agent and settings (TLS, token) it uses, on its own
        connection."""
        client = base.clone(timeout=10)
        try:
            while not self.stop.wait(RENEW_INTERVAL):
                try:
                    resp = client.request(
                        "PUT", f"/v1/session/renew/{self.session}", self.params, ok=(200, 404)
                    )
                except ClientError:
                    continue
                if resp.status == 404:
                    self.lost.set()
                    return
        finally:
            client.close()

    # --- lock (limit 1) -----------------------------------------------------------------

    @property
    def lock_key(self) -> str:
        return f"{self.prefix}/{LOCK_KEY}"

    def _get(self, key: str, index: int, recurse: bool = False) -> Response:
        params = {**self.params, "recurse": recurse or None}
        if index:
            wait = BLOCK_WAIT_SECONDS
            if self.deadline is not None:
                wait = max(0.001, min(wait, self.deadline - time.monotonic()))
            params.update(index=index, wait=f"{int(wait * 1000)}ms")
        return self.client.request("GET", f"/v1/kv/{key}", params, ok=(200, 404))

    def try_lock(self, index: int) -> tuple[bool, int]:
        resp = self._get(self.lock_key, index)
        entry = (resp.json() or [None])[0] if resp.status == 200 else None
        if entry is not None:
            if entry.get("Flags") != LOCK_FLAG:
                raise LockError("Existing key does not match lock use")
            if entry.get("Session"):
                return entry["Session"] == self.session, resp.index
        params = {**self.params, "acquire": self.session, "flags": LOCK_FLAG}
        put = self.client.request("PUT", f"/v1/kv/{self.lock_key}", params, body=b"")
        return put.json() is True, resp.index

    def lock_held(self, index: int) -> tuple[bool, int]:
        resp = self._get(self.lock_key, index)
        entry = (resp.json() or [None])[0] if resp.status == 200 else None
        return entry is not None and entry.get("Session") == self.session, resp.index

    # --- semaphore (limit > 1) ----------------------------------------------------------

    @property
    def contender_key(self) -> str:
        return f"{self.prefix}/{self.session}"

    def enter_contention(self) -> None:
        params = {**self.params, "acquire": self.session, "flags": SEMAPHORE_FLAG}
        ok = self.client.request("PUT", f"/v1/kv/{self.contender_key}", params, body=b"")
        if ok.json() is not True:
            raise LockError("Failed to make contender entry")

    def _semaphore_state(self, index: int) -> tuple[dict[str, Any] | None, set[str], int]:
        resp = self._get(self.prefix + "/", index, recurse=True)
        pairs = (resp.json() or []) if resp.status == 200 else []
        lock_entry = None
        live: set[str] = set()
        for pair in pairs:
            key = pair.get("Key", "")
            if key == self.lock_key:
                lock_entry = pair
            elif pair.get("Session") and pair.get("Flags") == SEMAPHORE_FLAG:
                live.add(key[len(self.prefix) + 1 :])
        return lock_entry, live, resp.index

    def _holders(self, lock_entry: dict[str, Any] | None) -> tuple[dict[str, bool], int]:
        if lock_entry is None:
            return {}, 0
        if lock_entry.get("Flags") != SEMAPHORE_FLAG:
            raise LockError("Existing key does not match semaphore use")
        try:
            data = json.loads(base64.b64decode(lock_entry.get("Value") or ""))
            limit, holders = int(data["Limit"]), dict(data.get("Holders") or {})
        except (ValueError, KeyError, TypeError) as exc:
            raise LockError(f"Failed to decode semaphore lock: {exc}") from None
        if limit != self.limit:
            raise LockError(f"Semaphore limit conflict (lock: {limit}, local: {self.limit})")
        return holders, int(lock_entry.get("ModifyIndex", 0))

    def try_semaphore(self, index: int) -> tuple[bool, int]:
        lock_entry, live, new_index = self._semaphore_state(index)
        holders, cas = self._holders(lock_entry)
        holders = {h: True for h in holders if h in live}  # prune dead holders
        if self.session in holders:
            return True, new_index
        if len(holders) >= self.limit:
            return False, new_index
        holders[self.session] = True
        body = json.dumps({"Limit": self.limit, "Holders": holders}).encode()
        params = {**self.params, "cas": cas, "flags": SEMAPHORE_FLAG}
        put = self.client.request("PUT", f"/v1/kv/{self.lock_key}", params, body=body)
        return put.json() is True, 0 if put.json() is True else new_index

    def semaphore_held(self, index: int) -> tuple[bool, int]:
        lock_entry, _, new_index = self._semaphore_state(index)
        holders, _ = self._holders(lock_entry)
        return self.session in holders, new_index

    # --- common -------------------------------------------------------------------------

    def acquire(self, deadline: float | None) -> bool:
        self.deadline = deadline
        if self.limit > 1:
            self.enter_contention()
        index = 0
        while deadline is None or time.monotonic() < deadline:
            take = self.try_semaphore if self.limit > 1 else self.try_lock
            acquired, index = take(index)
            if acquired:
                self.deadline = None
                return True
        return False

    def monitor(self, base: HTTPClient, on_lost: Any) -> None:
        """Runs in a thread: watches the lock with blocking queries; calls on_lost once."""
        client = base.clone(timeout=60)
        watcher = Holder(client, self.prefix, self.limit, self.name, self.params["dc"])
        watcher.session = self.session
        index = 0
        try:
            while not self.stop.is_set() and not self.lost.is_set():
                try:
                    held = watcher.semaphore_held if self.limit > 1 else watcher.lock_held
                    ok, index = held(index)
                except (ClientError, LockError):
                    if self.stop.wait(1.0):
                        return
                    continue
                if not ok:
                    self.lost.set()
        finally:
            client.close()
            if self.lost.is_set() and not self.stop.is_set():
                on_lost()

    def release(self) -> None:
        try:
            if self.limit > 1:
                lock_entry, _, _ = self._semaphore_state(0)
                holders, cas = self._holders(lock_entry)
                if self.session in holders:
                    del holders[self.session]
                    body = json.dumps({"Limit": self.limit, "Holders": holders}).encode()
                    params = {**self.params, "cas": cas, "flags": SEMAPHORE_FLAG}
                    self.client.request("PUT", f"/v1/kv/{self.lock_key}", params, body=body)
                self.client.request("DELETE", f"/v1/kv/{self.contender_key}", self.params)
            else:
                params = {**self.params, "release": self.session, "flags": LOCK_FLAG}
                self.client.request("PUT", f"/v1/kv/{self.lock_key}", params, body=b"")
        except (ClientError, LockError) as exc:
            err(f"Lock release failed: {exc}")

    def destroy(self) -> None:
        """api.Lock.Destroy / api.Semaphore.Destroy, once released: delete `<prefix>/.lock`
        with check-and-set on its ModifyIndex, only while nobody holds it (a lock: no session
        on it; a semaphore: no live holder). Raises LockInUse when someone does or the
        delete lost a race, LockError when the key is not this kind of lock."""
        semaphore = self.limit > 1
        what = "semaphore" if semaphore else "lock"
        try:
            if semaphore:
                entry, live, _ = self._semaphore_state(0)
            else:
                resp = self._get(self.lock_key, 0)
                entry = (resp.json() or [None])[0] if resp.status == 200 else None
        except ClientError as exc:
            raise LockError(f"failed to read {'prefix' if semaphore else 'lock'}: {exc}") from None
        if entry is None:
            return
        if entry.get("Flags") != (SEMAPHORE_FLAG if semaphore else LOCK_FLAG):
            raise LockError(f"Existing key does not match {what} use")
        if semaphore:
            holders, _ = self._holders(entry)
            if any(h in live for h in holders):
                raise LockInUse("Semaphore in use")
        elif entry.get("Session"):
            raise LockInUse("Lock in use")
        params = {**self.params, "cas": int(entry.get("ModifyIndex", 0))}
        try:
            removed = self.client.request("DELETE", f"/v1/kv/{self.lock_key}", params).json()
        except ClientError as exc:
            raise LockError(f"failed to remove {what}: {exc}") from None
        if removed is not True:
            raise LockInUse("Semaphore in use" if semaphore else "Lock in use")


def lock_parser() -> Parser:
    p = Parser(
        "lock",
        "senate lock [options] prefix child...",
        "Acquires a lock or semaphore at a given path, and invokes a child process\n"
        "when successful. The child process can assume the lock is held while it\n"
        "executes. If the lock is lost or communication is disrupted the child\n"
        "process will be sent a SIGTERM signal and given time to gracefully exit.\n"
        "After the grace period expires the process will be hard terminated.\n\n"
        "When -n=1, only a single lock holder or leader exists providing mutual\n"
        "exclusion. Setting a higher value switches to a semaphore allowing multiple\n"
        "holders to coordinate.",
    )
    add_http_flags(p)
    p.flag("n", type=int, default=1, help="Maximum number of lock holders (default 1)")
    p.flag("name", default="", help="Name of the session (default: from the prefix and child)")
    p.flag("pass-stdin", action="store_true", help="Pass stdin to the child process")
    p.flag("try", default="", metavar="timeout", help="Give up acquiring after this duration")
    p.flag("verbose", action="store_true", help="Enables verbose output")
    p.add_argument("args", nargs="*", help=argparse.SUPPRESS)
    return p


def _lock(args: argparse.Namespace) -> int:
    if not args.args:
        err("Key prefix must be specified")
        return 1
    if len(args.args) < 2:
        err("Command must be specified")
        return 1
    if args.n < 1:
        err("Lock holder limit must be positive")
        return 1
    deadline = None
    try_for = getattr(args, "try")
    if try_for:
        try:
            timeout = parse_duration(try_for) / 1e9
        except ValueError as exc:
            err(f"Invalid -try duration: {exc}")
            return 1
        if timeout <= 0:
            err("Timeout must be positive")
            return 1
        deadline = time.monotonic() + timeout
    prefix, script = args.args[0], " ".join(args.args[1:])
    name = args.name or f"Senate lock for '{script}' at '{prefix}'"
    client = http_client(args)
    client.timeout = 60.0
    try:
        client.get_json("/v1/agent/self")
    except ClientError as exc:
        err(f"Error querying Senate agent: {exc}")
        client.close()
        return 1
    holder = Holder(client, prefix, args.n, name, args.datacenter)
    threads: list[threading.Thread] = []
    try:
        try:
            holder.create_session()
            threads.append(
                threading.Thread(target=holder.renew_forever, args=(client,), daemon=True)
            )
            threads[-1].start()
            if args.verbose:
                out("Attempting lock acquisition")
            if not holder.acquire(deadline):
                err("Shutdown triggered or timeout during lock acquisition")
                return 1
        except (ClientError, LockError) as exc:
            err(f"Lock acquisition failed: {exc}")
            return 1
        if args.verbose:
            out("Starting handler")
        sys.stdout.flush()
        child = subprocess.Popen(
            ["/bin/sh", "-c", script],
            stdin=None if args.pass_stdin else subprocess.DEVNULL,
        )

        def kill_child() -> None:
            if args.verbose:
                out("Lock lost, killing child")
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
                try:
                    child.wait(KILL_GRACE)
                except subprocess.TimeoutExpired:
                    child.kill()

        threads.append(
            threading.Thread(target=holder.monitor, args=(client, kill_child), daemon=True)
        )
        threads[-1].start()
        try:
            code = child.wait()
        except KeyboardInterrupt:
            child.send_signal(signal.SIGTERM)
            code = child.wait()
        if holder.lost.is_set():
            err("Lock lost while the child was running")
            return 1
        holder.stop.set()
        holder.release()
        holder.destroy_session()
        try:
            holder.destroy()  # Consul's cleanupFn: the .lock key goes if nobody else holds it
        except LockInUse:
            if args.verbose:
                out("Cleanup aborted, lock in use")
        except LockError as exc:
            err(f"Lock cleanup failed: {exc}")
            return 1
        else:
            if args.verbose:
                out("Cleanup succeeded")
        return code if code >= 0 else 128 - code
    finally:
        holder.stop.set()
        holder.destroy_session()
        client.close()


def run(argv: list[str]) -> int:
    return run_guarded(lock_parser(), argv, _lock)
