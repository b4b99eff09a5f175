"""`senate agent`: parse the config, print Consul's banner, run the agent until a signal.

Output follows Consul 0.7's `command/agent`: `==> Starting Senate agent...`, the join lines,
the banner, then `==> Log data will now stream in as it occurs:` after which the log lines held
back during start-up are written (Consul's gated writer). SIGINT and SIGTERM leave the cluster
gracefully as `skip_leave_on_interrupt` / `leave_on_terminate` decide; SIGHUP reloads; a second
signal during a graceful leave stops at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

from agent.agent import Agent, StartError
from agent.api import JoinError
from agent.config import AgentConfig, ConfigError, HelpRequested, flags_help, load
from agent.dns.config import DNSConfigError
from agent.fsutil import write_atomic
from agent.local.logfile import LogFile
from agent.local.logstream import LogHub, install, syslog_handler
from agent.logfmt import LEVEL_BY_NAME, formatter
from agent.version import VERSION

SIGNAL_NAMES = {signal.SIGINT: "interrupt", signal.SIGTERM: "terminated", signal.SIGHUP: "hangup"}


def _err(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def banner(agent: Agent) -> str:
    cfg = agent.config
    p = cfg.ports
    rows = [
        ("Version", f"'v{VERSION}'"),
        ("Node name", f"'{cfg.node_name}'"),
        ("Datacenter", f"'{cfg.datacenter}'"),
        ("Server", f"{str(cfg.server).lower()} (bootstrap: {str(cfg.bootstrap).lower()})"),
        (
            "Client Addr",
            f"{cfg.client_addr} (HTTP: {p.http}, HTTPS: {p.https}, DNS: {p.dns}, RPC: {p.rpc})",
        ),
        ("Cluster Addr", f"{agent.advertise} (LAN: {p.serf_lan}, WAN: {p.serf_wan})"),
        (
            # 0.7's line: RPC-TLS is verify_outgoing, TLS-Incoming verify_incoming (server RPC)
            "Gossip encrypt",
            f"{str(agent.gossip_encrypted).lower()}, "
            f"RPC-TLS: {str(cfg.internal_rpc_tls.verify_outgoing).lower()}, "
            f"TLS-Incoming: {str(cfg.internal_rpc_tls.verify_incoming).lower()}",
        ),
        ("Atlas", "<disabled>"),
    ]
    lines = ["==> Senate agent running!"]
    lines += [f"{label:>18}: {value}" for label, value in rows]
    lines += ["", "==> Log data will now stream in as it occurs:", ""]
    return "\n".join(lines)


def join_errors(exc: Exception) -> str:
    items = [line.strip().removeprefix("* ") for line in str(exc).splitlines() if line.strip()]
    items = [i for i in items if not i.endswith("error(s) occurred:")] or ["join failed"]
    return f"==> {len(items)} error(s) occurred:\n\n" + "\n".join(f"* {i}" for i in items)


class _PidFile:
    def __init__(self, path: str) -> None:
        self.path = Path(path) if path else None

    def write(self) -> None:
        if self.path is None:
            return
        write_atomic(self.path, str(os.getpid()), mode=0o666)  # Consul's 0666: umask decides

    def remove(self) -> None:
        if self.path is None:
            return
        with contextlib.suppress(OSError):
            if self.path.read_text().strip() == str(os.getpid()):
                self.path.unlink()


async def _retry_join(
    agent: Agent, addrs: tuple[str, ...], wan: bool, interval: float, max_tries: int
) -> bool:
    import logging

    log = logging.getLogger("agent")
    attempt = 0
    while True:
        attempt += 1
        log.info("Joining %scluster...", "WAN " if wan else "")
        try:
            n = await agent.join(list(addrs), wan=wan)
            log.info("Join %scompleted. Synced with %d initial agents", "-WAN " if wan else "", n)
            return True
        except JoinError as exc:
            if max_tries and attempt >= max_tries:
                log.error("max join %sretry exhausted, exiting", "-wan " if wan else "")
                return False
            log.warning(
                "Join %sfailed: %s, retrying in %s", "-WAN " if wan else "", exc, f"{interval:g}s"
            )
        await asyncio.sleep(interval)


def _dump_tasks() -> None:
    """SIGUSR2: print every asyncio task's stack to stderr (what is the agent waiting on?)."""
    for task in asyncio.all_tasks():
        sys.stderr.write(f"--- {task.get_name()}\n")
        task.print_stack(limit=12, file=sys.stderr)
    sys.stderr.flush()


async def serve(cfg: AgentConfig, argv: list[str], hub: LogHub) -> int:
    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR2, _dump_tasks)
    for w in cfg.warnings:
        _err(f"==> {w}")
    _out("==> Starting Senate agent...")
    agent = Agent(cfg, log_hub=hub, reload_config=lambda: load(argv))
    # SIGUSR1 dumps the in-memory metrics to the log, as Consul's agent does
    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, agent.telemetry.dump)
    try:
        await agent.start(sync=False)
    except StartError as exc:
        _err(f"==> {exc}")
        return 1
    except ImportError as exc:
        _err(f"==> Error starting agent: a part of the agent is missing from this build: {exc}")
        await agent.shutdown()
        return 1
    _out("==> Starting Senate agent RPC...")
    pid_file = _PidFile(cfg.pid_file)
    try:
        pid_file.write()
    except OSError as exc:
        _err(f"==> Error writing PID file: {exc.strerror}")
        await agent.shutdown()
        return 1
    try:
        return await _run(agent, cfg, hub)
    finally:
        await agent.shutdown()
        pid_file.remove()


