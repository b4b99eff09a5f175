"""`senate acl ...`: Consul's output formats (command/acl/*/formatter.go), flag parsing, and what
each command sends, against a scripted HTTP server that records every request."""

from __future__ import annotations

import io
import json
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from agent.cli import dispatch
from agent.cli.acl_common import (
    CommandError,
    load_data_source,
    load_data_source_no_raw,
    parse_node_identities,
    parse_service_identities,
)
from agent.cli.acl_format import (
    api_token,
    format_policy,
    format_policy_list,
    format_role,
    format_role_list,
    format_token,
    format_token_list,
    go_json,
    go_json_time,
    go_time,
    hash_hex,
)

pytestmark = pytest.mark.timeout(60)

ACCESSOR = "fbd2447f-7479-4329-ad13-b021d74f86ba"
SECRET = "869c6e91-4de9-4dab-b56e-87548435f9c6"
HASH = "YWJjZGVmZ2g="  # b"abcdefgh"

COMPLEX_TOKEN: dict[str, Any] = {
    "AccessorID": ACCESSOR,
    "SecretID": SECRET,
    "Namespace": "foo",
    "Description": "test token",
    "Local": False,
    "AuthMethod": "bar",
    "AuthMethodNamespace": "baz",
    "CreateTime": "2020-05-22T18:52:31Z",
    "ExpirationTime": "2020-05-22T19:52:31Z",
    "Hash": HASH,
    "CreateIndex": 5,
    "ModifyIndex": 10,
    "Policies": [
        {"ID": "beb04680-815b-4d7c-9e33-3d707c24672c", "Name": "hobbiton"},
        {"ID": "18788457-584c-4812-80d3-23d403148a90", "Name": "bywater"},
    ],
    "Roles": [
        {"ID": "3b0a78fe-b9c3-40de-b8ea-7d4d6674b366", "Name": "shire"},
        {"ID": "6c9d1e1d-34bc-4d55-80f3-add0890ad791", "Name": "west-farthing"},
    ],
    "ServiceIdentities": [{"ServiceName": "gardener", "Datacenters": ["middleearth-northwest"]}],
    "NodeIdentities": [{"NodeName": "bagend", "Datacenter": "middleearth-northwest"}],
}

BASIC_TOKEN: dict[str, Any] = {
    "AccessorID": ACCESSOR,
    "SecretID": SECRET,
    "Description": "test token",
    "Local": False,
    "CreateTime": "2020-05-22T18:52:31Z",
    "Hash": HASH,
    "CreateIndex": 42,
    "ModifyIndex": 100,
}


# ---- formats ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "shown", "as_json"),
    [
        ("2020-05-22T18:52:31Z", "2020-05-22 18:52:31 +0000 UTC", "2020-05-22T18:52:31Z"),
        (
            "2026-12-03T12:57:18.560340Z",
            "2026-12-03 12:57:18.56034 +0000 UTC",
            "2026-12-03T12:57:18.56034Z",
        ),
        (
            "2020-01-02T03:04:05.123456789Z",
            "2020-01-02 03:04:05.123456789 +0000 UTC",
            "2020-01-02T03:04:05.123456789Z",
        ),
        ("2020-01-02T03:04:05.000Z", "2020-01-02 03:04:05 +0000 UTC", "2020-01-02T03:04:05Z"),
        (
            "2020-01-02T03:04:05+02:00",
            "2020-01-02 03:04:05 +0200 +0200",
            "2020-01-02T03:04:05+02:00",
        ),
        (None, "0001-01-01 00:00:00 +0000 UTC", "0001-01-01T00:00:00Z"),
    ],
)
def test_times_as_go_prints_them(given: str | None, shown: str, as_json: str) -> None:
    assert go_time(given) == shown
    assert go_json_time(given) == as_json


def test_hash_is_hex_in_pretty_blocks() -> None:
    assert hash_hex(HASH) == "6162636465666768"
    assert hash_hex("") == ""
    assert hash_hex("not base64!") == ""


