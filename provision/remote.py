"""What provision does on one host: observe it, install a release, write files, start and stop.

Every remote action is one shell command (or one of the programs of `provision.hostside`, run
by a python on the host as `python -c <its source> args`) with a timeout, so a host needs only
sh, python3 >= 3.11 and sshd. Each SSH command costs a session (and on many hosts a login
shell's rc files), so the steps of one host are built as command parts (`*_cmd`) and sent
together with `apply`. The layout on a host:

    <install_dir>/artifacts/<release>.tar   the wheelhouse, while it is installed
    <install_dir>/releases/<release>/    a venv with senate installed (`.installed` once done)
    <install_dir>/current                symlink to the running release
    <install_dir>/previous               symlink to the release before it (for --rollback)
    <install_dir>/etc/senate.json        the agent config
    <install_dir>/bin/senatectl          start | stop | restart | status
    <install_dir>/run/senate.pid, log/senate.log   (launcher)
    <install_dir>/tls/ca.pem, agent.pem, agent-key.pem   (`tls: generate`)

With TLS on, what provision asks a node's agent goes over HTTPS with the node's certificate
(CONSUL_CACERT, CONSUL_CLIENT_CERT, CONSUL_CLIENT_KEY). With ACLs on, it carries a token: the
node's agent recovery token for what the agent answers about itself (members, info, join,
leave), the management token for what the servers answer (raft peers, leadership transfer).
A token travels on the remote command's stdin into a shell variable and reaches only the one
program that uses it as CONSUL_HTTP_TOKEN: it is in no argv and no other environment.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Literal

from provision import secure
from provision.artifact import Artifact
from provision.hosts import Fed, Host, HostError, Result, StepError, run_input, write_text_part
from provision.hostside import http_request as _http_request
from provision.hostside import install as _install
from provision.hostside import probe as _probe
from provision.hostside import source
from provision.hostside import wait_agent as _wait_agent
from provision.hostside import wait_leader as _wait_leader
from provision.inventory import Node
from provision.render import Rendered

MIN_PYTHON = (3, 11)
MIN_DISK_FREE = 300 * 1024 * 1024

# The host-side programs' exits when a wait fails: the agent is gone, or the deadline passed
# (passed to provision.hostside.wait_agent and wait_leader on their command lines).
WAIT_EXITED, WAIT_TIMEOUT = 93, 94


@dataclass(frozen=True, slots=True)
class HostState:
    python: tuple[int, ...]
    current: str | None
    previous: str | None
    releases: tuple[str, ...]
    config: str | None
    control: str | None
    unit: str | None
    systemd: bool
    running: bool
    ports_busy: tuple[tuple[str, int, str], ...]
    disk_free: int
    executable: str | None = None  # the python the node's `python` resolved to
    digests: tuple[tuple[str, str | None], ...] = ()  # SHA-256 of the TLS files (None: missing)

    def digest(self, path: str) -> str | None:
        return dict(self.digests).get(path)

    def service(self, node: Node) -> str:
        if node.service == "auto":
            return "systemd" if self.systemd else "launcher"
        return node.service


def agent_ports(node: Node) -> list[tuple[str, int]]:
    out = [("tcp", node.port(p)) for p in ("server", "serf_lan", "serf_wan")]
    out += [("udp", node.port("serf_lan")), ("udp", node.port("serf_wan"))]
    return out


def client_ports(node: Node) -> list[tuple[str, int]]:
    return [("tcp", node.port("rpc")), ("tcp", node.port("http")), ("tcp", node.port("dns"))]


def probe_cmd(node: Node) -> str:
    """Run hostside.probe by the node's python (no venv exists yet)."""
    args = [node.install_dir, node.data_dir, node.bind_addr, json.dumps(agent_ports(node))]
    if node.tls:
        args.append(json.dumps(list(secure.host_tls_files(node))))
    return f"{node.python} -c {shlex.quote(source(_probe))} " + " ".join(map(shlex.quote, args))


