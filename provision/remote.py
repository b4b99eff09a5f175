"""What provision does on one host: observe it, install a release, write files, start and stop.

Every remote action is one shell command (or one Python snippet run by the host's python3)
with a timeout, so a host needs only sh, python3 >= 3.11 and sshd. Each SSH command costs a
session (and on many hosts a login shell's rc files), so the steps of one host are built as
command parts (`*_cmd`) and sent together with `apply`. The layout on a host:

    <install_dir>/artifacts/<release>.tar   the wheelhouse, while it is installed
    <install_dir>/releases/<release>/    a venv with senate installed (`.installed` once done)
    <install_dir>/current                symlink to the running release
    <install_dir>/previous               symlink to the release before it (for --rollback)
    <install_dir>/etc/senate.json        the agent config
    <install_dir>/bin/senatectl          start | stop | restart | status
    <install_dir>/run/senate.pid, log/senate.log   (launcher)
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass

from provision.artifact import Artifact
from provision.hosts import Host, HostError, Result, StepError, write_text_cmd
from provision.inventory import Node
from provision.render import Rendered

MIN_PYTHON = (3, 11)
MIN_DISK_FREE = 300 * 1024 * 1024

_PROBE = r"""
import errno, json, os, shutil, socket, subprocess, sys
install, data, bind, ports = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
def read(p):
    try:
        with open(p) as f:
            return f.read()
    except OSError:
        return None
def link(name):
    p = os.path.join(install, name)
    return os.path.basename(os.readlink(p)) if os.path.islink(p) else None
rel_dir = os.path.join(install, "releases")
releases = sorted(r for r in os.listdir(rel_dir)
                  if os.path.exists(os.path.join(rel_dir, r, ".installed"))) if os.path.isdir(rel_dir) else []
ctl = os.path.join(install, "bin", "senatectl")
running = False
if os.path.exists(ctl):
    running = subprocess.run([ctl, "status"], capture_output=True).returncode == 0
busy = []
for proto, port in ports:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM)
    try:
        if proto == "tcp":  # as the agent's listeners do: TIME_WAIT from a crash is no conflict
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((bind, port))
    except OSError as e:
        busy.append([proto, port, os.strerror(e.errno) if e.errno else str(e)])
    finally:
        s.close()
probe_dir = install
while not os.path.isdir(probe_dir):
    probe_dir = os.path.dirname(probe_dir)
print(json.dumps({
    "python": list(sys.version_info[:3]), "executable": os.path.realpath(sys.executable),
    "current": link("current"), "previous": link("previous"), "releases": releases,
    "config": read(os.path.join(install, "etc", "senate.json")),
    "control": read(ctl),
    "unit": read("/etc/systemd/system/senate.service"),
    "systemd": os.path.isdir("/run/systemd/system"),
    "running": running, "ports_busy": busy,
    "disk_free": shutil.disk_usage(probe_dir).free,
}))
"""

# Reads one agent HTTP endpoint from the host itself (the HTTP API binds client_addr, which is
# often 127.0.0.1): prints {"status": .., "body": ..} or {"error": ..}.
_HTTP = r"""
import json, sys, urllib.request, urllib.error
method, url = sys.argv[1], sys.argv[2]
try:
    with urllib.request.urlopen(urllib.request.Request(url, method=method, data=b"" if method != "GET" else None), timeout=float(sys.argv[3])) as r:
        print(json.dumps({"status": r.status, "body": r.read().decode()}))
except urllib.error.HTTPError as e:
    print(json.dumps({"status": e.code, "body": e.read().decode(errors="replace")}))
except Exception as e:
    print(json.dumps({"error": str(e)}))