def test_go_json_escapes_html_characters() -> None:
    assert go_json({"SecretID": "<hidden>", "R": "a & b"}) == (
        '{\n    "SecretID": "\\u003chidden\\u003e",\n    "R": "a \\u0026 b"\n}'
    )
    assert go_json([]) == "[]"


def test_token_pretty_basic() -> None:
    assert format_token(BASIC_TOKEN, "pretty", False) == (
        f"AccessorID:       {ACCESSOR}\n"
        f"SecretID:         {SECRET}\n"
        "Description:      test token\n"
        "Local:            false\n"
        "Create Time:      2020-05-22 18:52:31 +0000 UTC\n"
    )


def test_token_pretty_complex_with_meta() -> None:
    assert format_token(COMPLEX_TOKEN, "pretty", True) == (
        f"AccessorID:       {ACCESSOR}\n"
        f"SecretID:         {SECRET}\n"
        "Namespace:        foo\n"
        "Description:      test token\n"
        "Local:            false\n"
        "Auth Method:      bar (Namespace: baz)\n"
        "Create Time:      2020-05-22 18:52:31 +0000 UTC\n"
        "Expiration Time:  2020-05-22 19:52:31 +0000 UTC\n"
        "Hash:             6162636465666768\n"
        "Create Index:     5\n"
        "Modify Index:     10\n"
        "Policies:\n"
        "   beb04680-815b-4d7c-9e33-3d707c24672c - hobbiton\n"
        "   18788457-584c-4812-80d3-23d403148a90 - bywater\n"
        "Roles:\n"
        "   3b0a78fe-b9c3-40de-b8ea-7d4d6674b366 - shire\n"
        "   6c9d1e1d-34bc-4d55-80f3-add0890ad791 - west-farthing\n"
        "Service Identities:\n"
        "   gardener (Datacenters: middleearth-northwest)\n"
        "Node Identities:\n"
        "   bagend (Datacenter: middleearth-northwest)\n"
    )


def test_token_json_in_api_field_order() -> None:
    out = json.loads(format_token(COMPLEX_TOKEN, "json", False))
    assert list(out) == [
        "CreateIndex",
        "ModifyIndex",
        "AccessorID",
        "SecretID",
        "Description",
        "Policies",
        "Roles",
        "ServiceIdentities",
        "NodeIdentities",
        "Local",
        "AuthMethod",
        "ExpirationTime",
        "CreateTime",
        "Hash",
        "Namespace",
        "AuthMethodNamespace",
    ]
    assert format_token(BASIC_TOKEN, "json", True) == (
        "{\n"
        '    "CreateIndex": 42,\n'
        '    "ModifyIndex": 100,\n'
        f'    "AccessorID": "{ACCESSOR}",\n'
        f'    "SecretID": "{SECRET}",\n'
        '    "Description": "test token",\n'
        '    "Local": false,\n'
        '    "CreateTime": "2020-05-22T18:52:31Z",\n'
        f'    "Hash": "{HASH}"\n'
        "}"
    )
    # a TTL the server echoes back is a Go time.Duration (nanoseconds)
    assert api_token({"ExpirationTTL": "1h"})["ExpirationTTL"] == 3_600_000_000_000


def test_token_list_entries_are_separated_by_a_blank_line() -> None:
    one = format_token(BASIC_TOKEN, "pretty", False)
    assert format_token_list([BASIC_TOKEN, BASIC_TOKEN], "pretty", False) == one + "\n" + one
    assert format_token_list([], "pretty", False) == ""
    listed = json.loads(
        format_token_list([{**BASIC_TOKEN, "Hash": "", "Legacy": False}], "json", False)
    )
    assert listed[0]["Hash"] is None  # not omitempty in api.ACLTokenListEntry
    assert "Legacy" not in listed[0]  # json:"-" in Consul's api now


TEMPLATED = [
    {"TemplateName": "builtin/service", "TemplateVariables": {"name": "api"}},
    {"TemplateName": "builtin/dns", "Datacenters": ["dc1", "dc2"]},
]


