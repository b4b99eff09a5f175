"""`senate exec`: run a command on the nodes of a datacenter (Consul 0.7's remote exec).

See agent/cli/rexec.py for the protocol. Output as Consul's: `    node: line` for output,
`==> node: finished with exit code N`, then `N / M node(s) completed / acknowledged`.
Exit 0 when every acknowledging node finished with 0, 2 otherwise, 1 on errors.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from agent.cli.common import Parser, add_http_flags, err, http_client, out, run_guarded
from agent.client import ClientError, HTTPClient
from agent.durations import parse_duration
from agent.local import rexec

SESSION_RENEW_INTERVAL = 5.0


def exec_parser() -> Parser:
    p = Parser(
        "exec",
        "senate exec [options] [-|command...]",
        "Evaluates a command on remote Senate nodes. The nodes responding can\n"
        "be filtered using regular expressions on node name, service, and tag\n"
        "definitions. If a command is '-', stdin will be read until EOF\n"
        "and used as a script input.",
    )
    add_http_flags(p)
    p.flag("node", default="", help="Regular expression to filter on node names")
    p.flag("service", default="", help="Regular expression to filter on service instances")
    p.flag("tag", default="", help="Regular expression to filter on service tags (needs -service)")
    p.flag("prefix", default=rexec.DEFAULT_PREFIX, help="Prefix in the KV store for the job")
    p.flag("wait", default="2s", help="Period to wait with no responses before terminating")
    p.flag("wait-repl", default="200ms", help="Period to wait for replication before firing")
    p.flag("verbose", action="store_true", help="Enables verbose output")
    p.add_argument("command", nargs="*", help=argparse.SUPPRESS)
    return p


def target_lines(node: str, message: str, arrow: bool) -> str:
    """Consul's TargetedUi: every line prefixed `==> node: ` (info) or `    node: ` (output)."""
    lead = "==>" if arrow else "   "
    text = "\n".join(f"{lead} {node}: {line}" for line in message.split("\n"))
    return text.rstrip()


