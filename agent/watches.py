"""Watch plans, as Consul's `watch` package runs them: a loop of blocking queries against an
agent's HTTP API (`?index=` the last X-Consul-Index) that hands each real change of a view to a
handler — a shell command or program with the result as JSON on stdin and CONSUL_INDEX in its
environment, or an HTTP endpoint the result is POSTed to.

`senate watch` runs one plan in the foreground; the agent runs the `watches` of its config
files, each in its own thread, against its own HTTP API (`ConfigWatches`, at the end).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from agent.client import ClientError, HTTPClient
from agent.durations import DurationError, parse_seconds
from agent.event_ids import event_id_index

WATCH_TYPES = ("key", "keyprefix", "services", "nodes", "service", "checks", "event")
#: Consul's watch plan: retry after 5 s x failures^2, at most 180 s; block 5 min per query.
RETRY_INTERVAL = 5.0
MAX_BACKOFF = 180.0
BLOCK_WAIT = "5m"

log = logging.getLogger("agent")


class WatchError(ValueError):
    """A watch definition is invalid; the message is Consul's."""


@dataclass(frozen=True, slots=True)
class HTTPHandler:
    path: str
    method: str = "POST"
    header: tuple[tuple[str, str], ...] = ()
    timeout: float = 10.0


@dataclass(frozen=True, slots=True)
class WatchSpec:
    type: str
    key: str = ""
    prefix: str = ""
    service: str = ""
    tag: tuple[str, ...] = ()
    passingonly: bool = False
    state: str = ""
    name: str = ""
    datacenter: str = ""
    stale: bool = False
    #: the ACL token the watch's requests carry ("": the agent's default token)
    token: str = ""
    #: a shell command (`handler`, or the words after `senate watch ...`)
    script: str = ""
    #: a program and its arguments, run without a shell (`args`)
    args: tuple[str, ...] = ()
    http: HTTPHandler | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        if self.type not in WATCH_TYPES:
            raise WatchError(f"Unsupported watch type: {self.type}")
        if self.type == "key" and not self.key:
            raise WatchError("Must specify a single key to watch")
        if self.type == "keyprefix" and not self.prefix:
            raise WatchError("Must specify a single prefix to watch")
        if self.type == "service" and not self.service:
            raise WatchError("Must specify a single service to watch")
        if self.type == "checks" and self.service and self.state:
            raise WatchError("Cannot specify service and state")
        if sum(bool(x) for x in (self.script, self.args, self.http)) > 1:
            raise WatchError("Only one watch handler allowed")

    @property
    def has_handler(self) -> bool:
        return bool(self.script or self.args or self.http)


#: the keys of a watch in a config file, per type, as Consul's watch.Parse accepts them
_COMMON_KEYS = {"type", "datacenter", "token", "stale", "handler", "args", "handler_type"}
_TYPE_KEYS = {
    "key": {"key"},
    "keyprefix": {"prefix"},
    "services": set(),
    "nodes": set(),
    "service": {"service", "tag", "passingonly"},
    "checks": {"service", "state"},
    "event": {"name"},
}


def _str(params: dict[str, Any], key: str) -> str:
    v = params.get(key, "")
    if not isinstance(v, str):
        raise WatchError(f"Expecting {key} to be a string")
    return v


