"""Preflight probe, run by the host's python3 before anything of senate is there: prints, as
one JSON object, what provision needs to plan this host (its Python, the releases installed and
which is current, the files provision wrote, whether the agent runs, which of the agent's ports
are taken, the disk free under the install directory).

    python3 -c <this file> INSTALL_DIR DATA_DIR BIND_ADDR PORTS_JSON [FILES_JSON]

PORTS_JSON is a list of [proto, port] ("tcp" or "udp"); FILES_JSON a list of paths whose
SHA-256 (or null, when missing) is reported as `digests` (the TLS files: a key is not read back
to the controller). Standard library only.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys

UNIT = "/etc/systemd/system/senate.service"


def read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def link(install: str, name: str) -> str | None:
    """The release the symlink <install>/<name> points at (current, previous), or None."""
    p = os.path.join(install, name)
    return os.path.basename(os.readlink(p)) if os.path.islink(p) else None


def installed_releases(install: str) -> list[str]:
    """The releases whose install completed (they have `.installed`), sorted."""
    rel_dir = os.path.join(install, "releases")
    if not os.path.isdir(rel_dir):
        return []
    return sorted(
        r for r in os.listdir(rel_dir) if os.path.exists(os.path.join(rel_dir, r, ".installed"))
    )


def busy_ports(bind: str, ports: list[tuple[str, int]]) -> list[list[object]]:
    """[proto, port, why] for each port of `ports` that cannot be bound on `bind`."""
    busy: list[list[object]] = []
    for proto, port in ports:
        kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
        s = socket.socket(socket.AF_INET, kind)
        try:
            if proto == "tcp":  # as the agent's listeners do: TIME_WAIT from a crash is no conflict
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((bind, port))
        except OSError as e:
            busy.append([proto, port, os.strerror(e.errno) if e.errno else str(e)])
        finally:
            s.close()
    return busy


def digest(path: str) -> str | None:
    try:
        with open(path, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()
    except OSError:
        return None


def disk_free(path: str) -> int:
    """Bytes free on the filesystem `path` is (or, not made yet, would be) on."""
    while not os.path.isdir(path):
        path = os.path.dirname(path)
    return shutil.disk_usage(path).free


def main(argv: list[str]) -> int:
    install, bind, ports = argv[0], argv[2], json.loads(argv[3])  # argv[1]: the data dir
    ctl = os.path.join(install, "bin", "senatectl")
    running = False
    if os.path.exists(ctl):
        running = subprocess.run([ctl, "status"], capture_output=True).returncode == 0
    state = {
        "python": list(sys.version_info[:3]),
        "executable": os.path.realpath(sys.executable),
        "current": link(install, "current"),
        "previous": link(install, "previous"),
        "releases": installed_releases(install),
        "config": read(os.path.join(install, "etc", "senate.json")),
        "control": read(ctl),
        "unit": read(UNIT),
        "systemd": os.path.isdir("/run/systemd/system"),
        "running": running,
        "ports_busy": busy_ports(bind, [(proto, port) for proto, port in ports]),
        "disk_free": disk_free(install),
        "digests": {p: digest(p) for p in (json.loads(argv[4]) if len(argv) > 4 else [])},
    }
    print(json.dumps(state))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
