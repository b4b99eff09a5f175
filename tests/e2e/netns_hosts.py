"""Real SSH hosts on this machine for provision's end-to-end tests.

Each host is a network namespace joined by a veth pair to one bridge, with its own address in
10.77.0.0/24 (a private test range: these are the only non-loopback addresses the tests
use), its own sshd (Debian openssh-server; host and client keys generated for the run) and its
own mount namespace with private tmpfs on /opt, /var/lib and /root, so every host has its own
install and data directories and its own (empty) root home as a real one would. Where sudo is
installed, each host also has two users of its own (its /etc/passwd, group, shadow and
sudoers.d are bind-mounted copies): `deploy`, who may `sudo -n` anything, and `nosudo`.
The hosts share the rest of the filesystem, so the system's python3 >= 3.11 exists on them;
they have no package index.

Everything is torn down by `HostLab.close()` (also called on failure, and at the start of the
next run for anything a killed run left behind): the processes inside each namespace (started
by the test, through sshd) are killed by PID, then the namespaces, veths and bridge go.

As a script:  python tests/e2e/netns_hosts.py up 5     (prints the hosts, keeps them)
              python tests/e2e/netns_hosts.py down
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

PREFIX = "prov"
BRIDGE = f"{PREFIX}br0"
# 10.77.0.0/24: a private test range, the only non-loopback addresses the tests use.
SUBNET = "10.77.0"
GATEWAY = f"{SUBNET}.1"
STATE_DIR = Path(tempfile.gettempdir()) / "provision-e2e-lab"
# Users of every host besides root (where sudo is installed): one that may `sudo -n`, one not.
SUDO_USER, NO_SUDO_USER = "deploy", "nosudo"
_USERS = ((SUDO_USER, 1077), (NO_SUDO_USER, 1078))  # name, uid (= gid)


def unavailable_reason() -> str | None:
    """Why the lab cannot run here, or None."""
    if os.geteuid() != 0:
        return "e2e hosts need root (ip netns, mount namespaces)"
    for tool in ("ip", "unshare", "ssh-keygen", "mount"):
        if shutil.which(tool) is None:
            return f"`{tool}` is missing (scripts/test.sh installs iproute2/openssh as root)"
    if not Path("/usr/sbin/sshd").exists():
        return "/usr/sbin/sshd is missing (scripts/test.sh installs openssh-server as root)"
    probe = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"ip netns does not work here: {probe.stderr.strip()}"
    return None


def _run(*cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(cmd), capture_output=True, text=True, timeout=30)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: exit {proc.returncode}: {proc.stderr.strip()}")
    return proc


@dataclass
class LabHost:
    index: int
    netns: str
    veth: str  # the bridge-side end, in the root namespace (partition: set it down)
    address: str
    sshd: subprocess.Popen[bytes] | None = None


class HostLab:
    def __init__(self, count: int, workdir: Path | None = None) -> None:
        if not 1 <= count <= 40:
            raise ValueError("between 1 and 40 hosts")
        self.count = count
        self.workdir = workdir or STATE_DIR
        self.hosts: list[LabHost] = []
        self.key_file = self.workdir / "id_ed25519"
        self.users_dir: Path | None = None  # the hosts' /etc copies with the non-root users

    # -- setup -----------------------------------------------------------------------------

    def start(self) -> HostLab:
        cleanup_stale()
        self.workdir.mkdir(parents=True, exist_ok=True)
        try:
            self._keys()
            self._users()
            _run("ip", "link", "add", BRIDGE, "type", "bridge")
            _run("ip", "addr", "add", f"{GATEWAY}/24", "dev", BRIDGE)
            _run("ip", "link", "set", BRIDGE, "up")
            for i in range(1, self.count + 1):
                self.hosts.append(self._host(i))
            self._wait_ssh(deadline_s=20)
        except BaseException:
            self.close()
            raise
        return self

    def _keys(self) -> None:
        for name in ("id_ed25519", "ssh_host_ed25519_key"):
            key = self.workdir / name
            if not key.exists():
                _run(
                    "ssh-keygen",
                    "-q",
                    "-t",
                    "ed25519",
                    "-N",
                    "",
                    "-C",
                    "provision-e2e",
                    "-f",
                    str(key),
                )
        (self.workdir / "authorized_keys").write_text((self.workdir / "id_ed25519.pub").read_text())
        os.chmod(self.workdir / "authorized_keys", 0o600)
        Path("/run/sshd").mkdir(parents=True, exist_ok=True)

    def _users(self) -> None:
        """/etc files for the hosts' own users (bind-mounted in each host's mount namespace):
        SUDO_USER may run anything with `sudo -n` (no password), NO_SUDO_USER may not. Only
        where sudo is installed."""
        if shutil.which("sudo") is None or not Path("/etc/sudoers.d").is_dir():
            return
        d = self.workdir / "etc"
        (d / "sudoers.d").mkdir(parents=True, exist_ok=True)
        for name, extra in (
            ("passwd", [f"{u}:x:{n}:{n}:provision e2e:/home/{u}:/bin/sh" for u, n in _USERS]),
            ("group", [f"{u}:x:{n}:" for u, n in _USERS]),
            ("shadow", [f"{u}:*:19000:0:99999:7:::" for u, _ in _USERS]),
        ):
            base = Path("/etc", name).read_text()
            (d / name).write_text(base.rstrip("\n") + "\n" + "\n".join(extra) + "\n")
            shutil.copystat(Path("/etc", name), d / name)
            st = Path("/etc", name).stat()
            os.chown(d / name, st.st_uid, st.st_gid)
        rule = d / "sudoers.d" / "provision-e2e"
        rule.write_text(f"{SUDO_USER} ALL=(ALL) NOPASSWD: ALL\n")
        os.chmod(rule, 0o440)
        self.users_dir = d

    def _host(self, i: int) -> LabHost:
        ns, veth, peer = f"{PREFIX}-h{i}", f"{PREFIX}v{i}", f"{PREFIX}p{i}"
        addr = f"{SUBNET}.{10 + i}"
        _run("ip", "netns", "add", ns)
        _run("ip", "link", "add", veth, "type", "veth", "peer", "name", peer)
        _run("ip", "link", "set", peer, "netns", ns)
        _run("ip", "link", "set", veth, "master", BRIDGE)
        _run("ip", "link", "set", veth, "up")
        nse = ("ip", "netns", "exec", ns)
        _run(*nse, "ip", "link", "set", peer, "name", "eth0")
        _run(*nse, "ip", "addr", "add", f"{addr}/24", "dev", "eth0")
        _run(*nse, "ip", "link", "set", "eth0", "up")
        _run(*nse, "ip", "link", "set", "lo", "up")
        cfg = self.workdir / f"sshd_config.{i}"
        cfg.write_text(
            "\n".join(
                [
                    "Port 22",
                    f"ListenAddress {addr}",
                    f"HostKey {self.workdir / 'ssh_host_ed25519_key'}",
                    "PidFile none",
                    f"AuthorizedKeysFile {self.workdir / 'authorized_keys'} .ssh/authorized_keys",
                    "PermitRootLogin prohibit-password",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "UsePAM no",
                    "StrictModes no",
                    "UseDNS no",
                    "MaxStartups 200",
                    "MaxSessions 200",
                    "Subsystem sftp internal-sftp",
                    "LogLevel ERROR",
                    "",
                ]
            )
        )
        # unshare without --fork execs: the Popen pid is sshd itself. Its private mount
        # namespace gets tmpfs /opt, /var/lib and /root; every SSH session (and every agent
        # started through one) lives in that namespace and that network namespace. A private
        # /root: a host does not share this machine's root home (its shell rc files ran pyenv
        # init in every SSH session, its PATH put pyenv's shims before the system python3).
        users = ""
        if self.users_dir is not None:  # the non-root users, and a home for each
            users = "".join(
                f"mount --bind {self.users_dir / n} /etc/{n} && "
                for n in ("passwd", "group", "shadow", "sudoers.d")
            )
            users += "mount -t tmpfs tmpfs /home && "
            for user, uid in _USERS:
                # sshd reads a user's keys as that user: its own copy, in its home
                users += (
                    f"mkdir -p /home/{user}/.ssh && "
                    f"cp {self.workdir / 'authorized_keys'} /home/{user}/.ssh/ && "
                    f"chown -R {uid}:{uid} /home/{user} && "
                )
        script = (
            "mount --make-rprivate / && mount -t tmpfs tmpfs /opt && "
            "mount -t tmpfs tmpfs /var/lib && mount -t tmpfs -o mode=0700 tmpfs /root && "
            f"{users}exec /usr/sbin/sshd -D -e -f {cfg}"
        )
        log = open(self.workdir / f"sshd.{i}.log", "wb")  # noqa: SIM115 - owned by the Popen
        sshd = subprocess.Popen(
            [*nse, "unshare", "--mount", "sh", "-c", script],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        return LabHost(i, ns, veth, addr, sshd)

    def _wait_ssh(self, deadline_s: float) -> None:
        deadline = time.monotonic() + deadline_s
        for h in self.hosts:
            while True:
                if h.sshd is not None and h.sshd.poll() is not None:
                    log = (self.workdir / f"sshd.{h.index}.log").read_text(errors="replace")
                    raise RuntimeError(f"sshd on {h.address} exited: {log.strip()[-500:]}")
                with (
                    contextlib.suppress(OSError),
                    socket.create_connection((h.address, 22), 0.5) as s,
                ):
                    if s.recv(4).startswith(b"SSH"):
                        break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"sshd on {h.address} did not answer within {deadline_s}s")
                time.sleep(0.05)

    # -- use -------------------------------------------------------------------------------

    @property
    def addresses(self) -> list[str]:
        return [h.address for h in self.hosts]

    def partition(self, address: str) -> None:
        """Cut the host's link to the bridge (its processes keep running)."""
        _run("ip", "link", "set", self._by_addr(address).veth, "down")

    def heal(self, address: str) -> None:
        _run("ip", "link", "set", self._by_addr(address).veth, "up")

    def pids(self, address: str) -> list[int]:
        """Processes in the host's network namespace other than its sshd listener."""
        h = self._by_addr(address)
        out = _run("ip", "netns", "pids", h.netns, check=False).stdout.split()
        return [int(p) for p in out if h.sshd is None or int(p) != h.sshd.pid]

    def _by_addr(self, address: str) -> LabHost:
        for h in self.hosts:
            if h.address == address:
                return h
        raise KeyError(address)

    # -- teardown --------------------------------------------------------------------------

    def close(self) -> None:
        for h in self.hosts:
            _kill_netns_pids(h.netns)
            if h.sshd is not None and h.sshd.poll() is None:
                h.sshd.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    h.sshd.wait(5)
        self.hosts = []
        cleanup_stale()


