"""Inventory validation: each broken inventory gives its exact error, named by YAML path."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from provision.inventory import InventoryError, gossip_key_path, load_inventory

GOOD = """
defaults:
  ssh: {user: deploy, key_file: /keys/id}
  agent: {log_level: DEBUG}
datacenters:
  dc1:
    servers:
      - {name: s1, host: 10.0.0.1}
      - {name: s2, host: 10.0.0.2}
      - {name: s3, host: 10.0.0.3, ssh: {port: 2222}}
    clients:
      - {host: 10.0.0.9, agent: {node_meta: {rack: r1}}}
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "inv.yml"
    p.write_text(text)
    return p


def errors_of(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(InventoryError) as info:
        load_inventory(write(tmp_path, text))
    return info.value.errors


def test_good_inventory_resolves_overrides(tmp_path: Path) -> None:
    inv = load_inventory(write(tmp_path, GOOD))
    assert [n.name for n in inv.nodes] == ["s1", "s2", "s3", "10-0-0-9"]
    s3 = inv.node("s3")
    assert (s3.ssh.user, s3.ssh.port, s3.ssh.key_file) == ("deploy", 2222, "/keys/id")
    assert inv.node("s1").ssh.port == 22
    client = inv.node("10-0-0-9")
    assert client.role == "client" and client.agent == {
        "log_level": "DEBUG",
        "node_meta": {"rack": "r1"},
    }
    assert inv.warnings == ()
    assert [n.name for n in inv.servers("dc1")] == ["s1", "s2", "s3"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            """
datacenters:
  dc1:
    servers:
      - {host: 10.0.0.3}
      - {host: 10.0.0.4, name: b}
      - {host: 10.0.0.3, name: c}
""",
            [
                "datacenters.dc1.servers[2].host: duplicate address 10.0.0.3, "
                "also at datacenters.dc1.servers[0]"
            ],
        ),
        (
            """
datacenters:
  dc1:
    servers:
      - {host: 10.0.0.1, hots: x}
""",
            [
                "datacenters.dc1.servers[0].hots: unknown key (expected one of: host, name, "
                "bind_addr, connection, ssh, install_dir, data_dir, service, agent)"
            ],
        ),
        (
            """
datacenters:
  dc1:
    servers:
      - {name: a}
""",
            ["datacenters.dc1.servers[0].host: required key missing"],
        ),
        (
            """
defaults:
  ssh: {port: 70000}
datacenters:
  dc1:
    servers: [{host: 10.0.0.1}]
""",
            ["defaults.ssh.port: port 70000 out of range 1-65535"],
        ),
        (
            """
defaults:
  connection: telnet
datacenters:
  dc1:
    servers: [{host: 10.0.0.1}]
""",
            ["defaults.connection: must be one of 'ssh' or 'local', got 'telnet'"],
        ),
        (
            """
datacenters:
  dc1:
    servers: []
""",
            ["datacenters.dc1.servers: a datacenter needs at least one server"],
        ),
        (
            """
datacenters:
  DC_1:
    servers: [{host: 10.0.0.1}]
""",
            ["datacenters.DC_1: invalid datacenter name (lower-case letters, digits, - and _)"],
        ),
        (
            """
datacenters:
  dc1:
    agent: {bootstrap_expect: 5}
    servers: [{host: 10.0.0.1}]
""",
            [
                "datacenters.dc1.agent.bootstrap_expect: set by provision "
                "(provision sets it to the number of servers in the datacenter)"
            ],
        ),
        (
            """
datacenters:
  dc1:
    servers: [{host: 10.0.0.1, agent: {log_levle: DEBUG}}]
""",
            ["datacenters.dc1.servers[0].agent.log_levle: unknown agent setting"],
        ),
        (
            """
datacenters:
  dc1:
    servers: [{host: "10.0.0.1 x"}]
""",
            ["datacenters.dc1.servers[0].host: not an IP address or host name: '10.0.0.1 x'"],
        ),
        (
            """
datacenters:
  dc1:
    servers: [{host: 10.0.0.1, name: a}, {host: 10.0.0.2, name: a}]
""",
            [
                "datacenters.dc1.servers[1].name: duplicate node name a, also at datacenters.dc1.servers[0]"
            ],
        ),
        (
            """
defaults: {connection: local}
datacenters:
  dc1:
    servers: [{host: 10.0.0.1}]
""",
            [
                "datacenters.dc1.servers[0].host: a local node needs a loopback address (127.0.0.x), got 10.0.0.1"
            ],
        ),
        (
            """
datacenters:
  dc1:
    servers: [{host: 10.0.0.1}]
extra: 1
""",
            ["extra: unknown key (expected one of: defaults, datacenters)"],
        ),
        (
            "datacenters: [\n",
            None,  # YAML syntax error: checked below
        ),
    ],
)
def test_broken_inventories(tmp_path: Path, text: str, expected: list[str] | None) -> None:
    errors = errors_of(tmp_path, text)
    if expected is None:
        assert len(errors) == 1 and "YAML syntax error" in errors[0] and "inv.yml:2:1" in errors[0]
    else:
        assert errors == expected


