"""`tls: generate` and `acl: bootstrap`: the inventory keys, the secrets made beside the inventory
(and their modes), what they add to each node's config and files, that loading again changes
nothing, and how provision's own commands carry tokens (on stdin, in no argv) and speak HTTPS."""

from __future__ import annotations

import base64
import datetime
import json
import shlex
import stat
from pathlib import Path

import pytest
from cryptography import x509

from agent.cli.tls_generate import parse_signer, verify
from provision import acl, remote, secure
from provision.hosts import Result
from provision.inventory import Inventory, InventoryError, Node, load_inventory
from provision.plan import Action, plan_node
from provision.remote import HostState
from provision.render import render_node

SECURE = """
defaults:
  install_dir: /opt/senate
  tls: generate
  acl: bootstrap
  agent: {encrypt: generate}
datacenters:
  dc1:
    servers:
      - {name: s1, host: 10.0.0.1}
      - {name: s2, host: 10.0.0.2}
      - {name: s3, host: 10.0.0.3, agent: {client_addr: 10.0.0.3}}
    clients:
      - {name: c1, host: 10.0.0.9}
  dc2:
    servers:
      - {name: t1, host: 10.0.1.1}
"""


def write(tmp_path: Path, text: str = SECURE, name: str = "inv.yml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def errors_of(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(InventoryError) as info:
        load_inventory(write(tmp_path, text))
    return info.value.errors


# -- the inventory keys -----------------------------------------------------------------------


def test_defaults_turn_tls_and_acl_on_for_every_node(tmp_path: Path) -> None:
    inv = load_inventory(write(tmp_path))
    assert all(n.tls and n.acl for n in inv.nodes)
    assert {n.acl_token_file for n in inv.nodes} == {str(tmp_path / "inv.acl-token")}
    assert inv.node("s1").api_url == "https://127.0.0.1:8501"
    assert inv.node("s3").api_url == "https://10.0.0.3:8501"
    # the recovery token is the node's own, and not in its repr
    recovery = {n.recovery_token for n in inv.nodes}
    assert len(recovery) == 5 and all(recovery)
    assert inv.node("s1").recovery_token not in repr(inv.node("s1"))
    plain = load_inventory(write(tmp_path, "datacenters: {dc1: {servers: [{host: 10.0.0.1}]}}\n"))
    n = plain.nodes[0]
    assert (n.tls, n.acl, n.acl_token_file, n.api_url) == (False, False, None, n.api_url)
    assert n.api_url == "http://127.0.0.1:8500" and plain.secrets is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "defaults: {tls: yes}\ndatacenters: {dc1: {servers: [{host: 10.0.0.1}]}}\n",
            "defaults.tls: must be one of 'generate', got True",
        ),
        (
            "defaults: {acl: on}\ndatacenters: {dc1: {servers: [{host: 10.0.0.1}]}}\n",
            "defaults.acl: must be one of 'bootstrap', got True",
        ),
        (
            "datacenters: {dc1: {tls: generate, servers: [{host: 10.0.0.1}]}}\n",
            "datacenters.dc1.tls: tls is set for the whole inventory, under `defaults`: one CA "
            "and one ACL system (tokens resolved by the primary datacenter) serve every "
            "datacenter of a federation",
        ),
        (
            "defaults: {acl: bootstrap, agent: {acl_default_policy: allow}}\n"
            "datacenters: {dc1: {servers: [{host: 10.0.0.1}]}}\n",
            "defaults.agent.acl_default_policy: set by provision (`acl: bootstrap`)",
        ),
    ],
)
def test_bad_security_settings(tmp_path: Path, text: str, expected: str) -> None:
    assert expected in errors_of(tmp_path, text)


def test_legacy_acl_keys_stay_allowed_without_acl_bootstrap(tmp_path: Path) -> None:
    text = "defaults: {agent: {acl_default_policy: deny}}\ndatacenters: {dc1: {servers: [{host: 10.0.0.1}]}}\n"
    assert load_inventory(write(tmp_path, text)).nodes[0].agent["acl_default_policy"] == "deny"


# -- the secrets beside the inventory --------------------------------------------------------