"""


# The fast install (issue 6): run by the host's python (resolved by the probe, so no shim or
# wrapper starts in between), it makes the release's venv and unpacks the wheels straight from
# the uploaded wheelhouse tarball into its site-packages, as pip would, without pip's resolver
# and startup; then the bytecode bundle compiled on the controller, when this Python is the one
# it was compiled for.
_INSTALL = r"""
# Makes the venv sys.argv[1] and installs every wheel of the wheelhouse tarball sys.argv[2]
# (except pip's own) into it by unpacking it, as pip would, and writes the console scripts.
# Exits 3 with the venv made and the wheels extracted to sys.argv[3], nothing else written, when
# a wheel's tags do not fit this host (the caller then installs with pip from there).
import configparser, importlib.util, os, platform, re, shutil, sys, sysconfig, tarfile, venv, zipfile
rel, tarball, art_dir = sys.argv[1], sys.argv[2], sys.argv[3]
maj, mnr = sys.version_info[:2]
machine = platform.machine()
libc, libc_ver = platform.libc_ver()
glibc = tuple(int(x) for x in libc_ver.split(".")[:2]) if libc == "glibc" and libc_ver else None
legacy = {"manylinux1": (2, 5), "manylinux2010": (2, 12), "manylinux2014": (2, 17)}
def plat_ok(p):
    if p == "any":
        return True
    if p == f"linux_{machine}":
        return True
    m = re.fullmatch(r"manylinux_(\d+)_(\d+)_(.+)", p)
    if m:
        return m.group(3) == machine and glibc is not None and glibc >= (int(m.group(1)), int(m.group(2)))
    for name, need in legacy.items():
        if p == f"{name}_{machine}":
            return glibc is not None and glibc >= need
    return False
def py_ok(py, abi):
    if abi == "none":
        return py in ("py3", f"py3{mnr}", f"cp3{mnr}") or py == f"py{maj}"
    if abi == "abi3":
        m = re.fullmatch(r"cp3(\d+)", py)
        return m is not None and int(m.group(1)) <= mnr
    return py == f"cp{maj}{mnr}" and abi in (f"cp{maj}{mnr}", f"cp{maj}{mnr}m")
def fits(name):
    parts = name[:-4].split("-")
    if len(parts) not in (5, 6):
        return False
    pys, abis, plats = (t.split(".") for t in parts[-3:])
    return any(py_ok(p, a) for p in pys for a in abis) and any(plat_ok(p) for p in plats)
def safe(name):
    parts = name.split("/")
    if ".." in parts or name.startswith("/"):
        raise SystemExit(f"unsafe path {name}")
    return parts
shutil.rmtree(rel, ignore_errors=True)
shutil.rmtree(art_dir, ignore_errors=True)
venv.EnvBuilder(symlinks=os.name != "nt", with_pip=False).create(rel)
scheme = "venv" if "venv" in sysconfig.get_scheme_names() else "posix_prefix"
paths = sysconfig.get_paths(scheme, vars={"base": rel, "platbase": rel, "installed_base": rel, "installed_platbase": rel})
site, bindir = paths["purelib"], os.path.join(rel, "bin")
exe = os.path.join(bindir, "python")
dest = {"purelib": paths["purelib"], "platlib": paths["platlib"], "scripts": bindir,
        "headers": os.path.join(rel, "include"), "data": rel}