def test_templated_policies_of_tokens_and_roles() -> None:
    token = {**BASIC_TOKEN, "TemplatedPolicies": TEMPLATED}
    assert format_token(token, "pretty", False).endswith(
        "Templated Policies:\n"
        "   builtin/service\n"
        "      Name: api\n"
        "      Datacenters: all\n"
        "   builtin/dns\n"
        "      Datacenters: dc1, dc2\n"
    )
    shown = json.loads(format_token(token, "json", False))
    assert shown["TemplatedPolicies"] == [
        {"TemplateName": "builtin/service", "TemplateVariables": {"Name": "api"}},
        {"TemplateName": "builtin/dns", "Datacenters": ["dc1", "dc2"]},
    ]
    assert list(shown).index("TemplatedPolicies") == list(shown).index("Local") - 1
    role = {"ID": "r", "Name": "n", "Description": "", "TemplatedPolicies": TEMPLATED[:1]}
    assert format_role_list([role], "pretty", False) == (
        "n:\n"
        "   ID:           r\n"
        "   Description:  \n"
        "   Templated Policies:\n"
        "      builtin/service\n"
        "         Name: api\n"
        "         Datacenters: all\n"
    )


POLICY = {
    "ID": "beb04680-815b-4d7c-9e33-3d707c24672c",
    "Name": "app",
    "Description": "app writer",
    "Rules": 'key_prefix "app/" { policy = "write" }',
    "Datacenters": ["dc1", "dc2"],
    "Hash": HASH,
    "CreateIndex": 7,
    "ModifyIndex": 9,
}


def test_policy_pretty_and_json() -> None:
    assert format_policy(POLICY, "pretty", True) == (
        "ID:           beb04680-815b-4d7c-9e33-3d707c24672c\n"
        "Name:         app\n"
        "Description:  app writer\n"
        "Datacenters:  dc1, dc2\n"
        "Hash:         6162636465666768\n"
        "Create Index: 7\n"
        "Modify Index: 9\n"
        "Rules:\n"
        'key_prefix "app/" { policy = "write" }'
    )
    assert list(json.loads(format_policy(POLICY, "json", False))) == [
        "ID",
        "Name",
        "Description",
        "Rules",
        "Datacenters",
        "Hash",
        "CreateIndex",
        "ModifyIndex",
    ]
    no_dcs = json.loads(format_policy({**POLICY, "Datacenters": None}, "json", False))
    assert no_dcs["Datacenters"] is None


def test_policy_list_pretty_and_json() -> None:
    stub = {k: v for k, v in POLICY.items() if k != "Rules"}
    assert format_policy_list(
        [stub, {**stub, "Name": "b", "Datacenters": None}], "pretty", False
    ) == (
        "app:\n"
        "   ID:           beb04680-815b-4d7c-9e33-3d707c24672c\n"
        "   Description:  app writer\n"
        "   Datacenters:  dc1, dc2\n"
        "b:\n"
        "   ID:           beb04680-815b-4d7c-9e33-3d707c24672c\n"
        "   Description:  app writer\n"
        "   Datacenters:  \n"
    )
    assert "Rules" not in json.loads(format_policy_list([POLICY], "json", False))[0]


ROLE = {
    "ID": "3b0a78fe-b9c3-40de-b8ea-7d4d6674b366",
    "Name": "shire",
    "Description": "shire role",
    "Policies": [{"ID": "6204f4cd-4709-441c-ac1b-cb029e940263", "Name": "shire-policy"}],
    "ServiceIdentities": [{"ServiceName": "foo", "Datacenters": ["middleearth-southwest"]}],
    "NodeIdentities": [{"NodeName": "bar", "Datacenter": "middleearth-southwest"}],
    "Hash": HASH,
    "CreateIndex": 5,
    "ModifyIndex": 10,
}