def test_every_error_is_reported_at_once(tmp_path: Path) -> None:
    errors = errors_of(
        tmp_path,
        """
datacenters:
  dc1:
    servers:
      - {host: 10.0.0.1, port: 1}
      - {host: 10.0.0.1}
""",
    )
    assert len(errors) == 1  # schema errors stop before cross-field checks
    assert errors[0].startswith("datacenters.dc1.servers[0].port: unknown key")


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(InventoryError) as info:
        load_inventory(tmp_path / "nope.yml")
    assert info.value.errors == ["cannot read inventory: No such file or directory"]


@pytest.mark.parametrize(("count", "reason"), [(4, "even number"), (9, "more than 7")])
def test_server_count_warnings(tmp_path: Path, count: int, reason: str) -> None:
    servers = "\n".join(f"      - {{host: 10.0.0.{i + 1}}}" for i in range(count))
    inv = load_inventory(write(tmp_path, f"datacenters:\n  dc1:\n    servers:\n{servers}\n"))
    assert len(inv.warnings) >= 1
    w = next(w for w in inv.warnings if reason in w)
    assert w.startswith(f"datacenters.dc1.servers: {count} servers is ")
    assert "quorum" in w  # the reason is given, not just the rule


def test_odd_server_counts_do_not_warn(tmp_path: Path) -> None:
    for count in (1, 3, 5, 7):
        servers = "\n".join(f"      - {{host: 10.0.0.{i + 1}}}" for i in range(count))
        inv = load_inventory(write(tmp_path, f"datacenters:\n  dc1:\n    servers:\n{servers}\n"))
        assert inv.warnings == ()


def test_encrypt_generate_keeps_one_key_beside_the_inventory(tmp_path: Path) -> None:
    text = "defaults: {agent: {encrypt: generate}}\ndatacenters:\n  dc1:\n    servers: [{host: 10.0.0.1}, {host: 10.0.0.2}, {host: 10.0.0.3}]\n"
    p = write(tmp_path, text)
    inv = load_inventory(p)
    key_file = gossip_key_path(p)
    assert key_file == tmp_path / "inv.gossip-key"
    key = key_file.read_text().strip()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert {n.agent["encrypt"] for n in inv.nodes} == {key}
    assert len(key) == 24  # base64 of 16 bytes, as `consul keygen`
    assert load_inventory(p).nodes[0].agent["encrypt"] == key  # the same key next time


def test_local_nodes_get_own_addresses_and_dirs(tmp_path: Path) -> None:
    repo_local = Path(__file__).resolve().parents[3] / "inventories" / "local.yml"
    copy = tmp_path / "local.yml"  # its secrets are made beside it: not in the repository
    copy.write_text(repo_local.read_text())
    inv = load_inventory(copy)
    assert all(n.tls and n.acl for n in inv.nodes) and inv.nodes[0].agent["encrypt"]
    assert [n.bind_addr for n in inv.nodes] == [f"127.0.0.{i}" for i in range(11, 16)]
    assert len({n.install_dir for n in inv.nodes}) == 5
    assert len({n.data_dir for n in inv.nodes}) == 5
    assert all(n.connection == "local" and n.client_addr == n.bind_addr for n in inv.nodes)
    assert [n.role for n in inv.nodes] == ["server"] * 3 + ["client"] * 2


def test_prod_example_is_valid(tmp_path: Path) -> None:
    repo_prod = Path(__file__).resolve().parents[3] / "inventories" / "prod.yml"
    copy = tmp_path / "prod.yml"
    copy.write_text(repo_prod.read_text())
    inv = load_inventory(copy)
    assert inv.datacenters == ["fra1", "ams1"]
    assert all(len(inv.servers(dc)) == 3 and inv.clients(dc) for dc in inv.datacenters)
    assert inv.node("ams1-srv1").ssh.jump_host == "deploy@bastion-ams.example.net:22"
    assert inv.warnings == ()
    # locked down: gossip encryption, TLS and ACLs, the secrets beside the copy
    assert all(n.tls and n.acl and n.agent["encrypt"] for n in inv.nodes)
    assert inv.secrets is not None and inv.secrets.primary_datacenter == "fra1"
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "prod.agent-tokens",
        "prod.gossip-key",
        "prod.tls",
        "prod.yml",
    ]
