"""`senate debug`: capture what an operator sends when asking for help (Consul's `consul debug`).

Static information first (agent: /v1/agent/self, host: /v1/agent/host, members:
/v1/agent/members), then for -duration the agent's logs at DEBUG (/v1/agent/monitor) and, every
-interval, a metrics sample (/v1/agent/metrics); all of it under -output, archived as
<output>.tar.gz unless -archive=false. Files: index.json (what was captured), agent.json,
host.json, members.json, metrics.json (one sample a line), consul.log.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tarfile
import threading
import time
from pathlib import Path
from typing import Any

from agent.cli.common import (
    Parser,
    UsageError,
    add_http_client_flags,
    err,
    http_client,
    out,
    run_guarded,
)
from agent.client import APIError, ClientError, HTTPClient
from agent.durations import SECOND, format_duration, parse_seconds

#: Consul's limits and defaults (command/debug)
MIN_INTERVAL = 5.0
MIN_DURATION = 10.0
DEFAULT_INTERVAL = 30.0
DEFAULT_DURATION = 120.0
TARGETS = ("agent", "host", "members", "metrics", "logs")


def debug_parser() -> Parser:
    p = Parser(
        "debug",
        "senate debug [options]",
        "Monitors a Senate agent for the specified period of time, recording\n"
        "information about the agent, cluster, and environment to an archive\n"
        "written to the current directory.\n\n"
        "    $ senate debug -duration=2m -interval=30s -capture=metrics -capture=logs",
    )
    add_http_client_flags(p)
    p.flag("interval", default="30s", help="The interval in which to capture dynamic information")
    p.flag("duration", default="2m", help="The total time to record information")
    p.flag(
        "capture",
        action="append",
        default=None,
        help=f"One or more types of information to capture ({', '.join(TARGETS)}; default all)",
    )
    p.flag("output", default=None, help="The path to the compressed archive (default: here)")
    p.flag(
        "archive",
        action="store_true",
        default=True,
        help="Compress the output into a .tar.gz (default true; -archive=false keeps a directory)",
    )
    return p


def _seconds(flag: str, text: str) -> float:
    try:
        return parse_seconds(text)
    except ValueError:
        raise UsageError(f'invalid value "{text}" for flag -{flag}: parse error') from None


def _write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2) + "\n")


def _capture_logs(client: HTTPClient, into: list[str], stop: threading.Event) -> None:
    try:
        for line in client.stream("GET", "/v1/agent/monitor", {"loglevel": "DEBUG"}):
            into.append(line)
            if stop.is_set():
                return
    except ClientError:
        return


def _debug(args: argparse.Namespace) -> int:
    interval = _seconds("interval", args.interval)
    duration = _seconds("duration", args.duration)
    if interval < MIN_INTERVAL:
        raise UsageError(
            f"interval must be longer than {format_duration(int(MIN_INTERVAL * SECOND))}"
        )
    if duration < MIN_DURATION:
        raise UsageError(
            f"duration must be longer than {format_duration(int(MIN_DURATION * SECOND))}"
        )
    if duration < interval:
        raise UsageError("duration must be longer than interval")
    targets = tuple(args.capture or TARGETS)
    unknown = [t for t in targets if t not in TARGETS]
    if unknown:
        raise UsageError(f"must capture one of {', '.join(TARGETS)}; got {unknown[0]!r}")
    archive = bool(args.archive)
    output = Path(args.output or f"consul-debug-{int(time.time())}")
    if output.exists() or Path(f"{output}.tar.gz").exists():
        err(f"Output directory already exists: {output}")
        return 1
    client = http_client(args)
    try:
        me = client.get_json("/v1/agent/self")
    except APIError as exc:
        err(f"Error querying target agent: {exc}. Verify connectivity and agent address.")
        return 1
    version = str((me.get("Config") or {}).get("Version", ""))
    output.mkdir(parents=True)
    out("==> Starting debugger and capturing static information...")
    out(f"     Agent Version: '{version}'")
    out(f"          Interval: '{format_duration(int(interval * SECOND))}'")
    out(f"          Duration: '{format_duration(int(duration * SECOND))}'")
    out(f"            Output: '{output}.tar.gz'" if archive else f"            Output: '{output}'")
    out(f"           Capture: '{', '.join(targets)}'")
    static = {"agent": "/v1/agent/self", "host": "/v1/agent/host", "members": "/v1/agent/members"}
    for target, path in static.items():
        if target not in targets:
            continue
        try:
            _write_json(output / f"{target}.json", client.get_json(path))
        except APIError as exc:  # e.g. host needs operator:read: the rest is still useful
            err(f"[WARN] {target}: {exc}")
    lines: list[str] = []
    stop = threading.Event()
    if "logs" in targets:
        # its own connection (the stream's); the thread ends with the process if no line comes
        threading.Thread(
            target=_capture_logs, args=(http_client(args), lines, stop), daemon=True
        ).start()
    start = time.monotonic()
    samples: list[str] = []
    n = 0
    while True:
        if "metrics" in targets:
            out(f"==> Capturing metrics ({n})")
            samples.append(json.dumps(client.get_json("/v1/agent/metrics")))
        n += 1
        remaining = duration - (time.monotonic() - start)
        if remaining <= 0:
            break
        time.sleep(min(interval, remaining))  # a CLI waiting out its capture interval
    stop.set()
    if "metrics" in targets:
        (output / "metrics.json").write_text("\n".join(samples) + "\n")
    if "logs" in targets:
        (output / "consul.log").write_text("".join(line + "\n" for line in list(lines)))
    _write_json(
        output / "index.json",
        {
            "Version": 2,
            "AgentVersion": version,
            "Interval": format_duration(int(interval * SECOND)),
            "Duration": format_duration(int(duration * SECOND)),
            "Targets": list(targets),
        },
    )
    if archive:
        with tarfile.open(f"{output}.tar.gz", "w:gz") as tar:
            tar.add(output, arcname=output.name)
        shutil.rmtree(output)
        out(f"==> Saved debug archive: {output}.tar.gz")
    else:
        out(f"==> Saved debug directory: {output}")
    return 0


def run(argv: list[str]) -> int:
    return run_guarded(debug_parser(), argv, _debug)