def probe(host: Host, timeout: float) -> HostState:
    node = host.node
    res = host.run(probe_cmd(node), step="preflight", timeout=timeout, check=False)
    if res.exit_code == 127:
        raise StepError(node.name, "preflight", f"{node.python} -c ...", 127, "python3 not found")
    if res.exit_code != 0:
        raise StepError(
            node.name, "preflight", f"{node.python} -c <probe>", res.exit_code, res.stderr
        )
    try:
        d = json.loads(res.stdout)
    except json.JSONDecodeError:
        raise StepError(
            node.name,
            "preflight",
            "probe",
            res.exit_code,
            f"unreadable probe output: {res.stdout[-200:]}",
        ) from None
    return HostState(
        python=tuple(d["python"]),
        current=d["current"],
        previous=d["previous"],
        releases=tuple(d["releases"]),
        config=d["config"],
        control=d["control"],
        unit=d["unit"],
        systemd=bool(d["systemd"]),
        running=bool(d["running"]),
        ports_busy=tuple((p, int(n), e) for p, n, e in d["ports_busy"]),
        disk_free=int(d["disk_free"]),
        executable=d.get("executable") or None,
        digests=tuple(sorted((d.get("digests") or {}).items())),
    )


def preflight_problems(node: Node, state: HostState) -> list[str]:
    problems = []
    if state.python < MIN_PYTHON:
        have = ".".join(map(str, state.python))
        problems.append(f"{node.python} is {have}; senate needs Python >= 3.11")
    if not state.running and state.ports_busy:
        busy = ", ".join(f"{n}/{p} ({e})" for p, n, e in state.ports_busy)
        problems.append(f"ports in use on {node.bind_addr}: {busy}")
    if state.disk_free < MIN_DISK_FREE and not state.releases:
        problems.append(
            f"only {state.disk_free // (1024 * 1024)} MiB free under {node.install_dir}; "
            f"need {MIN_DISK_FREE // (1024 * 1024)} MiB"
        )
    return problems


@dataclass(frozen=True, slots=True)
class ReleasePaths:
    """Where a release lives on a node, each shell-quoted: the venv, the uploaded wheelhouse
    and the directory its wheels are extracted to when pip has to install them."""

    rel_dir: str
    tarball: str
    art_dir: str

    @classmethod
    def of(cls, node: Node, release: str) -> ReleasePaths:
        q, base = shlex.quote, node.install_dir
        return cls(
            q(f"{base}/releases/{release}"),
            q(f"{base}/artifacts/{release}.tar"),
            q(f"{base}/artifacts/{release}"),
        )


def _guard(step: str, cmd: str) -> str:
    """`cmd`, naming `step` on stderr if it fails (one remote command runs several steps)."""
    return f'{{ {cmd}; }} || {{ rc=$?; echo "provision: {step} failed (exit $rc)" >&2; exit $rc; }}'


NEEDS_PIP = 95  # the install command's exit status when a wheel does not fit the host


def install_cmd(node: Node, artifact: Artifact, python: str | None = None) -> str:
    """Receive the wheelhouse on stdin and install it into <install_dir>/releases/<release> (a
    venv): the wheels are unpacked into it directly. When a wheel does not fit this host the
    command exits NEEDS_PIP with the venv made and the wheels extracted, nothing else written
    (see `install`, which then installs with pip). `python` is the host's interpreter as the
    probe resolved it (default: the node's)."""
    q = shlex.quote
    at = ReleasePaths.of(node, artifact.release)
    py = q(python) if python else node.python
    unpack = f"{py} -I -c {q(source(_install))} {at.rel_dir} {at.tarball} {at.art_dir}"
    return " && ".join(
        [
            _guard("install", f"mkdir -p {q(node.install_dir)}/artifacts && cat > {at.tarball}"),
            # hostside.install's NOT_FOR_THIS_HOST (a wheel for another platform) becomes
            # NEEDS_PIP, unguarded; its other failures are the install step's.
            f"{{ {unpack} || {{ rc=$?; [ $rc -eq {_install.NOT_FOR_THIS_HOST} ] && exit {NEEDS_PIP};"
            f' echo "provision: install failed (exit $rc)" >&2; exit $rc; }}; }}',
            _installed_cmd(node, artifact),
        ]
    )


