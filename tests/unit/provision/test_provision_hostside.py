"""The host-side programs as programs: each is shipped as its module's own source, runs with
no more than it may import (the standard library; the readiness wait also `agent`), and the
probe and the HTTP request do what provision reads from them, their `main` run here directly."""

from __future__ import annotations

import ast
import hashlib
import http.server
import json
import os
import shlex
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from provision import hostside, remote
from provision.hostside import acl_setup, http_request, install, probe, wait_agent, wait_leader
from provision.inventory import Node, load_inventory

PROGRAMS = [probe, install, wait_agent, wait_leader, http_request, acl_setup]
# What each may import besides the standard library: probe and install run with the host's
# python3 before the release's venv exists; the others with the release's python.
EXTRA_IMPORTS: dict[ModuleType, set[str]] = {wait_agent: {"agent.client"}}


@pytest.mark.parametrize("program", PROGRAMS, ids=lambda m: m.__name__.rsplit(".", 1)[1])
def test_each_program_is_shipped_as_its_own_file(program: ModuleType) -> None:
    assert program.__file__ is not None
    assert hostside.source(program) == Path(program.__file__).read_text()
    tree = ast.parse(hostside.source(program))
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module} - {
        "__future__"
    }
    foreign = {m for m in imported if m.split(".")[0] not in sys.stdlib_module_names}
    assert foreign == EXTRA_IMPORTS.get(program, set())
    # a program: main(argv) run when the source is run as `python -c`
    assert any(isinstance(n, ast.FunctionDef) and n.name == "main" for n in tree.body)
    assert ast.unparse(tree.body[-1]) == (
        "if __name__ == '__main__':\n    sys.exit(main(sys.argv[1:]))"
    )


def test_source_is_only_for_host_side_programs() -> None:
    with pytest.raises(ValueError):
        hostside.source(remote)


@pytest.fixture
def node(tmp_path: Path) -> Node:
    inv = tmp_path / "inv.yml"
    inv.write_text(
        f"defaults: {{connection: local, install_dir: '{tmp_path}/opt/{{name}}',"
        f" data_dir: '{tmp_path}/data/{{name}}'}}\n"
        "datacenters:\n  dc1:\n    servers: [{name: n1, host: 127.0.0.64}]\n"
    )
    return load_inventory(inv).nodes[0]


def test_the_commands_run_the_programs_source_with_their_arguments(node: Node) -> None:
    py = f"{node.install_dir}/current/bin/python"
    assert shlex.split(remote.wait_cmd(node, 60)) == [
        py,
        "-I",
        "-c",
        hostside.source(wait_agent),
        node.install_dir,
        node.rpc_addr,
        "60",
        str(remote.WAIT_EXITED),
        str(remote.WAIT_TIMEOUT),
    ]
    ports = json.dumps(remote.agent_ports(node))
    assert shlex.split(remote.probe_cmd(node)) == [
        "python3",
        "-c",
        hostside.source(probe),
        node.install_dir,
        node.data_dir,
        node.bind_addr,
        ports,
    ]


def test_probe_runs_with_only_the_standard_library(node: Node, tmp_path: Path) -> None:
    """The host's python3 as it is (no venv, no senate): -I, from a directory of its own."""
    base_python = getattr(sys, "_base_executable", sys.executable)
    out = subprocess.run(
        [
            base_python,
            "-I",
            "-c",
            hostside.source(probe),
            str(tmp_path / "none"),
            "-",
            "127.0.0.64",
            "[]",
        ],
        capture_output=True,
        text=True,
        timeout=20,
        cwd="/",
        check=True,
    ).stdout
    assert json.loads(out)["python"] == list(sys.version_info[:3])


# -- probe ------------------------------------------------------------------------------------