def parse_watch(params: Any) -> WatchSpec:
    """A `watches` entry of a config file -> WatchSpec; WatchError names what is wrong."""
    if not isinstance(params, dict):
        raise WatchError("expected a watch object")
    kind = _str(params, "type")
    if not kind:
        raise WatchError("Watch type must be specified")
    if kind not in WATCH_TYPES:
        raise WatchError(f"Unsupported watch type: {kind}")
    allowed = _COMMON_KEYS | _TYPE_KEYS[kind] | {"http_handler_config"}
    unknown = sorted(k for k in params if k not in allowed)
    if unknown:
        raise WatchError(f"Invalid parameters: {unknown}")
    handler_type = _str(params, "handler_type") or "script"
    script = _str(params, "handler")
    args: tuple[str, ...] = ()
    if "args" in params:
        raw = params["args"]
        if not isinstance(raw, list) or not all(isinstance(a, str) for a in raw):
            raise WatchError("Watch args must be a list of strings")
        args = tuple(raw)
    http: HTTPHandler | None = None
    if handler_type == "http":
        http = _http_handler(params.get("http_handler_config"))
    elif handler_type != "script":
        raise WatchError(f"Unsupported handler type: {handler_type}")
    elif "http_handler_config" in params:
        raise WatchError('http_handler_config requires handler_type "http"')
    tag = params.get("tag", [])
    if isinstance(tag, str):
        tag = (tag,) if tag else ()
    elif not isinstance(tag, list) or not all(isinstance(t, str) for t in tag):
        raise WatchError("Expecting tag to be a string or a list of strings")
    for b in ("passingonly", "stale"):
        if b in params and not isinstance(params[b], bool):
            raise WatchError(f"Expecting {b} to be a boolean")
    spec = WatchSpec(
        type=kind,
        key=_str(params, "key"),
        prefix=_str(params, "prefix"),
        service=_str(params, "service"),
        tag=tuple(tag),
        passingonly=bool(params.get("passingonly", False)),
        state=_str(params, "state"),
        name=_str(params, "name"),
        datacenter=_str(params, "datacenter"),
        stale=bool(params.get("stale", False)),
        token=_str(params, "token"),
        script=script,
        args=args,
        http=http,
    )
    spec.validate()
    if not spec.has_handler:
        raise WatchError("Must define a watch handler (handler, args or http_handler_config)")
    return spec


def _http_handler(raw: Any) -> HTTPHandler:
    if not isinstance(raw, dict) or not isinstance(raw.get("path"), str) or not raw["path"]:
        raise WatchError('http_handler_config: expected an object with a "path" URL')
    unknown = sorted(
        k for k in raw if k not in ("path", "method", "header", "timeout", "tls_skip_verify")
    )
    if unknown:
        raise WatchError(f"http_handler_config: Invalid parameters: {unknown}")
    header: list[tuple[str, str]] = []
    for k, vs in (raw.get("header") or {}).items():
        for v in vs if isinstance(vs, list) else [vs]:
            header.append((str(k), str(v)))
    timeout = 10.0
    if "timeout" in raw:
        try:
            timeout = parse_seconds(str(raw["timeout"]))
        except DurationError:
            raise WatchError(f"http_handler_config: invalid timeout {raw['timeout']!r}") from None
    return HTTPHandler(
        path=raw["path"],
        method=str(raw.get("method") or "POST"),
        header=tuple(header),
        timeout=timeout,
    )


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

    def __init__(self, spec: WatchSpec) -> None:
        self.spec = spec
        self.last_event_index = 0

    def request(self) -> tuple[str, list[tuple[str, Any]], tuple[int, ...]]:
        s = self.spec
        params: list[tuple[str, Any]] = [("dc", s.datacenter or None), ("stale", s.stale or None)]
        if s.type == "key":
            return f"/v1/kv/{s.key}", params, (200, 404)
        if s.type == "keyprefix":
            return f"/v1/kv/{s.prefix}", [*params, ("recurse", True)], (200, 404)
        if s.type == "services":
            return "/v1/catalog/services", params, (200,)
        if s.type == "nodes":
            return "/v1/catalog/nodes", params, (200,)
        if s.type == "service":
            params += [("tag", t) for t in s.tag]
            params.append(("passing", s.passingonly or None))
            return f"/v1/health/service/{s.service}", params, (200,)
        if s.type == "checks":
            if s.service:
                return f"/v1/health/checks/{s.service}", params, (200,)
            return f"/v1/health/state/{s.state or 'any'}", params, (200,)
        return "/v1/event/list", [("name", s.name or None)], (200,)

    def fetch(self, client: HTTPClient, index: int) -> tuple[int, Any]:
        path, params, ok = self.request()
        if index:
            params = [*params, ("index", index), ("wait", BLOCK_WAIT)]
        resp = client.request("GET", path, params, ok=ok)
        data = resp.json() if resp.status == 200 else None
        if self.spec.type == "key":
            data = api_kv_pair(data[0]) if data else None
        elif self.spec.type == "keyprefix":
            data = [api_kv_pair(e) for e in data or []]
        elif self.spec.type == "event":
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