def test_role_pretty_list_and_json() -> None:
    assert format_role(ROLE, "pretty", True) == (
        "ID:           3b0a78fe-b9c3-40de-b8ea-7d4d6674b366\n"
        "Name:         shire\n"
        "Description:  shire role\n"
        "Hash:         6162636465666768\n"
        "Create Index: 5\n"
        "Modify Index: 10\n"
        "Policies:\n"
        "   6204f4cd-4709-441c-ac1b-cb029e940263 - shire-policy\n"
        "Service Identities:\n"
        "   foo (Datacenters: middleearth-southwest)\n"
        "Node Identities:\n"
        "   bar (Datacenter: middleearth-southwest)\n"
    )
    assert format_role_list([ROLE], "pretty", False) == (
        "shire:\n"
        "   ID:           3b0a78fe-b9c3-40de-b8ea-7d4d6674b366\n"
        "   Description:  shire role\n"
        "   Policies:\n"
        "      6204f4cd-4709-441c-ac1b-cb029e940263 - shire-policy\n"
        "   Service Identities:\n"
        "      foo (Datacenters: middleearth-southwest)\n"
        "   Node Identities:\n"
        "      bar (Datacenter: middleearth-southwest)\n"
    )
    assert list(json.loads(format_role(ROLE, "json", False))) == [
        "ID",
        "Name",
        "Description",
        "Policies",
        "ServiceIdentities",
        "NodeIdentities",
        "Hash",
        "CreateIndex",
        "ModifyIndex",
    ]
    assert format_role_list([], "json", False) == "[]"


def test_identity_flags() -> None:
    assert parse_service_identities(["web", "db:east,west"]) == [
        {"ServiceName": "web"},
        {"ServiceName": "db", "Datacenters": ["east", "west"]},
    ]
    assert parse_node_identities(["n1:dc1"]) == [{"NodeName": "n1", "Datacenter": "dc1"}]
    with pytest.raises(CommandError, match=r'^Malformed -service-identity argument: "a:b:c"$'):
        parse_service_identities(["a:b:c"])
    with pytest.raises(CommandError, match=r'^Malformed -node-identity argument: "n1"$'):
        parse_node_identities(["n1"])


def test_data_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rules = tmp_path / "rules.hcl"
    rules.write_text('key "a" { policy = "read" }\n')
    assert load_data_source("") == ""
    assert load_data_source("raw text") == "raw text"
    assert load_data_source(f"@{rules}") == 'key "a" { policy = "read" }\n'
    monkeypatch.setattr("sys.stdin", io.StringIO("from stdin"))
    assert load_data_source("-") == "from stdin"
    missing = tmp_path / "nope"
    with pytest.raises(CommandError) as exc:
        load_data_source(f"@{missing}")
    assert str(exc.value) == f"Failed to read file: open {missing}: no such file or directory"
    assert load_data_source_no_raw(str(rules)).startswith("key")
    with pytest.raises(CommandError, match="must specify a file path"):
        load_data_source_no_raw("")


# ---- a scripted agent -----------------------------------------------------------------------


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, list[str]]
    token: str
    body: Any


@dataclass
class Scripted:
    """Answers (method, path) from `routes` (status, JSON); anything else is a 404."""

    addr: str = ""
    routes: dict[tuple[str, str], tuple[int, Any]] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)

    def on(self, method: str, path: str, body: Any, status: int = 200) -> None:
        self.routes[(method, path)] = (status, body)

    def writes(self) -> list[Seen]:
        return [s for s in self.seen if s.method in ("PUT", "DELETE")]


@pytest.fixture
def agent(monkeypatch: pytest.MonkeyPatch) -> Iterator[Scripted]:
    for name in (
        "CONSUL_HTTP_ADDR",
        "SENATE_HTTP_ADDR",
        "CONSUL_HTTP_TOKEN",
        "CONSUL_HTTP_TOKEN_FILE",
        "SENATE_HTTP_TOKEN",
        "SENATE_HTTP_TOKEN_FILE",
    ):
        monkeypatch.delenv(name, raising=False)
    scripted = Scripted()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _answer(self) -> None:
            url = urllib.parse.urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            body = json.loads(raw) if raw else None
            token = self.headers.get("X-Consul-Token") or ""
            scripted.seen.append(
                Seen(self.command, url.path, urllib.parse.parse_qs(url.query), token, body)
            )
            status, answer = scripted.routes.get((self.command, url.path), (404, "not found"))
            data = (json.dumps(answer) if status == 200 else str(answer)).encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_PUT = do_DELETE = _answer

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    scripted.addr = f"127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        yield scripted
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = dispatch(list(argv))
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