bundle = f"pycache-{sys.implementation.cache_tag}-{importlib.util.MAGIC_NUMBER.hex()}.tar.gz"
with tarfile.open(tarball) as tf:
    members = {os.path.basename(m.name): m for m in tf.getmembers() if m.isfile()}
    wheels = sorted(w for w in members if w.endswith(".whl") and not w.startswith("pip-"))
    bad = [w for w in wheels if not fits(w)]
    if bad:
        os.makedirs(art_dir)
        for name, m in members.items():
            if name.endswith(".whl"):
                with open(os.path.join(art_dir, name), "wb") as f:
                    shutil.copyfileobj(tf.extractfile(m), f)
        print("wheels not for this host: " + ", ".join(bad), file=sys.stderr)
        sys.exit(3)
    scripts = {}
    for w in wheels:
        try:
            zf = zipfile.ZipFile(tf.extractfile(members[w]))
        except zipfile.BadZipFile as exc:
            raise SystemExit(f"{w}: BadZipFile: {exc}")
        with zf:
            for info in zf.infolist():
                parts = safe(info.filename)
                if parts[0].endswith(".data") and len(parts) > 2:
                    target = os.path.join(dest[parts[1]], *parts[2:])
                else:
                    target = os.path.join(site, *parts)
                if info.is_dir():
                    os.makedirs(target, exist_ok=True)
                    continue
                os.makedirs(os.path.dirname(target), exist_ok=True)
                data = zf.read(info)
                if parts[0].endswith(".data") and parts[1] == "scripts" and data.startswith(b"#!python"):
                    data = b"#!" + exe.encode() + data[len(b"#!python"):]
                with open(target, "wb") as f:
                    f.write(data)
                mode = (info.external_attr >> 16) & 0o777
                if mode & 0o111 or (parts[0].endswith(".data") and parts[1] == "scripts"):
                    os.chmod(target, 0o755)
                if parts[0].endswith(".dist-info") and len(parts) == 2 and parts[1] == "entry_points.txt":
                    cp = configparser.ConfigParser(delimiters=("=",))
                    cp.optionxform = str
                    cp.read_string(data.decode())
                    if cp.has_section("console_scripts"):
                        scripts.update(cp.items("console_scripts"))
                if parts[0].endswith(".dist-info") and len(parts) == 2 and parts[1] == "RECORD":
                    with open(os.path.join(os.path.dirname(target), "INSTALLER"), "w") as f:
                        f.write("senate-provision\n")
    if bundle in members:
        with tarfile.open(fileobj=tf.extractfile(members[bundle]), mode="r:gz") as pyc:
            for m in pyc:
                parts = safe(m.name)
                if not (m.isfile() and len(parts) > 1 and parts[-2] == "__pycache__" and parts[-1].endswith(".pyc")):
                    continue
                target = os.path.join(site, *parts)
                os.makedirs(os.path.dirname(target), exist_ok=True)
                with open(target, "wb") as f:
                    shutil.copyfileobj(pyc.extractfile(m), f)
for name, ref in scripts.items():
    mod, _, attr = ref.partition(":")
    attr = attr.split("[")[0].strip()
    head = attr.split(".")[0]
    path = os.path.join(bindir, name)
    with open(path, "w") as f:
        f.write(f"#!{exe}\nimport sys\nfrom {mod.strip()} import {head}\n"
                f"if __name__ == '__main__':\n    sys.exit({attr}())\n")
    os.chmod(path, 0o755)