def run_probe(
    capsys: pytest.CaptureFixture[str], install: Path, ports: object
) -> dict[str, object]:
    assert probe.main([str(install), "/data", "127.0.0.64", json.dumps(ports)]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    state: dict[str, object] = json.loads(out)
    return state


def test_probe_of_a_fresh_host(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    state = run_probe(capsys, tmp_path / "not" / "made" / "yet", [])
    assert list(state) == [
        "python",
        "executable",
        "current",
        "previous",
        "releases",
        "config",
        "control",
        "unit",
        "systemd",
        "running",
        "ports_busy",
        "disk_free",
        "digests",
    ]
    assert state["digests"] == {}
    assert state["python"] == list(sys.version_info[:3])
    assert state["executable"] == os.path.realpath(sys.executable)
    fresh = {k: state[k] for k in ("current", "previous", "releases", "config", "control")}
    assert fresh == {
        "current": None,
        "previous": None,
        "releases": [],
        "config": None,
        "control": None,
    }
    assert (state["running"], state["ports_busy"]) == (False, [])
    # measured where the install dir would be made
    assert isinstance(state["disk_free"], int) and state["disk_free"] > 0
    assert isinstance(state["systemd"], bool)


def test_probe_of_an_installed_host(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    install = tmp_path / "opt"
    for rel in ("0.1-a", "0.2-b", "0.3-c"):
        (install / "releases" / rel).mkdir(parents=True)
    for rel in ("0.1-a", "0.2-b"):
        (install / "releases" / rel / ".installed").touch()  # 0.3-c's install did not finish
    (install / "current").symlink_to("releases/0.2-b")
    (install / "previous").symlink_to("releases/0.1-a")
    (install / "etc").mkdir()
    (install / "etc" / "senate.json").write_text('{"server": true}\n')
    (install / "bin").mkdir()
    ctl = install / "bin" / "senatectl"
    ctl.write_text('#!/bin/sh\n[ "$1" = status ]\n')
    ctl.chmod(0o755)
    (install / "tls").mkdir()
    (install / "tls" / "agent.pem").write_text("cert\n")
    assert (
        probe.main(
            [
                str(install),
                "/data",
                "127.0.0.64",
                "[]",
                json.dumps([f"{install}/tls/agent.pem", "/no"]),
            ]
        )
        == 0
    )
    digests = json.loads(capsys.readouterr().out)["digests"]
    # TLS files come back as their SHA-256 (a key is never read back), missing ones as null
    assert digests == {
        f"{install}/tls/agent.pem": hashlib.sha256(b"cert\n").hexdigest(),
        "/no": None,
    }
    state = run_probe(capsys, install, [])
    assert state["releases"] == ["0.1-a", "0.2-b"]
    assert (state["current"], state["previous"]) == ("0.2-b", "0.1-a")
    assert state["config"] == '{"server": true}\n'
    assert state["control"] == ctl.read_text() and state["running"] is True
    ctl.write_text("#!/bin/sh\nexit 3\n")
    assert run_probe(capsys, install, [])["running"] is False


def time_wait_port() -> int:
    """A port with a connection in TIME_WAIT on it (as a crashed agent leaves its listeners')
    and no socket bound: a plain bind fails, one with SO_REUSEADDR (the agent's) does not."""
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the agent's listeners
    srv.bind(("127.0.0.64", 0))
    srv.listen()
    port = int(srv.getsockname()[1])
    cli = socket.create_connection(("127.0.0.64", port))
    conn, _ = srv.accept()
    conn.close()  # the listener's side closes first: it is the one left in TIME_WAIT
    cli.close()
    srv.close()
    plain = socket.socket()
    try:
        with pytest.raises(OSError):
            plain.bind(("127.0.0.64", port))
    finally:
        plain.close()
    return port


def test_probe_names_the_ports_taken(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    tcp = socket.socket()
    tcp.bind(("127.0.0.64", 0))
    tcp.listen()
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.64", 0))
    taken_tcp, taken_udp = tcp.getsockname()[1], udp.getsockname()[1]
    try:
        ports = [["tcp", taken_tcp], ["udp", taken_udp], ["tcp", time_wait_port()]]
        state = run_probe(capsys, tmp_path, ports)
    finally:
        tcp.close()
        udp.close()
    assert state["ports_busy"] == [
        ["tcp", taken_tcp, "Address already in use"],
        ["udp", taken_udp, "Address already in use"],
    ]


# -- http_request -----------------------------------------------------------------------------


class API:
    """Answers GET /ok with 200 and POST /missing with 404; records each request."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, str | None]] = []
        api = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self) -> None:
                api.requests.append((self.command, self.path, self.headers["Content-Length"]))
                status, body = (200, "true ✓") if self.path == "/ok" else (404, "no such thing")
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = _answer

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.64", 0), Handler)
        self.base = f"http://127.0.0.64:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def api() -> Iterator[API]:
    server = API()
    try:
        yield server
    finally:
        server.close()


def request(capsys: pytest.CaptureFixture[str], method: str, url: str) -> dict[str, object]:
    assert http_request.main([method, url, "5"]) == 0
    answer: dict[str, object] = json.loads(capsys.readouterr().out)
    return answer


def test_http_request_prints_the_status_and_body(
    api: API, capsys: pytest.CaptureFixture[str]
) -> None:
    assert request(capsys, "GET", f"{api.base}/ok") == {"status": 200, "body": "true ✓"}
    assert request(capsys, "POST", f"{api.base}/missing") == {
        "status": 404,
        "body": "no such thing",
    }
    # GET sends no body; anything else an empty one
    assert api.requests == [("GET", "/ok", None), ("POST", "/missing", "0")]


def test_http_request_says_when_the_agent_does_not_answer(
    capsys: pytest.CaptureFixture[str],
) -> None:
    s = socket.socket()
    s.bind(("127.0.0.64", 0))
    port = s.getsockname()[1]
    s.close()
    answer = request(capsys, "GET", f"http://127.0.0.64:{port}/v1/status/leader")
    assert answer == {"error": "<urlopen error [Errno 111] Connection refused>"}
