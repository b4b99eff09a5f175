"""`senate watch`: run a handler (or print JSON) whenever a view of the datacenter changes.

A watch is a loop of blocking queries (`?index=` the last X-Consul-Index): when the index
moves and the result differs, the handler runs with the result as JSON on stdin and
CONSUL_INDEX in its environment, as Consul's watch plans do. Without a handler the first
result is printed and the command exits.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from agent.cli.common import Parser, add_http_flags, err, http_client, out, run_guarded
from agent.client import ClientError, HTTPClient
from agent.http.event_ids import event_id_index

WATCH_TYPES = ("key", "keyprefix", "services", "nodes", "service", "checks", "event")
#: Consul's watch plan: retry after 5 s x failures^2, at most 180 s; block 5 min per query.
RETRY_INTERVAL = 5.0
MAX_BACKOFF = 180.0
BLOCK_WAIT = "5m"


def api_kv_pair(entry: dict[str, Any]) -> dict[str, Any]:
    """/v1/kv JSON -> the api package's KVPair field order, as Consul's watch prints it."""
    return {
        "Key": entry.get("Key", ""),
        "CreateIndex": entry.get("CreateIndex", 0),
        "ModifyIndex": entry.get("ModifyIndex", 0),
        "LockIndex": entry.get("LockIndex", 0),
        "Flags": entry.get("Flags", 0),
        "Value": entry.get("Value"),
        "Session": entry.get("Session", ""),
    }


class WatchQuery:
    """One watch type: its endpoint, and how a reply becomes the handler's data."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.last_event_index = 0

    def validate(self) -> str | None:
        a = self.args
        if a.type == "key" and not a.key:
            return "Must specify a single key to watch"
        if a.type == "keyprefix" and not a.prefix:
            return "Must specify a single prefix to watch"
        if a.type == "service" and not a.service:
            return "Must specify a single service to watch"
        if a.type == "checks" and a.service and a.state:
            return "Cannot specify service and state"
        return None

    def request(self) -> tuple[str, dict[str, Any], tuple[int, ...]]:
        a = self.args
        params: dict[str, Any] = {"dc": a.datacenter, "stale": a.stale or None}
        if a.type == "key":
            return f"/v1/kv/{a.key}", params, (200, 404)
        if a.type == "keyprefix":
            params["recurse"] = True
            return f"/v1/kv/{a.prefix}", params, (200, 404)
        if a.type == "services":
            return "/v1/catalog/services", params, (200,)
        if a.type == "nodes":
            return "/v1/catalog/nodes", params, (200,)
        if a.type == "service":
            params["tag"] = a.tag or None
            params["passing"] = a.passingonly or None
            return f"/v1/health/service/{a.service}", params, (200,)
        if a.type == "checks":
            if a.service:
                return f"/v1/health/checks/{a.service}", params, (200,)
            return f"/v1/health/state/{a.state or 'any'}", params, (200,)
        params = {"name": a.name or None}
        return "/v1/event/list", params, (200,)

    def fetch(self, client: HTTPClient, index: int) -> tuple[int, Any]:
        path, params, ok = self.request()
        if index:
            params["index"] = index
            params["wait"] = BLOCK_WAIT
        resp = client.request("GET", path, params, ok=ok)
        data = resp.json() if resp.status == 200 else None
        if self.args.type == "key":
            data = api_kv_pair(data[0]) if data else None
        elif self.args.type == "keyprefix":
            data = [api_kv_pair(e) for e in data or []]
        elif self.args.type == "event":
            events = list(data or [])
            # only the events after the last one already handed to the handler
            for i, event in enumerate(events):
                if event_id_index(str(event.get("ID", ""))) == self.last_event_index:
                    events = events[i + 1 :]
                    break
            if events:
                self.last_event_index = event_id_index(str(events[-1].get("ID", "")))
            data = events
        return resp.index, data