def test_secrets_are_made_beside_the_inventory_with_private_modes(tmp_path: Path) -> None:
    inv = load_inventory(write(tmp_path))
    d = tmp_path / "inv.tls"
    assert mode(d) == 0o700
    names = sorted(p.name for p in d.iterdir())
    nodes = ["c1", "s1", "s2", "s3", "t1"]
    assert names == sorted(
        ["ca.pem", "ca-key.pem", "cli.pem", "cli-key.pem"]
        + [f"{n}.pem" for n in nodes]
        + [f"{n}-key.pem" for n in nodes]
    )
    for p in d.iterdir():
        assert mode(p) == (0o600 if p.name.endswith("-key.pem") else 0o644), p.name
    tokens = json.loads((tmp_path / "inv.agent-tokens").read_text())
    assert mode(tmp_path / "inv.agent-tokens") == 0o600
    assert sorted(tokens) == nodes
    assert {k for t in tokens.values() for k in t} == {"AccessorID", "SecretID", "Recovery"}
    assert inv.secrets is not None and inv.secrets.tokens["s1"].secret == tokens["s1"]["SecretID"]
    # the management token is made by `up` when it bootstraps, not by loading
    assert not (tmp_path / "inv.acl-token").exists()
    assert not list(tmp_path.glob(".*.tmp"))


def test_certificates_name_the_node_as_consul_does(tmp_path: Path) -> None:
    load_inventory(write(tmp_path))
    d = tmp_path / "inv.tls"
    ca = (d / "ca.pem").read_text()
    for node, cn, dns, ips in [
        (
            "s1",
            "server.dc1.consul",
            ["s1.server.dc1.consul", "server.dc1.consul", "localhost"],
            ["10.0.0.1", "127.0.0.1"],
        ),
        (
            "s3",
            "server.dc1.consul",
            ["s3.server.dc1.consul", "server.dc1.consul", "localhost"],
            ["10.0.0.3", "127.0.0.1"],
        ),
        ("c1", "client.dc1.consul", ["client.dc1.consul", "localhost"], ["10.0.0.9", "127.0.0.1"]),
        (
            "t1",
            "server.dc2.consul",
            ["t1.server.dc2.consul", "server.dc2.consul", "localhost"],
            ["10.0.1.1", "127.0.0.1"],
        ),
    ]:
        pem = (d / f"{node}.pem").read_text()
        verify(ca, pem, cn)  # verify_server_hostname's check: signed by the CA, for this name
        cert = x509.load_pem_x509_certificate(pem.encode())
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert sorted(map(str, san.get_values_for_type(x509.DNSName))) == sorted(dns)
        assert sorted(map(str, san.get_values_for_type(x509.IPAddress))) == sorted(ips)
        # the key is the certificate's
        key = parse_signer((d / f"{node}-key.pem").read_text())
        assert key.public_key() == cert.public_key()
    verify(ca, (d / "cli.pem").read_text(), "cli.dc1.consul")


def rendered_all(inv: Inventory) -> dict[str, list[tuple[str, str, int]]]:
    return {
        n.name: [(f.path, f.content, f.mode) for f in render_node(inv, n, "launcher").files]
        for n in inv.nodes
    }


def test_loading_again_changes_nothing(tmp_path: Path) -> None:
    path = write(tmp_path)
    first = rendered_all(load_inventory(path))
    before = {p.name: p.read_bytes() for p in (tmp_path / "inv.tls").iterdir()}
    assert rendered_all(load_inventory(path)) == first
    assert {p.name: p.read_bytes() for p in (tmp_path / "inv.tls").iterdir()} == before


def test_a_new_node_leaves_the_others_as_they_were(tmp_path: Path) -> None:
    path = write(tmp_path)
    first = rendered_all(load_inventory(path))
    write(
        tmp_path,
        SECURE.replace(
            "- {name: c1, host: 10.0.0.9}",
            "- {name: c1, host: 10.0.0.9}\n      - {name: c2, host: 10.0.0.10}",
        ),
    )
    second = rendered_all(load_inventory(path))
    assert set(second) == {*first, "c2"}
    # every other node's files are the same, bar nothing (retry_join lists servers only)
    assert {n: f for n, f in second.items() if n != "c2"} == first