def run_handler(spec: WatchSpec, index: int, data: Any) -> str | None:
    """Hand `data` to the spec's handler; returns an error text on failure."""
    payload = (json.dumps(data) + "\n").encode()
    if spec.http is not None:
        return _post(spec.http, index, payload)
    sys.stdout.flush()
    env = dict(os.environ, CONSUL_INDEX=str(index), SENATE_INDEX=str(index))
    argv = list(spec.args) if spec.args else ["/bin/sh", "-c", spec.script]
    try:
        proc = subprocess.run(argv, input=payload, env=env, check=False)
    except OSError as exc:
        return str(exc)
    if proc.returncode != 0:
        return f"exit status {proc.returncode}"
    return None


def _post(h: HTTPHandler, index: int, payload: bytes) -> str | None:
    req = urllib.request.Request(h.path, data=payload, method=h.method)
    req.add_header("Content-Type", "application/json")
    req.add_header("X-Consul-Index", str(index))
    for k, v in h.header:
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=h.timeout) as resp:
            resp.read()
    except urllib.error.HTTPError as exc:
        return f"Failed to invoke http handler: {exc.code} {exc.reason}"
    except (OSError, ValueError) as exc:
        return f"Failed to invoke http handler: {exc}"
    return None


def log_error(message: str) -> None:
    stamp = time.strftime("%Y/%m/%d %H:%M:%S")
    sys.stderr.write(f"{stamp} [ERR] consul.watch: {message}\n")
    sys.stderr.flush()


def watch_loop(
    spec: WatchSpec,
    client: HTTPClient,
    handler: Callable[[int, Any], bool],
    should_stop: Callable[[], bool] = lambda: False,
    sleep: Callable[[float], object] = time.sleep,
    on_error: Callable[[str], None] = log_error,
) -> None:
    """Consul's watch plan: block on the index, call handler(index, data) on a real change;
    handler returns False to stop."""
    query = WatchQuery(spec)
    last_index = 0
    last_result: Any = None
    failures = 0
    while not should_stop():
        try:
            index, result = query.fetch(client, last_index)
        except ClientError as exc:
            if should_stop():
                return
            failures += 1
            retry = min(RETRY_INTERVAL * failures * failures, MAX_BACKOFF)
            on_error(f"Watch (type: {spec.type}) errored: {exc}, retry in {retry:g}s")
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


class ConfigWatches:
    def __init__(self) -> None:
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self, http_addr: str, watches: Sequence[dict[str, Any]]) -> None:
        """Run each watch against the HTTP API at `http_addr` ("host:port")."""
        self._stop = threading.Event()
        stop = self._stop
        for n, params in enumerate(watches):
            spec = parse_watch(params)  # validated at load; cannot fail here
            t = threading.Thread(
                target=self._run,
                args=(spec, http_addr, stop),
                name=f"watch-{n}-{spec.type}",
                daemon=True,
            )
            self._threads.append(t)
            t.start()
        if watches:
            log.info("started %d watch plan(s) from the config", len(watches))

    @staticmethod
    def _run(spec: WatchSpec, http_addr: str, stop: threading.Event) -> None:
        client = HTTPClient(http_addr, token=spec.token)
        client.timeout = 360.0  # a blocking query holds for BLOCK_WAIT plus jitter

        def handle(index: int, data: Any) -> bool:
            if stop.is_set():
                return False
            problem = run_handler(spec, index, data)
            if problem is not None:
                log.error("Failed to run watch handler (type: %s): %s", spec.type, problem)
            return not stop.is_set()

        try:
            watch_loop(
                spec,
                client,
                handle,
                should_stop=stop.is_set,
                sleep=stop.wait,
                on_error=lambda m: log.error("%s", m),
            )
        finally:
            client.close()

    def stop(self) -> None:
        """Ask every watch to stop; each ends when its current query returns (the HTTP
        server closing ends them at shutdown). Threads are daemons: exit never waits."""
        self._stop.set()
        self._threads = []
