"""Certificates made as an operator makes them, with senate's own `tls ca create` and
`tls cert create -server|-client -dc <dc>` (Consul's names, SANs and key usages), run in one
directory: a server certificate of dc1 names server.dc1.consul, localhost and 127.0.0.1."""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from pathlib import Path

from agent.cli.tls import run


@dataclass(frozen=True)
class CertPair:
    cert: Path
    key: Path


def _run(directory: Path, argv: list[str]) -> list[Path]:
    before = set(directory.iterdir())
    out = io.StringIO()
    with contextlib.chdir(directory), contextlib.redirect_stdout(out):
        code = run(argv)
    assert code == 0, out.getvalue()
    return sorted(set(directory.iterdir()) - before)


@dataclass(frozen=True)
class Pki:
    dir: Path
    ca: Path

    def cert(self, kind: str = "server", dc: str = "dc1") -> CertPair:
        """A new numbered certificate: `server`, `client` or `cli`, of datacenter `dc`."""
        made = _run(self.dir, ["cert", "create", f"-{kind}", "-dc", dc])
        cert = next(p for p in made if not p.name.endswith("-key.pem"))
        return CertPair(cert, cert.with_name(cert.name[: -len(".pem")] + "-key.pem"))


def make_pki(directory: Path) -> Pki:
    """A CA (consul-agent-ca.pem) in `directory`, made fresh."""
    directory.mkdir(parents=True, exist_ok=True)
    _run(directory, ["ca", "create"])
    return Pki(directory, directory / "consul-agent-ca.pem")
