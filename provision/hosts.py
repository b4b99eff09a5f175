"""How provision reaches a node: over SSH (Fabric) or on this machine (`local`).

Both give the same small interface — `run(command)` and `put(file)` with a timeout on every
step — so the rest of provision does not care which it is. A failing command raises
`StepError` carrying the command, its exit status and the tail of its stderr; a host that
cannot be reached raises `HostUnreachable`. `run_parallel` runs one function per node on a
bounded thread pool (Fabric is synchronous) and collects every node's result or error.
"""

from __future__ import annotations

import base64
import io
import shlex
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, NamedTuple, Protocol, TypeVar

from provision.inventory import Node, SSHSettings


@dataclass(frozen=True, slots=True)
class Result:
    command: str
    exit_code: int
    stdout: str
    stderr: str


class HostError(Exception):
    """Anything that went wrong on one host; `host` names the node."""

    def __init__(self, host: str, message: str) -> None:
        self.host = host
        super().__init__(message)


class HostUnreachable(HostError):
    pass


class StepError(HostError):
    def __init__(
        self, host: str, step: str, command: str, exit_code: int | None, stderr: str
    ) -> None:
        self.step = step
        self.command = command
        self.exit_code = exit_code
        self.stderr = stderr
        status = "timed out" if exit_code is None else f"exit {exit_code}"
        super().__init__(host, f"{step}: `{command}` {status}")

    @property
    def stderr_tail(self) -> str:
        return "\n".join(self.stderr.strip().splitlines()[-8:])


class Host(Protocol):
    node: Node

    def run(
        self,
        command: str,
        *,
        step: str,
        timeout: float,
        check: bool = True,
        label: str | None = None,
    ) -> Result:
        """Run `command`; errors show `label` in its place when given (long composed ones)."""
        ...

    def feed(
        self,
        command: str,
        local: Path | bytes,
        *,
        step: str,
        timeout: float,
        label: str | None = None,
    ) -> Result:
        """Run `command` with the file `local` (or those bytes) on its stdin (an upload and what
        uses it in one remote command; a secret that must be in no argv). Does not raise on a
        non-zero exit: the caller reads the Result."""
        ...

    def close(self) -> None: ...


def _check(host: str, step: str, result: Result, check: bool) -> Result:
    if check and result.exit_code != 0:
        raise StepError(
            host, step, result.command, result.exit_code, result.stderr or result.stdout
        )
    return result


def run_input(
    host: Host,
    command: str,
    data: bytes,
    *,
    step: str,
    timeout: float,
    check: bool = True,
    label: str | None = None,
) -> Result:
    """`command` with `data` on its stdin; as `Host.run`, a failure raises when `check`."""
    result = host.feed(command, data, step=step, timeout=timeout, label=label)
    return _check(host.node.name, step, result, check)


class Fed(NamedTuple):
    """A command part that reads `data` from the command's stdin: what a file holds (keys,
    tokens, the gossip key) never travels in a command line, which any local user of the host
    can read in /proc while the command runs."""

    cmd: str
    data: bytes


FILE_VAR = "PROVISION_FILE"  # the shell variable one file's base64 line is read into


def write_text_part(content: str, remote: str, mode: int) -> Fed:
    """A part that writes `content` to `remote` atomically, with `mode`; the content is one
    base64 line on stdin, decoded through the shell's builtin printf (so no argv holds it)."""
    tmp = shlex.quote(f"{remote}.provision-tmp")
    cmd = (
        f"IFS= read -r {FILE_VAR} && "
        f"mkdir -p {shlex.quote(str(Path(remote).parent))} && "
        f'(umask 077 && printf %s "${FILE_VAR}" | base64 -d > {tmp}) && '
        f"chmod {mode:o} {tmp} && mv -f {tmp} {shlex.quote(remote)} && unset {FILE_VAR}"
    )
    return Fed(cmd, base64.b64encode(content.encode()) + b"\n")


