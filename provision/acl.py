"""`up`'s ACL step (`acl: bootstrap`): once the primary datacenter has a leader, bootstrap its
ACLs with the management token kept beside the inventory (made now when the file is missing,
mode 0600), then make the agents' policy and each node's agent token (the pre-generated
AccessorID/SecretID of provision.secure, a node identity and the policy). One remote command on
a primary server (provision.hostside.acl_setup, the secrets on its stdin) that only writes what
differs: on a converged datacenter it changes nothing.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from provision import remote, secure
from provision.hosts import Host, HostError, StepError, run_input
from provision.hostside import acl_setup as _acl_setup
from provision.inventory import Inventory, Node

ALREADY_EXIT = 96  # acl_setup: bootstrapped before, with another token


@dataclass(frozen=True, slots=True)
class ACLResult:
    server: str  # the node it ran on
    bootstrapped: bool
    policy: str  # created | updated | ok
    created: tuple[str, ...]  # node names whose agent token was made
    updated: tuple[str, ...]

    @property
    def changed(self) -> bool:
        return self.bootstrapped or self.policy != "ok" or bool(self.created or self.updated)

    def summary(self) -> str:
        parts = ["bootstrapped"] if self.bootstrapped else []
        if self.policy != "ok":
            parts.append(f"policy {secure.AGENT_POLICY} {self.policy}")
        if self.created:
            parts.append(f"{len(self.created)} agent token(s) made")
        if self.updated:
            parts.append(f"{len(self.updated)} agent token(s) corrected")
        return ", ".join(parts) or "nothing to change"


def management_token(inv: Inventory, create: bool = True) -> str:
    """The management token of `<stem>.acl-token`, made (a UUID, mode 0600) when missing."""
    path = secure.acl_token_path(inv.path)
    if path.exists():
        value = path.read_text().strip()
        if value:
            return value
    value = str(uuid.uuid4())
    if create:
        secure.write_secret(path, value + "\n")
    return value


def setup_spec(inv: Inventory, management: str) -> dict[str, object]:
    tokens = inv.secrets.tokens if inv.secrets is not None else {}
    return {
        "management": management,
        "policy": secure.agent_policy_spec(),
        "tokens": [secure.agent_token_spec(n, tokens[n.name]) for n in inv.nodes],
    }


def ensure_acls(
    inv: Inventory,
    hosts: Mapping[str, Host],
    first: Node | None,
    deadline_s: float,
    timeout: float,
) -> ACLResult:
    """Bootstrap and tokens on `first` (the primary's leader), else the primary's other
    servers in turn while one cannot be reached. Raises HostError saying what to do when the
    ACLs were bootstrapped with a token provision does not hold."""
    primary = inv.datacenters[0]
    token_file = secure.acl_token_path(inv.path)
    payload = json.dumps(setup_spec(inv, management_token(inv))).encode()
    servers = inv.servers(primary)
    order = ([first] if first is not None else []) + [s for s in servers if s != first]
    errors: list[str] = []
    for node in order:
        host = hosts.get(node.name)
        if host is None:
            continue
        cmd = remote.program_cmd(
            node, _acl_setup, node.api_url, f"{deadline_s:g}", str(ALREADY_EXIT)
        )
        try:
            res = run_input(
                host,
                cmd,
                payload,
                step="acl",
                timeout=timeout + deadline_s,
                check=False,
                label="<acl setup>",
            )
        except HostError as exc:
            errors.append(f"{node.name}: {exc}")
            continue
        if res.exit_code == ALREADY_EXIT:
            raise HostError(
                primary,
                f"{primary}: its ACLs were bootstrapped before, not with the management token "
                f"in {token_file} ({res.stderr.strip()}). Put that token in the file, or allow "
                "one more bootstrap: write the reset index into <data_dir>/acl-bootstrap-reset "
                "on the leader",
            )
        if res.exit_code != 0:
            raise StepError(node.name, "acl", "<acl setup>", res.exit_code, res.stderr)
        return _result(inv, node, res.stdout)
    raise HostError(primary, f"{primary}: no server to set the ACLs up on: " + "; ".join(errors))


def _result(inv: Inventory, node: Node, stdout: str) -> ACLResult:
    d = json.loads(stdout)
    tokens = inv.secrets.tokens if inv.secrets is not None else {}
    by_accessor = {t.accessor: name for name, t in tokens.items()}
    return ACLResult(
        node.name,
        bool(d["bootstrapped"]),
        str(d["policy"]),
        tuple(by_accessor.get(a, a) for a in d["created"]),
        tuple(by_accessor.get(a, a) for a in d["updated"]),
    )


def token_file(inv: Inventory) -> Path | None:
    """The management token's file, when ACLs are on."""
    return secure.acl_token_path(inv.path) if inv.nodes and inv.nodes[0].acl else None