async def _run(agent: Agent, cfg: AgentConfig, hub: LogHub) -> int:
    for wan, addrs in ((False, cfg.start_join), (True, cfg.start_join_wan)):
        if not addrs:
            continue
        _out(f"==> Joining {'WAN ' if wan else ''}cluster...")
        try:
            n = await agent.join(list(addrs), wan=wan)
        except JoinError as exc:
            _err(join_errors(exc))
            return 1
        _out(f"    Join completed. Synced with {n} initial agents")
    agent.start_sync()
    _out(banner(agent))
    hub.open_gate()

    loop = asyncio.get_running_loop()
    signals: asyncio.Queue[signal.Signals] = asyncio.Queue()
    for sig in SIGNAL_NAMES:
        loop.add_signal_handler(sig, signals.put_nowait, sig)
    join_failed = asyncio.Event()

    async def retry(addrs: tuple[str, ...], wan: bool) -> None:
        interval = cfg.retry_interval_wan if wan else cfg.retry_interval
        tries = cfg.retry_max_wan if wan else cfg.retry_max
        if not await _retry_join(agent, addrs, wan, interval, tries):
            join_failed.set()

    retry_tasks = []
    if cfg.retry_join:
        retry_tasks.append(asyncio.create_task(retry(cfg.retry_join, False)))
    if cfg.retry_join_wan and cfg.server:
        retry_tasks.append(asyncio.create_task(retry(cfg.retry_join_wan, True)))
    try:
        while True:
            sig_task = asyncio.create_task(signals.get())
            stop_task = asyncio.create_task(agent.shutdown_requested.wait())
            fail_task = asyncio.create_task(join_failed.wait())
            fatal_task = asyncio.create_task(agent.fatal.wait())
            waiting: set[asyncio.Task[Any]] = {sig_task, stop_task, fail_task, fatal_task}
            done, pending = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            for t in pending:
                t.cancel()
            if fatal_task in done:
                _err(f"==> Shutting down: {agent.fatal_error}")
                return 1
            if fail_task in done:
                return 1
            if stop_task in done:
                return 0
            sig = sig_task.result()
            _out(f"==> Caught signal: {SIGNAL_NAMES[sig]}")
            if sig == signal.SIGHUP:
                _out("==> Reloading configuration...")
                try:
                    await agent.reload()
                except ConfigError as exc:
                    _err(f"==> Failed to reload configs: {exc}")
                continue
            graceful = (sig == signal.SIGINT and not cfg.skip_leave_on_int) or (
                sig == signal.SIGTERM and cfg.leave_on_term
            )
            if not graceful:
                await agent.hand_off_leadership(timeout=2.0)
                return 1
            _out("==> Gracefully shutting down agent...")
            leave = asyncio.create_task(agent.graceful_leave())
            second = asyncio.create_task(signals.get())
            both: set[asyncio.Task[Any]] = {leave, second}
            done, _ = await asyncio.wait(both, return_when=asyncio.FIRST_COMPLETED)
            if second in done:
                leave.cancel()
                return 1
            second.cancel()
            return 0 if leave.exception() is None else 1
    finally:
        for t in retry_tasks:
            t.cancel()
        for sig in SIGNAL_NAMES:
            loop.remove_signal_handler(sig)


def log_file_handler(cfg: AgentConfig) -> logging.Handler:
    """log_file with Consul's rotation, in the stdout writer's format; OSError if unusable."""
    handler = LogFile(
        cfg.log_file,
        max_bytes=cfg.log_rotate_bytes,
        duration=cfg.log_rotate_duration,
        max_files=cfg.log_rotate_max_files,
        level=LEVEL_BY_NAME.get(cfg.log_level.lower(), logging.INFO),
    )
    handler.setFormatter(formatter(cfg.log_json))
    return handler


def run(argv: list[str]) -> int:
    try:
        cfg = load(argv)
    except HelpRequested:
        _err(flags_help())
        return 1
    except DNSConfigError as exc:  # a ConfigError worded as Consul's
        _err(f"==> Error parsing configuration: {exc}")
        return 1
    except ConfigError as exc:
        _err(f"==> {exc}")
        return 1
    hub = LogHub(sys.stdout)
    install(hub, cfg.log_level, log_json=cfg.log_json)
    if cfg.log_file:
        try:
            logging.getLogger().addHandler(log_file_handler(cfg))
        except OSError as exc:
            _err(f"==> Failed to set up logging: {exc}")
            return 1
    if cfg.enable_syslog:
        try:
            logging.getLogger().addHandler(syslog_handler(cfg.syslog_facility, cfg.log_level))
        except OSError as exc:
            _err(f"==> Syslog setup failed: {exc}")
            return 1
    loop_factory = None
    if os.environ.get("SENATE_EVENT_LOOP", "uvloop") != "asyncio":
        try:
            import uvloop

            loop_factory = uvloop.new_event_loop
        except ImportError:  # pragma: no cover - uvloop is a dependency where available
            pass
    profile_path = os.environ.get("SENATE_PROFILE")  # cProfile the whole run (benchmarks)
    profiler = None
    if profile_path:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    try:
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            return runner.run(serve(cfg, argv, hub))
    except KeyboardInterrupt:
        return 1
    finally:
        if profiler is not None and profile_path:
            profiler.disable()
            profiler.dump_stats(profile_path)