class Job:
    def __init__(self, args: argparse.Namespace, client: HTTPClient) -> None:
        self.args = args
        self.client = client
        self.session = ""
        self.dc_params: dict[str, Any] = {"dc": args.datacenter}

    def create_session(self) -> None:
        session: dict[str, Any] = {
            "Name": "Remote Exec",
            "Behavior": "delete",
            "TTL": rexec.SESSION_TTL,
        }
        if self._foreign():
            # Consul's createSessionForeign: this agent's node is not in that datacenter's
            # catalog, so the session binds to one of its servers, with no checks.
            servers = self.client.request(
                "GET", "/v1/health/service/consul", {**self.dc_params, "passing": True}
            ).json()
            if not servers:
                raise ClientError("Failed to find Consul server in remote datacenter")
            node = str(servers[0]["Node"]["Node"])
            session.update(Name=f"Remote Exec via {node}@{self.args.datacenter}", Node=node)
            session["Checks"] = []
        body = json.dumps(session).encode()
        reply = self.client.request("PUT", "/v1/session/create", self.dc_params, body=body).json()
        self.session = str(reply["ID"])

    def _foreign(self) -> bool:
        if not self.args.datacenter:
            return False
        me = self.client.request("GET", "/v1/agent/self").json()
        return bool(me["Config"]["Datacenter"] != self.args.datacenter)

    def renew(self) -> None:
        self.client.request(
            "PUT", f"/v1/session/renew/{self.session}", self.dc_params, ok=(200, 404)
        )

    def destroy(self) -> None:
        if not self.session:
            return
        prefix = f"{self.args.prefix}/{self.session}"
        for method, path, params in (
            ("PUT", f"/v1/session/destroy/{self.session}", self.dc_params),
            ("DELETE", f"/v1/kv/{prefix}", {**self.dc_params, "recurse": True}),
        ):
            try:
                self.client.request(method, path, params)
            except ClientError as exc:
                err(f"Failed to clean up remote execution data: {exc}")
        self.session = ""

    def upload(self, command: str, script: bytes, wait: float) -> None:
        key = rexec.job_key(self.args.prefix, self.session)
        spec = rexec.encode_spec(command, script, wait)
        params = {**self.dc_params, "acquire": self.session}
        if self.client.request("PUT", f"/v1/kv/{key}", params, body=spec).json() is not True:
            raise ClientError(f"failed to acquire key {key}")

    def fire(self) -> str:
        payload = json.dumps({"Prefix": self.args.prefix, "Session": self.session}).encode()
        params = {
            **self.dc_params,
            "node": self.args.node or None,
            "service": self.args.service or None,
            "tag": self.args.tag or None,
        }
        event = self.client.request(
            "PUT", f"/v1/event/fire/{rexec.EVENT_NAME}", params, body=payload
        )
        return str(event.json().get("ID", ""))

    def value(self, key: str) -> bytes | None:
        import base64

        resp = self.client.request("GET", f"/v1/kv/{key}", self.dc_params, ok=(200, 404))
        if resp.status != 200:
            return None
        entries = resp.json() or []
        return base64.b64decode(entries[0].get("Value") or "") if entries else None

    def wait_for_results(self, quiet: float) -> int:
        """Consul's waitForJob: report acks, output and exits until `quiet` seconds pass with
        no news (twice that while some node acknowledged and has not finished)."""
        directory = f"{self.args.prefix}/{self.session}/"
        seen: set[str] = set()
        index = 0
        acks = exits = bad = 0
        start = last_news = last_renew = time.monotonic()
        while True:
            now = time.monotonic()
            interval = quiet * (2 if acks > exits else 1)
            remaining = last_news + interval - now
            if remaining <= 0:
                break
            if now - last_renew >= SESSION_RENEW_INTERVAL:
                self.renew()
                last_renew = now
            params = {**self.dc_params, "keys": True}
            if index:
                params["index"] = index
                params["wait"] = f"{int(min(remaining, SESSION_RENEW_INTERVAL) * 1000) + 1}ms"
            resp = self.client.request("GET", f"/v1/kv/{directory}", params, ok=(200, 404))
            index = resp.index or index
            keys = (resp.json() or []) if resp.status == 200 else []
            # Within one listing: acks, then output, then exits (keys sort "exit" < "out").
            fresh = sorted(
                (k for k in keys if k not in seen),
                key=lambda k: (
                    0 if k.endswith(rexec.ACK_SUFFIX) else 2 if k.endswith(rexec.EXIT_SUFFIX) else 1
                ),
            )
            for full in fresh:
                seen.add(full)
                key = full[len(directory) :]
                if key == rexec.JOB_FILE:
                    continue
                last_news = time.monotonic()
                if key.endswith(rexec.ACK_SUFFIX):
                    acks += 1
                    if self.args.verbose:
                        out(target_lines(key[: -len(rexec.ACK_SUFFIX)], "acknowledged", True))
                elif key.endswith(rexec.EXIT_SUFFIX):
                    node = key[: -len(rexec.EXIT_SUFFIX)]
                    raw = self.value(full)
                    try:
                        code = int((raw or b"").decode())
                    except ValueError:
                        err(f"Failed to parse exit code '{(raw or b'').decode(errors='replace')}'")
                        continue
                    exits += 1
                    if code != 0:
                        bad += 1
                    out(target_lines(node, f"finished with exit code {code}", True))
                elif rexec.OUTPUT_DIVIDER in key:
                    node = key[: key.rindex(rexec.OUTPUT_DIVIDER)]
                    raw = self.value(full)
                    if raw is None:
                        err(f"Failed to read key '{full}'")
                    elif not raw:
                        if self.args.verbose:
                            out(target_lines(node, "heartbeat received", True))
                    else:
                        out(target_lines(node, raw.decode(errors="replace"), False))
                else:
                    err(f"Unknown key '{key}', ignoring.")
        out(f"{exits} / {acks} node(s) completed / acknowledged")
        if self.args.verbose:
            out(f"Completed in {time.monotonic() - start:0.2f} seconds")
        if exits < acks:
            bad += 1
        return 2 if bad else 0


def _exec(args: argparse.Namespace) -> int:
    command = " ".join(args.command)
    script = b""
    if command == "-":
        command, script = "", sys.stdin.buffer.read()
    if not command and not script:
        err("Must specify a command to execute")
        err("")
        err(exec_parser().format_help().rstrip())
        return 1
    if args.tag and not args.service:
        err("Cannot provide tag filter without service filter.")
        return 1
    try:
        wait = parse_duration(args.wait) / 1e9
        repl_wait = parse_duration(args.wait_repl) / 1e9
    except ValueError as exc:
        err(f"Invalid duration: {exc}")
        return 1
    client = http_client(args)
    job = Job(args, client)
    try:
        try:
            client.get_json("/v1/agent/self")
        except ClientError as exc:
            err(f"Error querying Senate agent: {exc}")
            return 1
        try:
            job.create_session()
        except ClientError as exc:
            err(f"Failed to create session: {exc}")
            return 1
        if args.verbose:
            out(f"Created remote execution session: {job.session}")
        try:
            job.upload(command, script, wait)
        except ClientError as exc:
            err(f"Failed to create job file: {exc}")
            return 1
        if args.verbose:
            out("Uploaded remote execution spec")
        time.sleep(repl_wait)  # Consul's rExecReplicationWait before the event goes out
        try:
            event_id = job.fire()
        except ClientError as exc:
            err(f"Failed to fire event: {exc}")
            return 1
        if args.verbose:
            out(f"Fired remote execution event: {event_id}")
        try:
            return job.wait_for_results(wait)
        except ClientError as exc:
            err(f"Failed to read results: {exc}")
            return 1
    except KeyboardInterrupt:
        return 1
    finally:
        job.destroy()
        client.close()


def run(argv: list[str]) -> int:
    return run_guarded(exec_parser(), argv, _exec)