def pip_install_cmd(node: Node, artifact: Artifact, receive: bool) -> str:
    """After NEEDS_PIP: install the extracted wheels with pip, run from its own wheel (hosts need
    no pip, and host pip configs and indexes play no part). `receive`: pip's wheel arrives on
    stdin (an artifact that carries it in the wheelhouse has it extracted already)."""
    at = ReleasePaths.of(node, artifact.release)
    pip = f"{at.art_dir}/{shlex.quote(artifact.pip_wheel)}"
    parts = [f"cat > {pip}"] if receive else []
    parts.append(
        f"PIP_CONFIG_FILE=/dev/null {at.rel_dir}/bin/python {pip}/pip install -q --no-index"
        f" --no-compile --disable-pip-version-check --find-links {at.art_dir}"
        f" senate=={artifact.version}"
    )
    return " && ".join([_guard("install", " && ".join(parts)), _installed_cmd(node, artifact)])


def _installed_cmd(node: Node, artifact: Artifact) -> str:
    at = ReleasePaths.of(node, artifact.release)
    return _guard("install", f"rm -rf {at.tarball} {at.art_dir} && touch {at.rel_dir}/.installed")


def switch_cmd(node: Node, release: str) -> str:
    """Point `current` at `release`, keeping the one it pointed at as `previous`."""
    q = shlex.quote
    return _guard(
        "switch release",
        f'cd {q(node.install_dir)} && if [ -L current ] && [ "$(basename "$(readlink current)")" != {q(release)} ]; '
        f'then ln -sfn "$(readlink current)" previous; fi && '
        f"ln -sfn releases/{q(release)} current.tmp && mv -T current.tmp current",
    )


#: A part of one remote command: its text, or its text and what it reads from stdin.
Part = str | Fed


def files_cmd(node: Node, rendered: Rendered) -> Fed:
    """Every rendered file (their contents on stdin) and the run/log/data directories (and
    systemd told of the unit)."""
    q = shlex.quote
    files = [write_text_part(f.content, f.path, f.mode) for f in rendered.files]
    parts = [f.cmd for f in files]
    parts.append(f"mkdir -p {q(node.data_dir)} {q(node.install_dir)}/run {q(node.install_dir)}/log")
    if rendered.unit is not None:
        parts.append("systemctl daemon-reload && systemctl enable senate.service -q")
    return Fed(_guard("write config", " && ".join(parts)), b"".join(f.data for f in files))


Auth = Literal["agent", "operator"]
TOKEN_VAR = "PROVISION_TOKEN"  # the shell variable a token is read into from stdin
READ_TOKEN = f"IFS= read -r {TOKEN_VAR}"


def token(node: Node, auth: Auth) -> str | None:
    """The token a request of kind `auth` carries (None without ACLs): "operator" the
    management token once `up` has made it, "agent" (and "operator" before that) the node's
    agent recovery token."""
    if not node.acl:
        return None
    if auth == "operator" and node.acl_token_file:
        try:
            return Path(node.acl_token_file).read_text().strip() or None
        except FileNotFoundError:
            pass
    return node.recovery_token or None


def token_input(node: Node, auth: Auth | None) -> bytes | None:
    """What the command of `authed` reads from stdin (None: it reads nothing)."""
    secret = token(node, auth) if auth is not None else None
    return None if secret is None else (secret + "\n").encode()


def authed(node: Node, cmd: str, auth: Auth | None) -> str:
    """`cmd` (one simple command) with the node's TLS files in its environment and, when a
    token goes with it, CONSUL_HTTP_TOKEN from the variable READ_TOKEN filled."""
    env = [f"{k}={shlex.quote(v)}" for k, v in secure.api_env(node).items()]
    if token_input(node, auth) is not None:
        env.append(f'CONSUL_HTTP_TOKEN="${TOKEN_VAR}"')
    return " ".join([*env, cmd])


def program_cmd(node: Node, program: ModuleType, *args: str, auth: Auth | None = None) -> str:
    """Run the host-side `program` (a module of provision.hostside) with `args` by the current
    release's python (with the node's TLS files and, for `auth`, a token: see `authed`)."""
    py = f"{node.install_dir}/current/bin/python"
    cmd = " ".join(shlex.quote(a) for a in (py, "-I", "-c", source(program), *args))
    return authed(node, cmd, auth)


