"""The HTTP and HTTPS listeners of the API, with Consul's connection limits: at most
`limits.http_max_conns_per_client` connections per client address (Consul's default 200; the
one past it is closed at once, logged once a minute per client), and a connection that sends
no request is closed after `HTTP_IDLE_TIMEOUT` (aiohttp's own default is an hour, so ~1,000
idle connections held the file descriptors of the whole API)."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from agent.http.app import make_app
from agent.limits import ConnsPerClient
from agent.tasks import listen

if TYPE_CHECKING:
    from agent.api import AgentAPI
    from agent.config.model import AgentConfig

log = logging.getLogger("http")

#: seconds a connection may stay open without a request in progress (before its first one,
#: and between keep-alive requests; a blocking query in progress is not idle)
HTTP_IDLE_TIMEOUT = 75.0


class _Gate(asyncio.Protocol):
    """In front of aiohttp's RequestHandler (whose slots cannot be wrapped): a connection the
    limiter refuses is aborted before aiohttp sees it; the others are passed through."""

    def __init__(self, inner: RequestHandler, limiter: ConnsPerClient) -> None:
        self.inner: RequestHandler | None = inner
        self.limiter = limiter
        self.client = ""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername")
        self.client = str(peer[0]) if isinstance(peer, tuple) else "?"
        if self.inner is None or not self.limiter.admit(self.client):
            self.inner = None
            if self.limiter.log_due.due(self.client):
                log.error(
                    "rejecting HTTP conn from %s because http_max_conns_per_client (%d) exceeded",
                    self.client,
                    self.limiter.limit,
                )
            if isinstance(transport, asyncio.Transport):
                transport.abort()
            else:
                transport.close()
            return
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self.inner is not None:
            self.inner.data_received(data)

    def eof_received(self) -> None:
        if self.inner is not None:
            self.inner.eof_received()

    def pause_writing(self) -> None:
        if self.inner is not None:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.inner is not None:
            self.inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        inner, self.inner = self.inner, None
        if inner is not None:
            self.limiter.release(self.client)
            inner.connection_lost(exc)


class LimitedTCPSite(web.TCPSite):
    """A TCPSite whose connections pass the ConnsPerClient first."""

    def __init__(self, runner: web.AppRunner, limiter: ConnsPerClient, *a: Any, **kw: Any) -> None:
        super().__init__(runner, *a, **kw)
        self._limiter = limiter

    async def start(self) -> None:
        await web.BaseSite.start(self)
        server = self._runner.server
        assert server is not None
        limiter = self._limiter

        def protocol() -> asyncio.Protocol:
            return _Gate(server(), limiter)

        self._server = await asyncio.get_running_loop().create_server(
            protocol,
            self._host,
            self._port,
            ssl=self._ssl_context,
            backlog=self._backlog,
            reuse_address=self._reuse_address,
            reuse_port=self._reuse_port,
        )


async def start_http(agent: AgentAPI, cfg: AgentConfig) -> web.AppRunner | None:
    """Serve the API on `ports.http` and `ports.https` of each client address; the runner (to
    clean up on shutdown), or None when both ports are off."""
    if cfg.ports.http <= 0 and cfg.ports.https <= 0:
        return None
    runner = web.AppRunner(
        make_app(
            agent,
            response_headers=cfg.http_response_headers,
            allowed_origins=cfg.http_allowed_origins,
            node_name=cfg.node_name,
            domain=cfg.domain,
        ),
        access_log=None,
        handle_signals=False,
        keepalive_timeout=HTTP_IDLE_TIMEOUT,
    )
    await runner.setup()
    try:
        await _listen(runner, cfg)
    except BaseException:
        await runner.cleanup()
        raise
    return runner


async def _listen(runner: web.AppRunner, cfg: AgentConfig) -> None:
    limiter = ConnsPerClient(cfg.http_max_conns_per_client)
    if cfg.ports.http > 0:
        for host in cfg.http_addr.split():
            site = LimitedTCPSite(runner, limiter, host, cfg.ports.http, reuse_address=True)
            await listen(site.start(), f"{host}:{cfg.ports.http} (HTTP)")
    if cfg.ports.https > 0:
        from agent.tlsutil import https_context

        ctx = https_context(cfg.https_tls)
        for host in cfg.https_addr.split():
            site = LimitedTCPSite(
                runner, limiter, host, cfg.ports.https, reuse_address=True, ssl_context=ctx
            )
            await listen(site.start(), f"{host}:{cfg.ports.https} (HTTPS)")
