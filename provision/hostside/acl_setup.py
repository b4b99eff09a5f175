"""Brings a datacenter's ACLs to what the inventory says, on one server of the primary
datacenter: bootstraps them once with the management token provision holds, and makes (or
corrects) the agents' policy and each node's agent token. Everything it writes it reads first,
so on a converged datacenter it writes nothing.

    python -c <this file> API_URL DEADLINE_S ALREADY_EXIT < spec.json

spec.json (on stdin: it carries secrets) is {"management": SECRET, "policy": {Name,
Description, Rules}, "tokens": [{AccessorID, SecretID, Description, NodeIdentities,
Policies}]}. Until the deadline it waits out what a new or changing leader answers (no
leader, the ACL system not yet initialised, connection refused). Prints one JSON object:
{"bootstrapped": bool, "policy": "created" | "updated" | "ok", "created": [AccessorID...],
"updated": [...]}. Exits ALREADY_EXIT when the ACLs were bootstrapped before with another
token, 1 on any other failure, saying why on stderr. An https:// URL is asked with the CA and
client certificate of CONSUL_CACERT, CONSUL_CLIENT_CERT and CONSUL_CLIENT_KEY. Standard
library only.
"""

from __future__ import annotations

import json
import os
import ssl
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

REQUEST_TIMEOUT_S = 10.0
RETRY_DELAY_S = 0.25
NOT_FOUND = "ACL not found"  # a token's secret that resolves to nothing, a missing token
ALREADY = "ACL bootstrap no longer allowed"


class Failed(Exception):
    pass


class Already(Exception):
    pass


def tls_context() -> ssl.SSLContext | None:
    """For an https:// URL: the CA and client certificate of CONSUL_CACERT, CONSUL_CLIENT_CERT
    and CONSUL_CLIENT_KEY, as the senate CLI takes them (None: the default context)."""
    ca = os.environ.get("CONSUL_CACERT")
    if not ca:
        return None
    ctx = ssl.create_default_context(cafile=ca)
    cert = os.environ.get("CONSUL_CLIENT_CERT")
    if cert:
        ctx.load_cert_chain(cert, os.environ.get("CONSUL_CLIENT_KEY") or None)
    return ctx


class API:
    def __init__(self, url: str, token: str, deadline: float) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.deadline = deadline
        self.ctx = tls_context()

    def call(self, method: str, path: str, body: Any = None, token: bool = True) -> tuple[int, Any]:
        """(status, decoded body) of the first answer that is not a transient one (5xx, no
        connection), retried until the deadline; with the management token unless not `token`."""
        data = None if body is None else json.dumps(body).encode()
        last = ""
        while True:
            req = urllib.request.Request(self.url + path, data=data, method=method)
            if token:
                req.add_header("X-Consul-Token", self.token)
            try:
                with urllib.request.urlopen(req, timeout=REQUEST_TIMEOUT_S, context=self.ctx) as r:
                    raw = r.read().decode()
                    return r.status, json.loads(raw) if raw.strip() else None
            except urllib.error.HTTPError as e:
                text = e.read().decode(errors="replace").strip()
                if e.code < 500:
                    return e.code, text
                last = f"{method} {path}: HTTP {e.code} {text}"
            except (OSError, ValueError) as e:
                last = f"{method} {path}: {e}"
            if time.monotonic() >= self.deadline:
                raise Failed(f"no answer before the deadline: {last}")
            time.sleep(RETRY_DELAY_S)

    def must(self, method: str, path: str, body: Any = None) -> Any:
        status, reply = self.call(method, path, body)
        if status != 200:
            raise Failed(f"{method} {path}: HTTP {status} {reply}")
        return reply


def bootstrap(api: API) -> bool:
    """True when it bootstrapped now; False when the management token works already."""
    while True:
        status, reply = api.call("GET", "/v1/acl/token/self")
        if status == 200:
            return False
        if status != 403 or NOT_FOUND not in str(reply):
            raise Failed(f"the management token: HTTP {status} {reply}")
        # anonymous: the token it is to make resolves to nothing yet
        body = {"BootstrapSecret": api.token}
        status, reply = api.call("PUT", "/v1/acl/bootstrap", body, token=False)
        if status == 200:
            return True
        if ALREADY in str(reply):
            raise Already(str(reply))
        # a leader that has not set the ACL system up yet: ask again
        if time.monotonic() >= api.deadline:
            raise Failed(f"bootstrap: HTTP {status} {reply}")
        time.sleep(RETRY_DELAY_S)


def missing(status: int, reply: Any) -> bool:
    """A read of a token or policy that is not there: 404 (Consul 1.x for a policy, a role)
    or 403 "ACL not found" (for a token)."""
    return status == 404 or (status == 403 and NOT_FOUND in str(reply))


def ensure_policy(api: API, want: dict[str, str]) -> str:
    name = urllib.parse.quote(want["Name"], safe="")
    status, have = api.call("GET", f"/v1/acl/policy/name/{name}")
    if missing(status, have):
        api.must("PUT", "/v1/acl/policy", want)
        return "created"
    if status != 200:
        raise Failed(f"policy {want['Name']}: HTTP {status} {have}")
    if all(have.get(k) == v for k, v in want.items()):
        return "ok"
    api.must("PUT", f"/v1/acl/policy/{have['ID']}", {**want, "ID": have["ID"]})
    return "updated"


def _same(have: dict[str, Any], want: dict[str, Any]) -> bool:
    names = sorted(p.get("Name") for p in have.get("Policies") or [])
    nodes = sorted(
        (n.get("NodeName"), n.get("Datacenter")) for n in have.get("NodeIdentities") or []
    )
    return (
        have.get("Description") == want["Description"]
        and names == sorted(p["Name"] for p in want["Policies"])
        and nodes == sorted((n["NodeName"], n["Datacenter"]) for n in want["NodeIdentities"])
    )


def ensure_token(api: API, want: dict[str, Any]) -> str:
    accessor = want["AccessorID"]
    status, have = api.call("GET", f"/v1/acl/token/{accessor}")
    if missing(status, have):
        api.must("PUT", "/v1/acl/token", want)
        return "created"
    if status != 200:
        raise Failed(f"token {accessor}: HTTP {status} {have}")
    if have.get("SecretID") != want["SecretID"]:
        raise Failed(f"token {accessor} exists with another SecretID")
    if _same(have, want):
        return "ok"
    api.must("PUT", f"/v1/acl/token/{accessor}", want)
    return "updated"


def main(argv: list[str]) -> int:
    url, deadline_s, already_exit = argv[0], float(argv[1]), int(argv[2])
    spec = json.load(sys.stdin)
    api = API(url, spec["management"], time.monotonic() + deadline_s)
    out: dict[str, Any] = {"created": [], "updated": []}
    try:
        out["bootstrapped"] = bootstrap(api)
        out["policy"] = ensure_policy(api, spec["policy"])
        for want in spec["tokens"]:
            done = ensure_token(api, want)
            if done != "ok":
                out[done].append(want["AccessorID"])
    except Already as exc:
        print(str(exc), file=sys.stderr)
        return already_exit
    except Failed as exc:
        print(str(exc), file=sys.stderr)
        return 1
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