"""

# Waits, on the host, until the agent just started answers on its CLI RPC address: polls the
# process (the launcher's pid file, else senatectl status) and the port with a growing interval,
# then asks for the LAN members over Consul's CLI RPC (the handshake and `members-lan`, as
# `senate members` does, without starting the CLI). Exit 0 when it answers, WAIT_EXITED with
# the end of the agent's log when the agent is gone, WAIT_TIMEOUT at the deadline. Run by the
# release's python: msgpack is the only thing it needs besides the standard library.
WAIT_EXITED, WAIT_TIMEOUT = 93, 94
_WAIT = r"""
import os, socket, subprocess, sys, time
base, rpc, deadline_s = sys.argv[1], sys.argv[2], float(sys.argv[3])
exited, timed_out = int(sys.argv[4]), int(sys.argv[5])
ctl, log, pidfile = f"{base}/bin/senatectl", f"{base}/log/senate.log", f"{base}/run/senate.pid"
host, _, port = rpc.rpartition(":")
host = host.strip("[]")
deadline = time.monotonic() + deadline_s
delay, last, gone_since = 0.05, "not started", None
def alive():
    try:
        with open(pidfile) as f:
            pid = int(f.read().strip())
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            if f"-config-dir={base}/etc".encode() in f.read():
                return True
    except (OSError, ValueError):
        pass
    return subprocess.run([ctl, "status"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0
def tail():
    try:
        with open(log, errors="replace") as f:
            lines = f.read().splitlines()[-12:]
    except OSError:
        lines = []
    return "\n".join(lines).strip() or "(no log output; under systemd see journalctl -u senate)"
def members():
    # None when the agent answered, else what went wrong
    try:
        import msgpack
    except ImportError:
        r = subprocess.run([f"{base}/current/bin/senate", "members", f"-rpc-addr={rpc}"], capture_output=True, text=True)
        lines = (r.stderr or r.stdout).strip().splitlines()
        return None if r.returncode == 0 else (lines[-1] if lines else f"exit {r.returncode}")
    unpacker = msgpack.Unpacker(raw=False, strict_map_key=False, unicode_errors="surrogateescape")
    with socket.create_connection((host, int(port)), 2) as s:
        s.settimeout(5)
        def read():
            while True:
                for obj in unpacker:
                    return obj
                data = s.recv(65536)
                if not data:
                    raise OSError("RPC connection closed by the agent")
                unpacker.feed(data)
        for seq, command, body in ((1, "handshake", {"Version": 1}), (2, "members-lan", None)):
            s.sendall(msgpack.packb({"Command": command, "Seq": seq}) + (msgpack.packb(body) if body else b""))
            header = read()
            if not isinstance(header, dict) or header.get("Seq") != seq:
                return f"RPC protocol error: unexpected reply {header!r}"
            if header.get("Error"):
                return str(header["Error"])
        read()  # the members
    return None
while True:
    if not alive():
        # gone for a while: a launcher's child may not have exec'd the agent yet at first
        gone_since = gone_since or time.monotonic()
        if time.monotonic() - gone_since >= 0.3:
            print(f"agent exited while starting ({base}/current/bin/senate agent -config-dir={base}/etc); end of its log:\n{tail()}", file=sys.stderr)
            sys.exit(exited)
        last = "agent process not found"
    else:
        gone_since = None
        try:
            problem = members()
        except OSError as exc:
            problem = f"nothing listening on {rpc} yet ({exc.strerror or exc})"
        if problem is None:
            sys.exit(0)
        last = problem
    if time.monotonic() >= deadline:
        print(f"agent did not answer within {deadline_s:g}s: {last}", file=sys.stderr)
        sys.exit(timed_out)
    time.sleep(delay)
    delay = min(delay * 1.5, 0.5)
"""


# Waits on a server until its agent knows a raft leader: polls the node's own HTTP API,
# /v1/status/leader ("" until there is one, as Consul's), with a growing interval; prints the
# leader's address and exits 0, exits WAIT_EXITED when the agent has not answered for 5 s, or
# WAIT_TIMEOUT at the deadline, saying what it last saw.
_WAIT_LEADER = r"""
import json, sys, time, urllib.request
url, deadline_s = sys.argv[1], float(sys.argv[2])
exited, timed_out = int(sys.argv[3]), int(sys.argv[4])
deadline = time.monotonic() + deadline_s
delay, last, silent_since = 0.05, "no answer yet", time.monotonic()
while True:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            leader = json.loads(r.read() or b'""')
        if leader:
            print(leader)
            sys.exit(0)
        last, silent_since = "the agent knows no leader yet", None
    except Exception as exc:
        last, silent_since = str(exc), silent_since or time.monotonic()
        if time.monotonic() - silent_since >= 5:  # this agent is gone: ask another server
            print(f"the agent does not answer: {last}", file=sys.stderr)
            sys.exit(exited)
    if time.monotonic() >= deadline:
        print(f"no leader within {deadline_s:g}s: {last}", file=sys.stderr)
        sys.exit(timed_out)
    time.sleep(delay)
    delay = min(delay * 1.5, 0.25)
"""


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


def probe(host: Host, timeout: float) -> HostState:
    node = host.node
    args = [node.install_dir, node.data_dir, node.bind_addr, json.dumps(agent_ports(node))]
    cmd = f"{node.python} -c {shlex.quote(_PROBE)} " + " ".join(shlex.quote(a) for a in args)
    res = host.run(cmd, step="preflight", timeout=timeout, check=False)
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
    unpack = f"{py} -I -c {q(_INSTALL)} {at.rel_dir} {at.tarball} {at.art_dir}"
    return " && ".join(
        [
            _guard("install", f"mkdir -p {q(node.install_dir)}/artifacts && cat > {at.tarball}"),
            # _INSTALL's exit 3 (a wheel for another platform) becomes NEEDS_PIP, unguarded;
            # its other failures are the install step's.
            f"{{ {unpack} || {{ rc=$?; [ $rc -eq 3 ] && exit {NEEDS_PIP};"
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


def files_cmd(node: Node, rendered: Rendered) -> str:
    """Every rendered file and the run/log/data directories (and systemd told of the unit)."""
    q = shlex.quote
    parts = [write_text_cmd(f.content, f.path, f.mode) for f in rendered.files]
    parts.append(f"mkdir -p {q(node.data_dir)} {q(node.install_dir)}/run {q(node.install_dir)}/log")
    if rendered.unit is not None:
        parts.append("systemctl daemon-reload && systemctl enable senate.service -q")
    return _guard("write config", " && ".join(parts))


def _snippet_cmd(node: Node, script: str, *args: str) -> str:
    """Run `script` (one of the snippets above) with `args` by the current release's python."""
    py = f"{node.install_dir}/current/bin/python"
    return " ".join(shlex.quote(a) for a in (py, "-I", "-c", script, *args))


def configure_cmds(node: Node, release: str, rendered: Rendered) -> list[str]:
    """Point `current` at `release` and write the rendered files (parts for `apply`)."""
    return [switch_cmd(node, release), files_cmd(node, rendered)]


def wait_cmd(node: Node, deadline_s: float) -> str:
    """Wait on the host until the agent answers `senate members` (see _WAIT)."""
    return _snippet_cmd(
        node,
        _WAIT,
        node.install_dir,
        node.rpc_addr,
        f"{deadline_s:g}",
        str(WAIT_EXITED),
        str(WAIT_TIMEOUT),
    )


def control_cmd(node: Node, action: str) -> str:
    return _guard(action, f"{shlex.quote(node.install_dir + '/bin/senatectl')} {action} >/dev/null")


def apply(host: Host, parts: list[str], step: str, timeout: float, waits: bool = False) -> Result:
    """Run the command `parts` (from the *_cmd builders) as one remote command. A failing part
    raises StepError naming that part's step; with `waits` (the last part is wait_cmd) an agent
    that exited or did not answer raises HostError with the waiter's account (and its log)."""
    cmd = " && ".join(parts)
    res = host.run(cmd, step=step, timeout=timeout, check=False, label=f"<{step}>")
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
    host: Host, action: str, deadline_s: float, timeout: float, before: list[str] | None = None
) -> None:
    """`before` (more *_cmd parts), then senatectl `action` (start | restart), then wait until
    the agent answers: one remote command."""
    parts = [*(before or []), control_cmd(host.node, action), wait_cmd(host.node, deadline_s)]
    apply(host, parts, action, timeout + deadline_s, waits=True)


def wait_leader(host: Host, deadline_s: float, timeout: float) -> str:
    """Wait, on the server `host`, until its agent knows a raft leader; returns the leader's
    server address (ip:port). One remote command, however long the election takes."""
    url = f"http://{host.node.http_addr}/v1/status/leader"
    args = (url, f"{deadline_s:g}", str(WAIT_EXITED), str(WAIT_TIMEOUT))
    cmd = _snippet_cmd(host.node, _WAIT_LEADER, *args)
    res = apply(host, [cmd], "leader", timeout + deadline_s, waits=True)
    return res.stdout.strip()


def wait_agent(host: Host, deadline_s: float, timeout: float) -> None:
    apply(host, [wait_cmd(host.node, deadline_s)], "wait", timeout + deadline_s, waits=True)


def senate(host: Host, args: str, timeout: float, check: bool = True) -> Result:
    """Run `senate <args>` from the node's current release against its own agent."""
    exe = f"{host.node.install_dir}/current/bin/senate"
    return host.run(
        f"{shlex.quote(exe)} {args}", step=f"senate {args.split()[0]}", timeout=timeout, check=check
    )


def http(host: Host, path: str, timeout: float, method: str = "GET") -> tuple[int, str]:
    """One request to the node's own HTTP API, made on the node. Raises HostError when the agent
    does not answer."""
    node = host.node
    cmd = _snippet_cmd(node, _HTTP, method, f"http://{node.http_addr}{path}", str(timeout))
    res = host.run(cmd, step=f"http {path}", timeout=timeout + 10)
    d = json.loads(res.stdout)
    if "error" in d:
        raise HostError(node.name, f"HTTP {method} {path}: {d['error']}")
    return int(d["status"]), str(d["body"])


def kill_agent(host: Host, timeout: float) -> None:
    """SIGKILL the agent (tests and benchmarks: a crash, not a stop)."""
    pidfile = f"{host.node.install_dir}/run/senate.pid"
    host.run(f"kill -9 $(cat {shlex.quote(pidfile)})", step="kill", timeout=timeout)