def configure_cmds(node: Node, release: str, rendered: Rendered) -> list[Part]:
    """Point `current` at `release` and write the rendered files (parts for `apply`)."""
    return [switch_cmd(node, release), files_cmd(node, rendered)]


def wait_cmd(node: Node, deadline_s: float) -> str:
    """Wait on the host until the agent answers `senate members` (see hostside.wait_agent)."""
    return program_cmd(
        node,
        _wait_agent,
        node.install_dir,
        node.rpc_addr,
        f"{deadline_s:g}",
        str(WAIT_EXITED),
        str(WAIT_TIMEOUT),
        auth="agent",
    )


def control_cmd(node: Node, action: str) -> str:
    return _guard(action, f"{shlex.quote(node.install_dir + '/bin/senatectl')} {action} >/dev/null")


def apply(
    host: Host,
    parts: list[Part],
    step: str,
    timeout: float,
    waits: bool = False,
    stdin: bytes | None = None,
) -> Result:
    """Run the command `parts` (from the *_cmd builders) as one remote command. A failing part
    raises StepError naming that part's step; with `waits` (the last part is wait_cmd) an agent
    that exited or did not answer raises HostError with the waiter's account (and its log).
    `stdin` is a token (`token_input`), read first into the variable `authed` parts use; the
    Fed parts' data follows it, in their order."""
    texts = [p.cmd if isinstance(p, Fed) else p for p in parts]
    data = b"".join(p.data for p in parts if isinstance(p, Fed))
    if stdin is not None:
        texts, data = [READ_TOKEN, *texts], stdin + data
    cmd = " && ".join(texts)
    if not data:
        res = host.run(cmd, step=step, timeout=timeout, check=False, label=f"<{step}>")
    else:
        res = run_input(host, cmd, data, step=step, timeout=timeout, check=False, label=f"<{step}>")
    return _checked(host, res, step, waits)


def install(
    host: Host,
    artifact: Artifact,
    timeout: float,
    python: str | None = None,
    after: list[str] | None = None,
) -> Result:
    """Upload the wheelhouse and install it, and then the `after` parts, in one remote command:
    the tarball travels on its stdin (no SFTP session beside it). Only when a wheel does not fit
    the host, a second command installs with pip (its wheel sent then, when the artifact keeps
    it beside the wheelhouse)."""
    node, tail = host.node, [*(after or [])]
    res = host.feed(
        " && ".join([install_cmd(node, artifact, python), *tail]),
        artifact.tarball,
        step="install",
        timeout=timeout,
        label="<install>",
    )
    if res.exit_code == NEEDS_PIP:
        cmd = " && ".join([pip_install_cmd(node, artifact, artifact.pip is not None), *tail])
        if artifact.pip is not None:
            res = host.feed(cmd, artifact.pip, step="install", timeout=timeout, label="<install>")
        else:
            res = host.run(cmd, step="install", timeout=timeout, check=False, label="<install>")
    return _checked(host, res, "install", waits=False)


def _checked(host: Host, res: Result, step: str, waits: bool) -> Result:
    if res.exit_code == 0:
        return res
    if waits and res.exit_code in (WAIT_EXITED, WAIT_TIMEOUT):
        raise HostError(host.node.name, res.stderr.strip())
    failed = [ln for ln in res.stderr.splitlines() if ln.startswith("provision: ")]
    name = failed[-1][len("provision: ") :].split(" failed")[0] if failed else step
    raise StepError(host.node.name, name, f"<{name}>", res.exit_code, res.stderr or res.stdout)


def install_release(
    host: Host, artifact: Artifact, timeout: float, python: str | None = None
) -> None:
    """Upload the wheelhouse and install it into <install_dir>/releases/<release>; then check
    that its `senate` runs."""
    rel_dir = ReleasePaths.of(host.node, artifact.release).rel_dir
    check = _guard("install", f"{rel_dir}/bin/senate --version >/dev/null")
    install(host, artifact, timeout, python, [check])