class LocalHost:
    """This machine. Nodes differ by their 127.0.0.x address and their directories."""

    def __init__(self, node: Node) -> None:
        self.node = node

    def run(
        self,
        command: str,
        *,
        step: str,
        timeout: float,
        check: bool = True,
        label: str | None = None,
    ) -> Result:
        result = self._sh(command, step, label or command, timeout, stdin=subprocess.DEVNULL)
        return _check(self.node.name, step, result, check)

    def _sh(self, command: str, step: str, shown: str, timeout: float, **io: Any) -> Result:
        """`command` under /bin/sh on this machine; a timeout is a StepError showing `shown`."""
        try:
            proc = subprocess.run(
                ["/bin/sh", "-c", command], capture_output=True, timeout=timeout, **io
            )
        except subprocess.TimeoutExpired as exc:
            err = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else ""
            raise StepError(self.node.name, step, shown, None, err) from None
        return Result(
            shown,
            proc.returncode,
            proc.stdout.decode(errors="replace"),
            proc.stderr.decode(errors="replace"),
        )

    def feed(
        self,
        command: str,
        local: Path | bytes,
        *,
        step: str,
        timeout: float,
        label: str | None = None,
    ) -> Result:
        if isinstance(local, bytes):
            return self._sh(command, step, label or command, timeout, input=local)
        with open(local, "rb") as stdin:
            return self._sh(command, step, label or command, timeout, stdin=stdin)

    def close(self) -> None:
        pass


def _split_jump(spec: str, default_user: str) -> tuple[str, str, int]:
    user, _, rest = spec.rpartition("@")
    host, _, port = rest.partition(":")
    return user or default_user, host, int(port or 22)