TOKENS = [
    {"AccessorID": "aaaa1111-0000-0000-0000-000000000001", "Description": "one"},
    {"AccessorID": "aaaa2222-0000-0000-0000-000000000002", "Description": "two"},
    {"AccessorID": "bbbb0000-0000-0000-0000-000000000003", "Description": "three"},
]
POLICIES = [
    {"ID": "00000000-0000-0000-0000-000000000001", "Name": "global-management"},
    {"ID": "cccc0000-0000-0000-0000-000000000001", "Name": "app"},
    {"ID": "cccc1111-0000-0000-0000-000000000002", "Name": "ops"},
]


def test_group_help_and_unknown_subcommands(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = run(capsys, "acl")
    assert rc == 1 and out == "" and err.startswith("Usage: senate acl <subcommand>")
    assert run(capsys, "acl", "-h")[0] == 0
    rc, _, err = run(capsys, "acl", "nope")
    assert rc == 1 and "unknown subcommand 'nope'" in err
    rc, _, err = run(capsys, "acl", "token")
    assert rc == 1 and "Subcommands:\n    clone" in err
    rc, out, _ = run(capsys, "acl", "policy", "create", "-h")
    assert rc == 0 and "-valid-datacenter" in out and "-rules" in out


def test_flag_errors(capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = run(capsys, "acl", "token", "create", "-expires-ttl=soon")
    assert rc == 1
    assert err.splitlines()[0] == 'invalid value "soon" for flag -expires-ttl: parse error'
    rc, _, err = run(capsys, "acl", "token", "list", "-nope")
    assert rc == 1 and err.splitlines()[0] == "flag provided but not defined: -nope"
    rc, _, err = run(capsys, "acl", "token", "create")
    assert rc == 1 and err.startswith("Cannot create a token without specifying -policy-name")
    rc, _, err = run(capsys, "acl", "policy", "read")
    assert (rc, err) == (1, "Must specify either the -id or -name parameters\n")
    rc, _, err = run(capsys, "acl", "role", "update", "-name=x")
    assert (rc, err) == (1, "Cannot update a role without specifying the -id parameter\n")
    rc, _, err = run(capsys, "acl", "policy", "create", "-rules=x")
    assert rc == 1 and err.startswith("Missing require '-name' flag\nusage:")


def test_token_create_sends_links_and_identities(
    agent: Scripted, capsys: pytest.CaptureFixture[str]
) -> None:
    agent.on("GET", "/v1/acl/policies", POLICIES)
    agent.on("PUT", "/v1/acl/token", BASIC_TOKEN)
    rc, out, err = run(
        capsys,
        "acl",
        "token",
        "create",
        f"-http-addr={agent.addr}",
        "-token=root",
        "-description=d",
        "-policy-id=cccc1",
        "-policy-name",
        "app",
        "-policy-id=global-management",
        "-role-name=r",
        "-service-identity=web:dc1,dc2",
        "-node-identity=n1:dc1",
        "-expires-ttl=1h",
        "-local",
        "-datacenter=dc9",
    )
    assert (rc, err) == (0, "")
    assert out == format_token(BASIC_TOKEN, "pretty", False) + "\n"
    (put,) = agent.writes()
    assert put.token == "root" and put.query == {"dc": ["dc9"]}
    assert put.body == {
        "Description": "d",
        "Local": True,
        "AccessorID": "",
        "SecretID": "",
        "ExpirationTTL": 3_600_000_000_000,
        "ServiceIdentities": [{"ServiceName": "web", "Datacenters": ["dc1", "dc2"]}],
        "NodeIdentities": [{"NodeName": "n1", "Datacenter": "dc1"}],
        "Policies": [
            {"Name": "app"},
            {"ID": "cccc1111-0000-0000-0000-000000000002"},
            {"ID": "00000000-0000-0000-0000-000000000001"},
        ],
        "Roles": [{"Name": "r"}],
    }


def test_partial_ids(agent: Scripted, capsys: pytest.CaptureFixture[str]) -> None:
    agent.on("GET", "/v1/acl/tokens", TOKENS)
    agent.on("GET", "/v1/acl/token/bbbb0000-0000-0000-0000-000000000003", BASIC_TOKEN)
    h = f"-http-addr={agent.addr}"
    rc, out, _ = run(capsys, "acl", "token", "read", h, "-accessor-id=bbbb")
    assert rc == 0 and out.startswith(f"AccessorID:       {ACCESSOR}\n")
    rc, _, err = run(capsys, "acl", "token", "read", h, "-accessor-id=aaaa")
    assert (rc, err) == (1, "Error determining token ID: Partial token ID is not unique\n")
    rc, _, err = run(capsys, "acl", "token", "delete", h, "-accessor-id=ffff")
    assert (rc, err) == (1, "Error determining token ID: No such token ID with prefix: ffff\n")
    # a whole UUID is not looked up; the agent's answer is the error
    gone = "dddd0000-0000-0000-0000-000000000009"
    agent.on("GET", f"/v1/acl/token/{gone}", "ACL not found", status=403)
    rc, _, err = run(capsys, "acl", "token", "read", h, f"-accessor-id={gone}")
    assert (rc, err) == (
        1,
        f'Error reading token "{gone}": Unexpected response code: 403 (ACL not found)\n',
    )
    # the deprecated -id works, with Consul's warning
    rc, out, err = run(capsys, "acl", "token", "read", h, "-id=bbbb", "-format=json")
    assert rc == 0 and err == "Use the -accessor-id parameter to specify token by Accessor ID\n"
    assert json.loads(out)["AccessorID"] == ACCESSOR


def test_token_read_self_and_delete(agent: Scripted, capsys: pytest.CaptureFixture[str]) -> None:
    agent.on("GET", "/v1/acl/token/self", BASIC_TOKEN)
    agent.on("DELETE", f"/v1/acl/token/{ACCESSOR}", True)
    h = f"-http-addr={agent.addr}"
    rc, out, _ = run(capsys, "acl", "token", "read", h, "-self", "-token=s3cret")
    assert rc == 0 and agent.seen[-1].token == "s3cret" and "test token" in out
    rc, out, _ = run(capsys, "acl", "token", "delete", h, f"-accessor-id={ACCESSOR}")
    assert (rc, out) == (0, f'Token "{ACCESSOR}" deleted successfully\n')
    assert [s.path for s in agent.seen].count("/v1/acl/tokens") == 0  # a whole ID: no listing


def test_token_update_replaces_or_appends(
    agent: Scripted, capsys: pytest.CaptureFixture[str]
) -> None:
    current = {
        **BASIC_TOKEN,
        "Policies": [{"ID": "cccc0000-0000-0000-0000-000000000001", "Name": "app"}],
        "ServiceIdentities": [{"ServiceName": "web"}],
        "NodeIdentities": [{"NodeName": "n1", "Datacenter": "dc1"}],
    }
    agent.on("GET", f"/v1/acl/token/{ACCESSOR}", current)
    agent.on("PUT", f"/v1/acl/token/{ACCESSOR}", current)
    agent.on("GET", "/v1/acl/policies", POLICIES)
    h = f"-http-addr={agent.addr}"
    a = f"-accessor-id={ACCESSOR}"

    assert run(capsys, "acl", "token", "update", h, a, "-append-policy-name=ops")[0] == 0
    body = agent.writes()[-1].body
    assert body["Policies"] == [current["Policies"][0], {"Name": "ops"}]
    assert body["Description"] == "test token"  # kept when -description is not given
    # Consul's update sets the identities to what the flags give, none when none are given
    assert body["ServiceIdentities"] == [] and body["NodeIdentities"] == []

    assert run(capsys, "acl", "token", "update", h, a, "-policy-id=cccc1", "-description=x")[0] == 0
    body = agent.writes()[-1].body
    assert body["Policies"] == [{"ID": "cccc1111-0000-0000-0000-000000000002"}]
    assert body["Description"] == "x"

    flags = ["-append-service-identity=db", "-append-node-identity=n2:dc1"]
    assert run(capsys, "acl", "token", "update", h, a, *flags)[0] == 0
    body = agent.writes()[-1].body
    assert body["ServiceIdentities"] == [{"ServiceName": "web"}, {"ServiceName": "db"}]
    assert body["NodeIdentities"] == [
        {"NodeName": "n1", "Datacenter": "dc1"},
        {"NodeName": "n2", "Datacenter": "dc1"},
    ]

    rc, _, err = run(capsys, "acl", "token", "update", h, a, "-merge-policies", "-policy-name=app")
    assert rc == 0 and err.startswith("merge-policies is deprecated")
    assert agent.writes()[-1].body["Policies"] == current["Policies"]  # already linked

    writes = len(agent.writes())
    rc, _, err = run(
        capsys, "acl", "token", "update", h, a, "-policy-name=a", "-append-policy-id=b"
    )
    assert rc == 1 and err.startswith("Cannot combine the use of policy-id/policy-name flags")
    assert len(agent.writes()) == writes


def test_token_clone(agent: Scripted, capsys: pytest.CaptureFixture[str]) -> None:
    anon = "00000000-0000-0000-0000-000000000002"
    agent.on("PUT", f"/v1/acl/token/{anon}/clone", BASIC_TOKEN)
    rc, _, _ = run(
        capsys,
        "acl",
        "token",
        "clone",
        f"-http-addr={agent.addr}",
        "-accessor-id=anonymous",
        "-description=copy",
    )
    assert rc == 0 and agent.writes()[-1].body == {"Description": "copy"}


def test_policy_update_merges_unless_no_merge(
    agent: Scripted, capsys: pytest.CaptureFixture[str]
) -> None:
    pid = "cccc0000-0000-0000-0000-000000000001"
    agent.on("GET", "/v1/acl/policy/name/app", POLICY | {"ID": pid})
    agent.on("GET", f"/v1/acl/policy/{pid}", POLICY | {"ID": pid})
    agent.on("PUT", f"/v1/acl/policy/{pid}", POLICY | {"ID": pid})
    h = f"-http-addr={agent.addr}"
    assert run(capsys, "acl", "policy", "update", h, "-name=app", "-description=new")[0] == 0
    assert agent.writes()[-1].body == {
        "ID": pid,
        "Name": "app",
        "Description": "new",
        "Datacenters": ["dc1", "dc2"],
        "Rules": POLICY["Rules"],
    }
    assert run(capsys, "acl", "policy", "update", h, f"-id={pid}", "-no-merge", "-name=b")[0] == 0
    assert agent.writes()[-1].body == {
        "ID": pid,
        "Name": "b",
        "Description": "",
        "Datacenters": None,
        "Rules": "",
    }
    rc, _, err = run(capsys, "acl", "policy", "delete", h, "-name=nope")
    assert (rc, err) == (1, "Error determining policy ID: No such policy with name nope\n")


def test_role_update_merges(agent: Scripted, capsys: pytest.CaptureFixture[str]) -> None:
    rid = str(ROLE["ID"])
    agent.on("GET", "/v1/acl/roles", [ROLE])
    agent.on("GET", f"/v1/acl/role/{rid}", ROLE)
    agent.on("PUT", f"/v1/acl/role/{rid}", ROLE)
    rc, _, _ = run(
        capsys,
        "acl",
        "role",
        "update",
        f"-http-addr={agent.addr}",
        "-id=3b0a",
        "-policy-name=extra",
        "-service-identity=foo",
        "-node-identity=bar:middleearth-southwest",
    )
    assert rc == 0
    body = agent.writes()[-1].body
    assert body["Policies"] == [*ROLE["Policies"], {"Name": "extra"}]
    assert body["ServiceIdentities"] == [{"ServiceName": "foo"}]  # the same service: replaced
    assert body["NodeIdentities"] == ROLE["NodeIdentities"]  # already there
    rc, _, err = run(capsys, "acl", "role", "read", f"-http-addr={agent.addr}", "-name=nope")
    assert (rc, err) == (1, 'Role not found with name "nope"\n')  # Consul 1.x's 404


def test_set_agent_token(
    agent: Scripted, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    agent.on("PUT", "/v1/agent/token/agent_recovery", None)
    agent.on("PUT", "/v1/agent/token/default", None)
    h = f"-http-addr={agent.addr}"
    rc, out, _ = run(capsys, "acl", "set-agent-token", h, "recovery", "abc")
    assert (rc, out) == (0, 'ACL token "recovery" set successfully\n')
    assert agent.writes()[-1].body == {"Token": "abc"}
    secret = tmp_path / "t"
    secret.write_text("from-file")
    assert run(capsys, "acl", "set-agent-token", h, "default", f"@{secret}")[0] == 0
    assert agent.writes()[-1].body == {"Token": "from-file"}
    assert (
        run(capsys, "acl", "set-agent-token", h)[2] == "Error! Missing TYPE and TOKEN arguments\n"
    )
    assert run(capsys, "acl", "set-agent-token", h, "agent")[2] == "Error! Missing TOKEN argument\n"
    assert run(capsys, "acl", "set-agent-token", h, "bogus", "x")[1:] == (
        "",
        "Unknown token type\n",
    )


def test_bootstrap(agent: Scripted, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    agent.on("PUT", "/v1/acl/bootstrap", BASIC_TOKEN)
    h = f"-http-addr={agent.addr}"
    rc, out, _ = run(capsys, "acl", "bootstrap", h)
    assert rc == 0 and out == format_token(BASIC_TOKEN, "pretty", False) + "\n"
    assert agent.writes()[-1].body is None
    secret = tmp_path / "secret"
    secret.write_text(SECRET + "\n")
    assert run(capsys, "acl", "bootstrap", h, str(secret))[0] == 0
    assert agent.writes()[-1].body == {"BootstrapSecret": SECRET}
    rc, _, err = run(capsys, "acl", "bootstrap", h, "a", "b")
    assert (rc, err) == (1, "This command takes up to one argument\n")
    agent.on(
        "PUT",
        "/v1/acl/bootstrap",
        "Permission denied: ACL bootstrap no longer allowed (reset index: 7)",
        status=403,
    )
    rc, _, err = run(capsys, "acl", "bootstrap", h)
    assert (rc, err) == (
        1,
        "Failed ACL bootstrapping: Unexpected response code: 403 (Permission denied: ACL "
        "bootstrap no longer allowed (reset index: 7))\n",
    )


def test_tokens_from_the_environment(
    agent: Scripted,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    agent.on("GET", "/v1/acl/token/self", BASIC_TOKEN)
    monkeypatch.setenv("SENATE_HTTP_ADDR", agent.addr)
    monkeypatch.setenv("CONSUL_HTTP_TOKEN", "consul-env")
    assert run(capsys, "acl", "token", "read", "-self")[0] == 0
    assert agent.seen[-1].token == "consul-env"
    monkeypatch.setenv("SENATE_HTTP_TOKEN", "senate-env")  # SENATE_ first, as with the address
    assert run(capsys, "acl", "token", "read", "-self")[0] == 0
    assert agent.seen[-1].token == "senate-env"
    assert run(capsys, "acl", "token", "read", "-self", "-token=flag")[0] == 0
    assert agent.seen[-1].token == "flag"
    token_file = tmp_path / "token"
    token_file.write_text("from-file\n")
    monkeypatch.setenv("SENATE_HTTP_TOKEN_FILE", str(token_file))  # a token file wins
    assert run(capsys, "acl", "token", "read", "-self", "-token=flag")[0] == 0
    assert agent.seen[-1].token == "from-file"
    monkeypatch.setenv("SENATE_HTTP_TOKEN_FILE", str(tmp_path / "missing"))
    rc, _, err = run(capsys, "acl", "token", "read", "-self")
    assert rc == 1 and "Error loading token file" in err
    # the same for every command's client
    monkeypatch.delenv("SENATE_HTTP_TOKEN_FILE")
    agent.on("GET", "/v1/kv/k", [])
    run(capsys, "kv", "get", "k")
    assert agent.seen[-1].token == "senate-env"