def switch_release(host: Host, release: str, timeout: float) -> None:
    apply(host, [switch_cmd(host.node, release)], "switch release", timeout)


def write_files(host: Host, rendered: Rendered, timeout: float) -> None:
    """Every rendered file and the run/log/data directories, in one remote command."""
    apply(host, [files_cmd(host.node, rendered)], "write config", timeout)


def control(host: Host, action: str, timeout: float) -> Result:
    ctl = f"{host.node.install_dir}/bin/senatectl"
    return host.run(f"{shlex.quote(ctl)} {action}", step=action, timeout=timeout)


def start_agent(
    host: Host, action: str, deadline_s: float, timeout: float, before: list[Part] | None = None
) -> None:
    """`before` (more *_cmd parts), then senatectl `action` (start | restart), then wait until
    the agent answers: one remote command."""
    parts = [*(before or []), control_cmd(host.node, action), wait_cmd(host.node, deadline_s)]
    stdin = token_input(host.node, "agent")
    apply(host, parts, action, timeout + deadline_s, waits=True, stdin=stdin)


def wait_leader(host: Host, deadline_s: float, timeout: float) -> str:
    """Wait, on the server `host`, until its agent knows a raft leader; returns the leader's
    server address (ip:port). One remote command, however long the election takes."""
    url = f"{host.node.api_url}/v1/status/leader"  # /v1/status needs no token, as Consul's
    args = (url, f"{deadline_s:g}", str(WAIT_EXITED), str(WAIT_TIMEOUT))
    cmd = program_cmd(host.node, _wait_leader, *args)
    res = apply(host, [cmd], "leader", timeout + deadline_s, waits=True)
    return res.stdout.strip()


def wait_agent(host: Host, deadline_s: float, timeout: float) -> None:
    stdin = token_input(host.node, "agent")
    apply(host, [wait_cmd(host.node, deadline_s)], "wait", timeout + deadline_s, True, stdin=stdin)


def _run_authed(
    host: Host, cmd: str, auth: Auth, *, step: str, timeout: float, check: bool, label: str
) -> Result:
    """`cmd` (made by `authed` for `auth`), its token on stdin when one goes with it."""
    stdin = token_input(host.node, auth)
    if stdin is None:
        return host.run(cmd, step=step, timeout=timeout, check=check, label=label)
    cmd = f"{READ_TOKEN} && {cmd}"
    return run_input(host, cmd, stdin, step=step, timeout=timeout, check=check, label=label)


def senate(
    host: Host, args: str, timeout: float, check: bool = True, auth: Auth = "agent"
) -> Result:
    """Run `senate <args>` from the node's current release against its own agent; `auth`
    "operator" for what needs the management token (raft peers)."""
    exe = f"{shlex.quote(host.node.install_dir + '/current/bin/senate')} {args}"
    return _run_authed(
        host,
        authed(host.node, exe, auth),
        auth,
        step=f"senate {args.split()[0]}",
        timeout=timeout,
        check=check,
        label=exe,
    )


def http(host: Host, path: str, timeout: float, method: str = "GET") -> tuple[int, str]:
    """One request to the node's own HTTP API, made on the node, with the management token.
    Raises HostError when the agent does not answer."""
    node = host.node
    url = f"{node.api_url}{path}"
    cmd = program_cmd(node, _http_request, method, url, str(timeout), auth="operator")
    res = _run_authed(
        host,
        cmd,
        "operator",
        step=f"http {path}",
        timeout=timeout + 10,
        check=True,
        label=f"<http {method} {path}>",
    )
    d = json.loads(res.stdout)
    if "error" in d:
        raise HostError(node.name, f"HTTP {method} {path}: {d['error']}")
    return int(d["status"]), str(d["body"])


def kill_agent(host: Host, timeout: float) -> None:
    """SIGKILL the agent (tests and benchmarks: a crash, not a stop)."""
    pidfile = f"{host.node.install_dir}/run/senate.pid"
    host.run(f"kill -9 $(cat {shlex.quote(pidfile)})", step="kill", timeout=timeout)