class SSHHost:
    """A host over SSH with Fabric: key auth, user, port, an optional jump host, sudo when the
    user is not root."""

    def __init__(self, node: Node) -> None:
        import fabric  # imported here: the local connection does not need paramiko

        self.node = node
        s: SSHSettings = node.ssh
        kwargs: dict[str, object] = {
            "banner_timeout": s.connect_timeout,
            "auth_timeout": s.connect_timeout,
            "allow_agent": False,
            "look_for_keys": s.key_file is None,
        }
        if s.key_file:
            kwargs["key_filename"] = [str(Path(s.key_file).expanduser())]
        gateway = None
        if s.jump_host:
            juser, jhost, jport = _split_jump(s.jump_host, s.user)
            gateway = fabric.Connection(
                jhost,
                user=juser,
                port=jport,
                connect_kwargs=dict(kwargs),
                connect_timeout=int(s.connect_timeout),
            )
        self._conn = fabric.Connection(
            node.host,
            user=s.user,
            port=s.port,
            connect_kwargs=kwargs,
            gateway=gateway,
            connect_timeout=int(s.connect_timeout),
        )
        self._sudo = s.user != "root"
        self._lock = threading.Lock()

    def _wrap(self, command: str) -> str:
        if self._sudo:
            return f"sudo -n /bin/sh -c {shlex.quote(command)}"
        return command

    def _open(self) -> None:
        import paramiko

        with self._lock:
            if self._conn.is_connected:
                return
            try:
                self._conn.open()
            except (OSError, paramiko.SSHException, EOFError) as exc:
                raise HostUnreachable(
                    self.node.name,
                    f"cannot reach {self.node.ssh.user}@{self.node.host}:{self.node.ssh.port} "
                    f"over SSH: {exc or type(exc).__name__}",
                ) from None

    def run(
        self,
        command: str,
        *,
        step: str,
        timeout: float,
        check: bool = True,
        label: str | None = None,
    ) -> Result:
        import invoke
        import paramiko

        self._open()
        shown = label or command
        try:
            r = self._conn.run(
                self._wrap(command), hide=True, warn=True, timeout=timeout, in_stream=False
            )
        except invoke.exceptions.CommandTimedOut as exc:
            raise StepError(self.node.name, step, shown, None, str(exc.result.stderr)) from None
        except (OSError, paramiko.SSHException, EOFError) as exc:
            raise self._lost(step, exc) from None
        result = Result(shown, r.exited, r.stdout, r.stderr)
        self._sudo_refused(step, result)
        return _check(self.node.name, step, result, check)

    def feed(
        self,
        command: str,
        local: Path | bytes,
        *,
        step: str,
        timeout: float,
        label: str | None = None,
    ) -> Result:
        # A session of its own rather than invoke's runner, whose stdin pump is slow; the file
        # is sent from a thread while this one drains stdout and stderr (a command that writes
        # before it has read all its input must not stall on a full window).
        import paramiko

        self._open()
        shown = label or command
        deadline = time.monotonic() + timeout
        send_error: list[BaseException] = []
        try:
            transport = self._conn.client.get_transport()
            assert transport is not None
            chan = transport.open_session(timeout=timeout)
            chan.settimeout(1.0)
            chan.exec_command(self._wrap(command))
        except (OSError, paramiko.SSHException, EOFError) as exc:
            raise self._lost(step, exc) from None

        def send() -> None:
            try:
                with io.BytesIO(local) if isinstance(local, bytes) else open(local, "rb") as f:
                    while chunk := f.read(1 << 15):
                        while chunk:
                            if chan.closed or time.monotonic() > deadline:
                                return
                            try:
                                n = chan.send(chunk)
                            except TimeoutError:
                                continue
                            if n <= 0:
                                return
                            chunk = chunk[n:]
                chan.shutdown_write()
            except (OSError, paramiko.SSHException, EOFError) as exc:
                send_error.append(exc)

        sender = threading.Thread(target=send, name=f"feed-{self.node.name}", daemon=True)
        sender.start()
        out: list[bytes] = []
        err: list[bytes] = []
        try:
            while not chan.exit_status_ready() or chan.recv_ready() or chan.recv_stderr_ready():
                if time.monotonic() > deadline:
                    raise StepError(
                        self.node.name, step, shown, None, b"".join(err).decode(errors="replace")
                    )
                got = False
                if chan.recv_ready():
                    out.append(chan.recv(1 << 16))
                    got = True
                if chan.recv_stderr_ready():
                    err.append(chan.recv_stderr(1 << 16))
                    got = True
                if not got:
                    time.sleep(0.01)
            code = chan.recv_exit_status()
        except (OSError, paramiko.SSHException, EOFError) as exc:
            raise self._lost(step, exc) from None
        finally:
            chan.close()
            sender.join(5)
        stderr = b"".join(err).decode(errors="replace")
        if send_error and code == 0:
            raise StepError(self.node.name, step, shown, None, f"upload failed: {send_error[0]}")
        result = Result(shown, code, b"".join(out).decode(errors="replace"), stderr)
        self._sudo_refused(step, result)
        return result

    def _lost(self, step: str, exc: BaseException) -> HostUnreachable:
        return HostUnreachable(
            self.node.name, f"{step}: connection to {self.node.host} lost: {exc}"
        )

    def _sudo_refused(self, step: str, result: Result) -> None:
        """sudo itself refused (no rule for the user, or it wants a password): say so, instead
        of reporting the command it never ran as failed."""
        if not self._sudo or result.exit_code != 1:
            return
        first = result.stderr.lstrip().splitlines()[:1]
        if first and first[0].startswith("sudo: "):
            raise HostError(
                self.node.name,
                f"{step}: {self.node.ssh.user}@{self.node.host} cannot run commands as root"
                f" with `sudo -n` (provision needs passwordless sudo for a non-root SSH user):"
                f" {first[0]}",
            )

    def close(self) -> None:
        try:
            self._conn.close()
        except Exception:  # closing a dead connection must not mask the real error
            pass


def connect(node: Node) -> Host:
    if node.connection == "local":
        return LocalHost(node)
    return SSHHost(node)


T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Outcome(Generic[T]):
    node: Node
    value: T | None
    error: BaseException | None


def run_parallel(nodes: Sequence[Node], fn: Callable[[Node], T], parallel: int) -> list[Outcome[T]]:
    """Run `fn` for every node on at most `parallel` threads; errors are collected, not raised."""

    def one(node: Node) -> Outcome[T]:
        try:
            return Outcome(node, fn(node), None)
        except Exception as exc:  # reported per host by the caller
            return Outcome(node, None, exc)

    if not nodes:
        return []
    with ThreadPoolExecutor(max_workers=max(1, min(parallel, len(nodes)))) as pool:
        return list(pool.map(one, nodes))


def tcp_reachable(host: str, port: int, timeout: float) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False
