"""`senate services register|deregister` against the real HTTP app and LocalRegistry of
tests/agent_double.py: from flags, and from HCL and JSON service definition files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from agent_double import Served

from agent.cli import dispatch
from agent.cli.services import api_service, services_in

pytestmark = pytest.mark.timeout(60)

WEB_HCL = """
service {
  name = "web"
  id   = "web-1"
  port = 8080
  tags = ["v1"]
  meta { team = "edge" }
  check {
    id       = "web-tcp"
    tcp      = "127.0.0.1:1"
    interval = "10s"
  }
}
"""

DB_JSON = {
    "services": [
        {"name": "db", "port": 5432, "tags": ["primary"], "enable_tag_override": True},
        {"name": "cache", "address": "10.0.0.5"},
    ]
}


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = dispatch(list(argv))
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def local(served: Served) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in served.agent.local_services().items() if k != "consul"}


def test_register_and_deregister_from_flags(
    served: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    h = f"-http-addr={served.http_addr}"
    argv = ["services", "register", h, "-name=api", "-id=api-1", "-address=10.0.0.9"]
    argv += ["-port", "9090", "-tag=a", "-tag", "b", "-meta", "k=v", "-meta=x=y=z"]
    assert run(capsys, *argv) == (0, "Registered service: api\n", "")
    svc = local(served)["api-1"]
    assert (svc["Service"], svc["Address"], svc["Port"], svc["Tags"]) == (
        "api",
        "10.0.0.9",
        9090,
        ["a", "b"],
    )
    assert svc["Meta"] == {"k": "v", "x": "y=z"}
    assert run(capsys, "services", "deregister", h, "-id=api-1") == (
        0,
        "Deregistered service: api-1\n",
        "",
    )
    assert local(served) == {}
    rc, _, err = run(capsys, "services", "deregister", h, "-id=api-1")
    assert rc == 1
    assert err.startswith('Error registering service "": Unexpected response code: 404')


def test_register_and_deregister_from_files(
    served: Served, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    h = f"-http-addr={served.http_addr}"
    web = tmp_path / "web.hcl"
    web.write_text(WEB_HCL)
    db = tmp_path / "db.json"
    db.write_text(json.dumps(DB_JSON))
    rc, out, err = run(
        capsys, "services", "register", h, "-tag=extra", "-meta=by=cli", str(web), str(db)
    )
    assert (rc, err) == (0, "")
    assert out == "Registered service: web\nRegistered service: db\nRegistered service: cache\n"
    services = local(served)
    assert set(services) == {"web-1", "db", "cache"}
    assert services["web-1"]["Tags"] == ["v1", "extra"]  # the flags' tags appended
    assert services["web-1"]["Meta"] == {"team": "edge", "by": "cli"}
    assert services["web-1"]["Port"] == 8080
    assert services["db"]["EnableTagOverride"] is True
    assert services["cache"]["Address"] == "10.0.0.5"
    assert "web-tcp" in served.agent.local_checks()
    rc, out, err = run(capsys, "services", "deregister", h, str(web), str(db))
    assert (rc, err) == (0, "")
    assert out == (
        "Deregistered service: web-1\nDeregistered service: db\nDeregistered service: cache\n"
    )
    assert local(served) == {}


def test_a_directory_of_definitions(
    served: Served, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "a.json").write_text('{"service": {"name": "alpha"}}')
    (tmp_path / "b.hcl").write_text('service { name = "beta" }\nservice { name = "gamma" }')
    (tmp_path / "notes.txt").write_text("not config")
    rc, out, _ = run(
        capsys, "services", "register", f"-http-addr={served.http_addr}", str(tmp_path)
    )
    assert rc == 0
    assert out == "Registered service: alpha\nRegistered service: beta\nRegistered service: gamma\n"


def test_argument_checks(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    h = "-http-addr=127.0.0.1:1"  # never reached
    assert run(capsys, "services", "register", h) == (
        1,
        "",
        "Service registration requires at least one argument or flags.\n",
    )
    assert run(capsys, "services", "register", h, "-name=x", "f.json") == (
        1,
        "",
        "Service registration requires arguments or -id, not both.\n",
    )
    assert run(capsys, "services", "deregister", h) == (
        1,
        "",
        "Service deregistration requires at least one argument or -id.\n",
    )
    assert run(capsys, "services", "deregister", h, "-id=x", "f.json") == (
        1,
        "",
        "Service deregistration requires arguments or -id, not both.\n",
    )
    missing = tmp_path / "missing.json"
    assert run(capsys, "services", "register", h, str(missing)) == (
        1,
        "",
        f"Error: config: Open failed on {missing}. open {missing}: no such file or directory\n",
    )
    bad = tmp_path / "bad.hcl"
    bad.write_text("service { name = ")
    rc, _, err = run(capsys, "services", "register", h, str(bad))
    assert rc == 1 and err.startswith(f"Error: Error decoding '{bad}': invalid HCL")
    assert len(err.splitlines()) == 1
    rc, _, err = run(capsys, "services", "register", h, "-meta=novalue", "-name=x")
    assert rc == 1
    assert err.splitlines()[0] == (
        'invalid value "novalue" for flag -meta: Missing "=" value in argument: novalue'
    )
    rc, _, err = run(capsys, "services")
    assert rc == 1 and "Subcommands:" in err


def test_definitions_in_api_form() -> None:
    doc = {
        "service": {
            "name": "web",
            "enable_tag_override": True,
            "token": "not-sent",
            "tagged_addresses": {"lan": {"address": "10.0.0.1", "port": 80}},
            "meta": {"some_key": "v"},
            "checks": [
                {
                    "args": ["/bin/check"],
                    "interval": "5s",
                    "deregister_critical_service_after": "1m",
                    "header": {"x-a": ["1"]},
                }
            ],
            "weights": {"passing": 3, "warning": 1},
        }
    }
    assert services_in(doc, "f.json") == [
        {
            "Name": "web",
            "EnableTagOverride": True,
            "TaggedAddresses": {"lan": {"Address": "10.0.0.1", "Port": 80}},
            "Meta": {"some_key": "v"},
            "Checks": [
                {
                    "Args": ["/bin/check"],
                    "Interval": "5s",
                    "DeregisterCriticalServiceAfter": "1m",
                    "Header": {"x-a": ["1"]},
                }
            ],
            "Weights": {"Passing": 3, "Warning": 1},
        }
    ]
    assert api_service({"ID": "x", "Check": {"TTL": "5s", "CheckID": "c"}}, "f") == {
        "ID": "x",
        "Check": {"TTL": "5s", "CheckID": "c"},
    }