def run_handler(script: str, index: int, data: Any) -> str | None:
    """Run `sh -c script` with the data as JSON on stdin; returns an error text on failure."""
    sys.stdout.flush()
    env = dict(os.environ, CONSUL_INDEX=str(index), SENATE_INDEX=str(index))
    payload = (json.dumps(data) + "\n").encode()
    try:
        proc = subprocess.run(["/bin/sh", "-c", script], input=payload, env=env, check=False)
    except OSError as exc:
        return str(exc)
    if proc.returncode != 0:
        return f"exit status {proc.returncode}"
    return None


def _log_error(message: str) -> None:
    stamp = time.strftime("%Y/%m/%d %H:%M:%S")
    err(f"{stamp} [ERR] consul.watch: {message}")


def watch_loop(
    args: argparse.Namespace,
    client: HTTPClient,
    handler: Callable[[int, Any], bool],
    should_stop: Callable[[], bool] = lambda: False,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Consul's watch plan: block on the index, call handler(index, data) on a real change;
    handler returns False to stop."""
    query = WatchQuery(args)
    last_index = 0
    last_result: Any = None
    failures = 0
    while not should_stop():
        try:
            index, result = query.fetch(client, last_index)
        except ClientError as exc:
            failures += 1
            retry = min(RETRY_INTERVAL * failures * failures, MAX_BACKOFF)
            _log_error(f"Watch (type: {args.type}) errored: {exc}, retry in {retry:g}s")
            sleep(retry)
            continue
        failures = 0
        if index == last_index:
            continue
        old_index, last_index = last_index, index
        if old_index != 0 and result == last_result:
            continue
        last_result = result
        if not handler(index, result):
            return


def watch_parser() -> Parser:
    p = Parser(
        "watch",
        "senate watch [options] [child...]",
        "Watches for changes in a given data view from Senate. If a child process\n"
        "is specified, it will be invoked with the latest results on changes. Otherwise,\n"
        "the latest values are dumped to stdout and the watch terminates.",
    )
    add_http_flags(p)
    p.flag("type", default="", help="Type of watch: " + ", ".join(WATCH_TYPES))
    p.flag("key", default="", help="Key to watch (type key)")
    p.flag("prefix", default="", help="Key prefix to watch (type keyprefix)")
    p.flag("service", default="", help="Service to watch (types service, checks)")
    p.flag("tag", default="", help="Service tag to filter on (type service)")
    p.flag("passingonly", action="store_true", help="Only passing instances (type service)")
    p.flag("state", default="", help="Check state to filter on (type checks)")
    p.flag("name", default="", help="Event name to watch (type event)")
    p.add_argument("handler", nargs="*", help=argparse.SUPPRESS)
    return p


def _watch(args: argparse.Namespace) -> int:
    if not args.type:
        err("Watch type must be specified")
        err("")
        err(watch_parser().format_help().rstrip())
        return 1
    if args.type not in WATCH_TYPES:
        err(f"Failed to setup watch: Unsupported watch type: {args.type}")
        return 1
    problem = WatchQuery(args).validate()
    if problem:
        err(f"Failed to setup watch: {problem}")
        return 1
    script = " ".join(args.handler)
    client = http_client(args)
    client.timeout = 360.0  # a blocking query may hold for BLOCK_WAIT plus jitter
    try:
        client.get_json("/v1/agent/self")
    except ClientError as exc:
        err(f"Error querying Senate agent: {exc}")
        client.close()
        return 1
    status = {"exit": 0}

    def print_once(_index: int, data: Any) -> bool:
        out(json.dumps(data, indent=4))
        return False

    def invoke(index: int, data: Any) -> bool:
        problem = run_handler(script, index, data)
        if problem is not None:
            err(f"Error executing handler: {problem}")
            status["exit"] = 1
            return False
        return True

    try:
        watch_loop(args, client, invoke if script else print_once)
    except KeyboardInterrupt:
        return 0
    finally:
        client.close()
    return status["exit"]


def run(argv: list[str]) -> int:
    return run_guarded(watch_parser(), argv, _watch)