def _kill_netns_pids(ns: str) -> None:
    """Kill, by PID, every process in one of the lab's namespaces (we started all of them)."""
    for _ in range(20):
        out = _run("ip", "netns", "pids", ns, check=False).stdout.split()
        if not out:
            return
        for p in out:
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(p), signal.SIGKILL)
        time.sleep(0.05)


def cleanup_stale() -> None:
    """Remove the lab's namespaces, veths and bridge, whatever run left them."""
    listing = _run("ip", "netns", "list", check=False).stdout.split("\n")
    for line in listing:
        name = line.split(" ")[0].strip()
        if name.startswith(f"{PREFIX}-h"):
            _kill_netns_pids(name)
            _run("ip", "netns", "del", name, check=False)
    links = _run("ip", "-o", "link", "show", check=False).stdout.splitlines()
    for line in links:
        parts = line.split(": ")
        if len(parts) > 1:
            name = parts[1].split("@")[0]
            if name.startswith(f"{PREFIX}v") or name == BRIDGE:
                _run("ip", "link", "del", name, check=False)


def write_inventory(
    path: Path, lab: HostLab, layout: dict[str, tuple[int, int]], secure: bool = False
) -> Path:
    """Inventory for the lab's hosts: `layout` maps datacenter -> (servers, clients), filled
    from the lab's addresses in order. Nodes are named s1.. / c1.. (dc1), t1.. / d1.. (dc2).
    `secure`: locked down as inventories/prod.yml is (tls: generate, acl: bootstrap, encrypt:
    generate)."""
    addrs = iter(lab.addresses)
    names = {"dc1": ("s", "c"), "dc2": ("t", "d")}
    lines = [
        "defaults:",
        f"  ssh: {{user: root, key_file: {lab.key_file}, connect_timeout: 5}}",
        "  install_dir: /opt/senate",
        "  data_dir: /var/lib/senate",
        "  step_timeout: 60",
    ]
    if secure:
        lines += ["  tls: generate", "  acl: bootstrap", "  agent: {encrypt: generate}"]
    lines.append("datacenters:")
    for dc, (n_servers, n_clients) in layout.items():
        sp, cp = names[dc]
        lines.append(f"  {dc}:")
        for role, prefix, count in (("servers", sp, n_servers), ("clients", cp, n_clients)):
            if not count:
                continue
            lines.append(f"    {role}:")
            for i in range(1, count + 1):
                a = next(addrs)
                # client_addr on the host's own address: the tests reach HTTP from outside
                lines.append(
                    f"      - {{name: {prefix}{i}, host: {a}, agent: {{client_addr: {a}}}}}"
                )
    path.write_text("\n".join(lines) + "\n")
    return path


def main(argv: list[str]) -> int:
    if len(argv) >= 1 and argv[0] == "down":
        cleanup_stale()
        return 0
    if len(argv) == 2 and argv[0] == "up":
        reason = unavailable_reason()
        if reason:
            print(f"cannot set up hosts: {reason}", file=sys.stderr)
            return 1
        lab = HostLab(int(argv[1])).start()
        for h in lab.hosts:
            if h.sshd is not None:
                h.sshd = None  # keep running after we exit; `down` removes them
        print(f"ssh key: {lab.key_file}")
        for a in lab.addresses:
            print(a)
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
