"""agent/http/origin.py: which browser requests are let through, and why the others are not."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import make_mocked_request

from agent.http.origin import BrowserGuard, allowed_by_cors

GUARD = BrowserGuard(["https://ops.example"], node_name="node1", domain="consul.")


def refusal(host: str, **headers: str) -> str | None:
    hdrs = {"Host": host, **{k.replace("_", "-"): v for k, v in headers.items()}}
    return GUARD.refusal(make_mocked_request("PUT", "/v1/kv/x", headers=hdrs))


@pytest.mark.parametrize(
    ("host", "headers"),
    [
        ("127.0.0.1:8500", {}),  # curl, a library: no browser headers at all
        ("anything.example:8500", {}),  # ... by whatever name they reach the agent
        ("127.0.0.1:8500", {"Origin": "http://127.0.0.1:8500"}),
        ("[::1]:8500", {"Origin": "http://[::1]:8500", "Sec_Fetch_Site": "same-origin"}),
        ("localhost:8500", {"Sec_Fetch_Site": "none"}),  # typed into the address bar
        ("node1:8500", {"Origin": "http://node1:8500"}),
        ("consul.service.consul:8500", {"Origin": "http://consul.service.consul:8500"}),
        ("10.0.0.5:8500", {"Origin": "https://ops.example"}),  # allowed by configuration
    ],
)
def test_let_through(host: str, headers: dict[str, str]) -> None:
    assert refusal(host, **headers) is None


@pytest.mark.parametrize(
    ("host", "headers", "why"),
    [
        ("127.0.0.1:8500", {"Origin": "http://evil.example"}, "Origin http://evil.example"),
        ("127.0.0.1:8500", {"Origin": "https://127.0.0.1:8500"}, "is not allowed"),  # scheme
        ("127.0.0.1:8500", {"Sec_Fetch_Site": "cross-site"}, "a cross-site request"),
        ("127.0.0.1:8500", {"Sec_Fetch_Site": "same-site"}, "a same-site request"),
        ("127.0.0.1:8500", {"Origin": "null"}, "Origin null"),
        # DNS rebinding: same-origin in the browser's eyes, but a name the agent is not known by
        ("evil.example:8500", {"Origin": "http://evil.example:8500"}, "Host evil.example:8500"),
        ("evil.example:8500", {"Sec_Fetch_Site": "same-origin"}, "is not a name"),
        ("consul.evil.example", {"Sec_Fetch_Site": "same-origin"}, "is not a name"),
    ],
)
def test_refused(host: str, headers: dict[str, str], why: str) -> None:
    got = refusal(host, **headers)
    assert got is not None and why in got


def test_a_cors_header_in_the_configuration_allows_its_origin() -> None:
    headers = [("Access-Control-Allow-Origin", "https://ui.example"), ("X-Other", "v")]
    assert allowed_by_cors(headers) == ["https://ui.example"]
    star = BrowserGuard(allowed_by_cors([("access-control-allow-origin", "*")]), "n", "consul")
    req = make_mocked_request("PUT", "/", headers={"Host": "h:1", "Origin": "http://any.example"})
    assert star.refusal(req) is None