def test_a_certificate_that_no_longer_fits_is_made_again(tmp_path: Path) -> None:
    path = write(tmp_path)
    load_inventory(path)
    d = tmp_path / "inv.tls"
    s1, s2 = (d / "s1.pem").read_text(), (d / "s2.pem").read_text()
    # s1 moves to another address: its certificate names the new one; s2's stays
    write(tmp_path, SECURE.replace("{name: s1, host: 10.0.0.1}", "{name: s1, host: 10.0.0.5}"))
    load_inventory(path)
    assert (d / "s1.pem").read_text() != s1 and (d / "s2.pem").read_text() == s2
    cert = x509.load_pem_x509_certificate((d / "s1.pem").read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "10.0.0.5" in map(str, san.get_values_for_type(x509.IPAddress))
    # a certificate close to its end is renewed
    ca = secure.CertPair((d / "ca.pem").read_text(), (d / "ca-key.pem").read_text())
    cn, dns, ips = secure.cert_names(load_inventory(path).node("s2"))
    from agent.cli.tls_generate import generate_cert, parse_ip

    short, key = generate_cert(
        signer=parse_signer(ca.key),
        ca=ca.cert,
        name=cn,
        days=secure.RENEW_DAYS - 1,
        dns_names=dns,
        ip_addresses=[parse_ip(i) for i in ips],
        ext_key_usage=[],
    )
    (d / "s2.pem").write_text(short)
    (d / "s2-key.pem").write_text(key)
    load_inventory(path)
    renewed = x509.load_pem_x509_certificate((d / "s2.pem").read_bytes())
    left = renewed.not_valid_after_utc - datetime.datetime.now(datetime.UTC)
    assert left > datetime.timedelta(days=secure.CERT_DAYS - 2)


def test_without_create_secrets_nothing_is_written(tmp_path: Path) -> None:
    inv = load_inventory(write(tmp_path), create_secrets=False)
    assert inv.secrets is not None and inv.secrets.certs["s1"].cert
    assert sorted(p.name for p in tmp_path.iterdir()) == ["inv.yml"]


# -- rendering -------------------------------------------------------------------------------


def test_config_gets_https_tls_and_acl(tmp_path: Path) -> None:
    inv = load_inventory(write(tmp_path))
    s1 = inv.node("s1")
    cfg = json.loads(render_node(inv, s1, "launcher").config.content)
    tokens = json.loads((tmp_path / "inv.agent-tokens").read_text())["s1"]
    assert cfg["ports"] == {"https": 8501}
    assert cfg["tls"] == {
        "defaults": {
            "ca_file": "/opt/senate/tls/ca.pem",
            "cert_file": "/opt/senate/tls/agent.pem",
            "key_file": "/opt/senate/tls/agent-key.pem",
            "verify_incoming": True,
            "verify_outgoing": True,
        },
        "internal_rpc": {"verify_server_hostname": True},
    }
    assert cfg["primary_datacenter"] == "dc1"
    assert cfg["acl"] == {
        "enabled": True,
        "default_policy": "deny",
        "down_policy": "extend-cache",
        "enable_token_persistence": True,
        "tokens": {"agent": tokens["SecretID"], "agent_recovery": tokens["Recovery"]},
    }
    # dc2's agents resolve tokens through the primary
    t1 = json.loads(render_node(inv, inv.node("t1"), "launcher").config.content)
    assert t1["primary_datacenter"] == "dc1"
    r = render_node(inv, s1, "launcher")
    d = tmp_path / "inv.tls"
    assert [(f.path, f.mode) for f in r.tls] == [
        ("/opt/senate/tls/ca.pem", 0o644),
        ("/opt/senate/tls/agent.pem", 0o644),
        ("/opt/senate/tls/agent-key.pem", 0o600),
    ]
    assert [f.content for f in r.tls] == [
        (d / "ca.pem").read_text(),
        (d / "s1.pem").read_text(),
        (d / "s1-key.pem").read_text(),
    ]
    assert r.files[-3:] == list(r.tls)


def test_a_user_https_port_is_kept(tmp_path: Path) -> None:
    inv = load_inventory(
        write(
            tmp_path,
            SECURE.replace(
                "agent: {encrypt: generate}",
                "agent: {encrypt: generate, ports: {https: 9501, http: 8555}}",
            ),
        )
    )
    cfg = json.loads(render_node(inv, inv.node("s1"), "launcher").config.content)
    assert cfg["ports"] == {"https": 9501, "http": 8555}
    assert inv.node("s1").api_url == "https://127.0.0.1:9501"


def test_the_tls_files_plan_by_digest_and_restart_when_they_change(tmp_path: Path) -> None:
    inv = load_inventory(write(tmp_path))
    s1 = inv.node("s1")
    r = render_node(inv, s1, "launcher")
    same = HostState(
        python=(3, 11, 7),
        current="R",
        previous=None,
        releases=("R",),
        config=r.config.content,
        control=r.control.content,
        unit=None,
        systemd=False,
        running=True,
        ports_busy=(),
        disk_free=1 << 30,
        digests=tuple((f.path, f.digest) for f in r.tls),
    )
    p = plan_node(inv, s1, same, r, "R")
    assert (p.files, p.action) == ((), Action.NOTHING)
    key_path = r.tls[2].path
    other = _replace_digest(same, key_path, "0" * 64)
    p = plan_node(inv, s1, other, r, "R")
    assert (p.files, p.action) == ((key_path,), Action.RESTART)
    missing = _replace_digest(same, key_path, None)
    assert plan_node(inv, s1, missing, r, "R").files == (key_path,)


def _replace_digest(state: HostState, path: str, value: str | None) -> HostState:
    import dataclasses

    digests = tuple((p, value if p == path else d) for p, d in state.digests)
    return dataclasses.replace(state, digests=digests)


# -- tokens on provision's commands ----------------------------------------------------------


class Recorder:
    """A host that records what it is asked to run and what it gets on stdin."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.calls: list[tuple[str, bytes | None]] = []

    def run(
        self,
        command: str,
        *,
        step: str,
        timeout: float,
        check: bool = True,
        label: str | None = None,
    ) -> Result:
        self.calls.append((command, None))
        return Result(label or command, 0, "", "")

    def feed(
        self,
        command: str,
        local: Path | bytes,
        *,
        step: str,
        timeout: float,
        label: str | None = None,
    ) -> Result:
        assert isinstance(local, bytes)
        self.calls.append((command, local))
        return Result(label or command, 0, '{"status": 200, "body": "true"}', "")

    def close(self) -> None:
        pass


def test_tokens_travel_on_stdin_and_never_in_the_command(tmp_path: Path) -> None:
    inv = load_inventory(write(tmp_path))
    s1 = inv.node("s1")
    host = Recorder(s1)
    secrets = json.loads((tmp_path / "inv.agent-tokens").read_text())["s1"]
    remote.senate(host, f"members -rpc-addr={s1.rpc_addr}", 10)
    # before `up` made the management token, operator requests carry the recovery token
    remote.senate(host, f"operator raft list-peers -http-addr={s1.api_url}", 10, auth="operator")
    (tmp_path / "inv.acl-token").write_text("mgmt-secret\n")
    remote.senate(host, f"operator raft list-peers -http-addr={s1.api_url}", 10, auth="operator")
    remote.http(host, "/v1/operator/raft/transfer-leader", 10, method="POST")
    stdin = [data for _, data in host.calls]
    assert stdin == [
        f"{secrets['Recovery']}\n".encode(),
        f"{secrets['Recovery']}\n".encode(),
        b"mgmt-secret\n",
        b"mgmt-secret\n",
    ]
    for command, _ in host.calls:
        for secret in (secrets["Recovery"], secrets["SecretID"], "mgmt-secret"):
            assert secret not in command
        assert command.startswith("IFS= read -r PROVISION_TOKEN && ")
        words = shlex.split(command)
        assert "CONSUL_HTTP_TOKEN=$PROVISION_TOKEN" in words  # the variable, unexpanded
        assert "CONSUL_CACERT=/opt/senate/tls/ca.pem" in words
        assert "CONSUL_CLIENT_CERT=/opt/senate/tls/agent.pem" in words
        assert "CONSUL_CLIENT_KEY=/opt/senate/tls/agent-key.pem" in words
    assert "https://127.0.0.1:8501/v1/operator/raft/transfer-leader" in host.calls[-1][0]


def test_the_start_wait_reads_the_recovery_token_first(tmp_path: Path) -> None:
    inv = load_inventory(write(tmp_path))
    host = Recorder(inv.node("c1"))
    remote.start_agent(host, "start", 5, 10)
    [(command, data)] = host.calls
    assert data == f"{inv.node('c1').recovery_token}\n".encode()
    # read before anything else runs; only the waiter gets it, not senatectl (nor the agent)
    assert command.startswith("IFS= read -r PROVISION_TOKEN && ")
    assert command.count("$PROVISION_TOKEN") == 1
    ctl, wait = command.index("senatectl"), command.index('CONSUL_HTTP_TOKEN="$PROVISION_TOKEN"')
    assert ctl < wait


def test_files_travel_on_stdin_and_no_secret_is_in_any_command(tmp_path: Path) -> None:
    inv = load_inventory(write(tmp_path))
    s1 = inv.node("s1")
    rendered = render_node(inv, s1, "launcher")
    host = Recorder(s1)
    remote.start_agent(host, "start", 5, 10, remote.configure_cmds(s1, "r1", rendered))
    remote.write_files(host, rendered, 10)
    tokens = json.loads((tmp_path / "inv.agent-tokens").read_text())["s1"]
    key = next(f.content for f in rendered.tls if f.path.endswith("agent-key.pem"))
    secrets = [tokens["Recovery"], tokens["SecretID"], key.splitlines()[1]]
    secrets.append(json.loads(rendered.config.content)["encrypt"])
    for command, data in host.calls:
        assert data is not None
        for secret in secrets:
            assert secret not in command
    # the token first, then each file's line, in the order the command reads them
    command, data = host.calls[0]
    lines = data.splitlines()
    assert lines[0] == tokens["Recovery"].encode()
    assert len(lines) == 1 + len(rendered.files) == 1 + command.count("read -r PROVISION_FILE")
    assert [base64.b64decode(x).decode() for x in lines[1:]] == [f.content for f in rendered.files]


def test_without_acl_nothing_goes_on_stdin(tmp_path: Path) -> None:
    inv = load_inventory(write(tmp_path, "datacenters: {dc1: {servers: [{host: 10.0.0.1}]}}\n"))
    host = Recorder(inv.nodes[0])
    remote.senate(host, "members", 10, auth="operator")
    remote.start_agent(host, "start", 5, 10)
    assert [data for _, data in host.calls] == [None, None]
    assert all("PROVISION_TOKEN" not in c and "CONSUL_CACERT=" not in c for c, _ in host.calls)
    assert all("CONSUL_HTTP_TOKEN=" not in c for c, _ in host.calls)


# -- the ACL step of `up` --------------------------------------------------------------------


class ACLHost(Recorder):
    def __init__(self, node: Node, exit_code: int = 0, stdout: str = "") -> None:
        super().__init__(node)
        self.exit_code = exit_code
        self.stdout = stdout

    def feed(
        self,
        command: str,
        local: Path | bytes,
        *,
        step: str,
        timeout: float,
        label: str | None = None,
    ) -> Result:
        assert isinstance(local, bytes)
        self.calls.append((command, local))
        return Result(
            label or command, self.exit_code, self.stdout, "no longer allowed (reset index: 7)"
        )


def test_ensure_acls_makes_the_management_token_and_sends_every_agent_token(
    tmp_path: Path,
) -> None:
    inv = load_inventory(write(tmp_path))
    s1 = inv.node("s1")
    tokens = json.loads((tmp_path / "inv.agent-tokens").read_text())
    out = {
        "bootstrapped": True,
        "policy": "created",
        "created": [tokens["s1"]["AccessorID"], tokens["t1"]["AccessorID"]],
        "updated": [],
    }
    host = ACLHost(s1, stdout=json.dumps(out))
    res = acl.ensure_acls(inv, {"s1": host}, s1, 30, 10)
    assert (res.server, res.bootstrapped, res.created) == ("s1", True, ("s1", "t1"))
    assert res.summary() == "bootstrapped, policy senate-agent created, 2 agent token(s) made"
    token_file = tmp_path / "inv.acl-token"
    assert mode(token_file) == 0o600
    management = token_file.read_text().strip()
    [(command, data)] = host.calls
    assert management not in command and data is not None
    spec = json.loads(data)
    assert spec["management"] == management
    assert spec["policy"]["Rules"] == secure.AGENT_POLICY_RULES
    by_node = {t["NodeIdentities"][0]["NodeName"]: t for t in spec["tokens"]}
    assert sorted(by_node) == ["c1", "s1", "s2", "s3", "t1"]
    assert by_node["t1"] == {
        "AccessorID": tokens["t1"]["AccessorID"],
        "SecretID": tokens["t1"]["SecretID"],
        "Description": "agent token of t1 (dc2), made by provision",
        "NodeIdentities": [{"NodeName": "t1", "Datacenter": "dc2"}],
        "Policies": [{"Name": "senate-agent"}],
    }
    assert "https://127.0.0.1:8501" in command
    # the next run keeps the token it made
    acl.ensure_acls(inv, {"s1": host}, s1, 30, 10)
    assert json.loads(host.calls[-1][1] or b"")["management"] == management


def test_ensure_acls_says_what_to_do_when_bootstrapped_with_another_token(tmp_path: Path) -> None:
    inv = load_inventory(write(tmp_path))
    s1 = inv.node("s1")
    host = ACLHost(s1, exit_code=acl.ALREADY_EXIT)
    from provision.hosts import HostError

    with pytest.raises(HostError) as info:
        acl.ensure_acls(inv, {"s1": host}, s1, 30, 10)
    msg = str(info.value)
    assert f"not with the management token in {tmp_path / 'inv.acl-token'}" in msg
    assert "reset index: 7" in msg and "acl-bootstrap-reset" in msg


def test_operator_hints_name_the_files(tmp_path: Path) -> None:
    inv = load_inventory(write(tmp_path))
    hints = secure.operator_hints(inv.path, inv.nodes)
    assert hints == [
        f"ACLs on (default deny): the management token is in {tmp_path}/inv.acl-token",
        "TLS on: HTTPS on :8501 wants a client certificate; the CA and one for the CLI are in "
        f"{tmp_path}/inv.tls/",
    ]
    # nodes on this machine: the environment that reaches the first server
    local = write(
        tmp_path,
        SECURE.replace(
            "install_dir: /opt/senate", "connection: local\n  install_dir: /tmp/x/{name}"
        ).replace("10.0.", "127.0."),
        "local.yml",
    )
    lv = load_inventory(local)
    env = secure.operator_hints(lv.path, lv.nodes)[2:]
    assert env == [
        "the senate CLI reaches it with:",
        f"  export CONSUL_HTTP_TOKEN_FILE={tmp_path}/local.acl-token",
        "  export CONSUL_HTTP_ADDR=https://127.0.0.1:8501",
        f"  export CONSUL_CACERT={tmp_path}/local.tls/ca.pem",
        f"  export CONSUL_CLIENT_CERT={tmp_path}/local.tls/cli.pem",
        f"  export CONSUL_CLIENT_KEY={tmp_path}/local.tls/cli-key.pem",
        "  senate members",
    ]


def test_the_plan_hides_secrets_in_the_config_diff(tmp_path: Path) -> None:
    inv = load_inventory(write(tmp_path))
    s1 = inv.node("s1")
    r = render_node(inv, s1, "launcher")
    tokens = json.loads((tmp_path / "inv.agent-tokens").read_text())["s1"]
    p = plan_node(inv, s1, None, r, "R")
    assert '"agent": "<secret>"' in p.config_diff and '"encrypt": "<secret>"' in p.config_diff
    for secret in (tokens["SecretID"], tokens["Recovery"], s1.agent["encrypt"]):
        assert secret not in p.config_diff
    assert '"default_policy": "deny"' in p.config_diff
