"""Requests a browser makes on a page's behalf: refused unless the page is one the agent
serves or the operator allowed (`http_config.allowed_origins`, or the origins a
`http_config.response_headers` Access-Control-Allow-Origin names).

A command-line client or a library sends neither `Origin` nor `Sec-Fetch-Site`, and is not
concerned. A browser sends `Origin` on every cross-origin request and on every POST, PUT and
DELETE, and `Sec-Fetch-Site` on everything (current browsers). So a page of another site can
no longer write KV with a `text/plain` POST, and a page reached through DNS rebinding (its
own name resolving to the agent, so same-origin in the browser's eyes) is refused because its
Host is not one the agent is known by: an IP address, `localhost`, the node's name or a name
under the agent's DNS domain. Consul itself does not check; this is protection a browser
user gets by default.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from urllib.parse import urlsplit

from aiohttp import web

#: a request an allowed origin may make in any case
ANY = "*"


class BrowserGuard:
    def __init__(self, allowed: Iterable[str], node_name: str, domain: str) -> None:
        self.allowed = frozenset(o.rstrip("/").lower() for o in allowed)
        self.node_name = node_name.lower()
        self.domain = domain.strip(".").lower()

    def refusal(self, request: web.Request) -> str | None:
        """Why the request is refused, or None when it may go on."""
        headers = request.headers
        origin = headers.get("Origin")
        fetch_site = headers.get("Sec-Fetch-Site")
        if origin is None and fetch_site is None:
            return None  # not a browser's request on a page's behalf
        if origin is not None and (ANY in self.allowed or origin.lower() in self.allowed):
            return None
        if origin not in (None, "null") and not _same_origin(origin, request):
            return f"Origin {origin} is not allowed (http_config.allowed_origins)"
        if fetch_site not in (None, "same-origin", "none"):
            return f"a {fetch_site} request is not allowed (http_config.allowed_origins)"
        if origin == "null":
            return "Origin null is not allowed"
        if not self._known_host(request.host):
            return f"Host {request.host} is not a name this agent is known by"
        return None

    def _known_host(self, host: str) -> bool:
        name = urlsplit(f"//{host}").hostname or ""
        try:
            ipaddress.ip_address(name)
            return True
        except ValueError:
            pass
        name = name.rstrip(".").lower()
        return (
            name in ("localhost", self.node_name)
            or name.endswith(".localhost")
            or (bool(self.domain) and (name == self.domain or name.endswith("." + self.domain)))
        )


def _same_origin(origin: str, request: web.Request) -> bool:
    parts = urlsplit(origin)
    return parts.scheme == request.scheme and parts.netloc.lower() == request.host.lower()


def allowed_by_cors(response_headers: Iterable[tuple[str, str]]) -> list[str]:
    """The origins a configured Access-Control-Allow-Origin response header names."""
    return [
        v.strip()
        for k, v in response_headers
        if k.lower() == "access-control-allow-origin" and v.strip()
    ]
