"""agent.netaddr: host:port as Go's net.SplitHostPort / JoinHostPort, IPv6 in brackets."""

from __future__ import annotations

import pytest

from agent.netaddr import AddressError, InvalidPortError, join_host_port, split_host_port


@pytest.mark.parametrize(
    ("addr", "expected"),
    [
        ("127.0.0.1:8500", ("127.0.0.1", 8500)),
        ("localhost:1", ("localhost", 1)),
        ("[::1]:8500", ("::1", 8500)),
        ("[fe80::1%eth0]:8301", ("fe80::1%eth0", 8301)),
        ("[2001:db8::1]:65535", ("2001:db8::1", 65535)),
        ("[10.0.0.1]:53", ("10.0.0.1", 53)),
        (":8500", ("", 8500)),
        ("host:0080", ("host", 80)),
    ],
)
def test_split_with_a_port(addr: str, expected: tuple[str, int]) -> None:
    assert split_host_port(addr) == expected
    assert split_host_port(addr, 1) == expected


@pytest.mark.parametrize(
    ("addr", "message"),
    [
        ("host", "address host: missing port in address"),
        ("", "address : missing port in address"),
        ("::1", "address ::1: too many colons in address"),
        ("2001:db8::1:8500", "address 2001:db8::1:8500: too many colons in address"),
        ("[::1]", "address [::1]: missing port in address"),
        ("[::1]8500", "address [::1]8500: missing port in address"),
        ("[::1:8500", "address [::1:8500: missing ']' in address"),
    ],
)
def test_a_port_is_required_without_a_default(addr: str, message: str) -> None:
    with pytest.raises(AddressError) as err:
        split_host_port(addr)
    assert str(err.value) == message
    assert not isinstance(err.value, InvalidPortError)


def test_a_default_port_fills_in_a_missing_one() -> None:
    assert split_host_port("host", 8301) == ("host", 8301)
    assert split_host_port("10.0.0.1", 8301) == ("10.0.0.1", 8301)
    assert split_host_port("[::1]", 8301) == ("::1", 8301)
    # Outside brackets, more than one colon is an IPv6 literal, never a port (memberlist).
    assert split_host_port("::1", 8301) == ("::1", 8301)
    assert split_host_port("2001:db8::1:8500", 8301) == ("2001:db8::1:8500", 8301)
    with pytest.raises(AddressError, match="missing ']'"):
        split_host_port("[::1", 8301)
    with pytest.raises(AddressError, match="missing port"):
        split_host_port("[::1]x", 8301)


@pytest.mark.parametrize(
    "addr",
    ["h:", "h:0", "h:65536", "h:http", "h:+80", "h: 80", "h:8_0", "h:١", "[::1]:", "[::1]:x"],
)
def test_bad_ports(addr: str) -> None:
    for default in (None, 7):
        with pytest.raises(InvalidPortError) as err:
            split_host_port(addr, default)
        assert str(err.value) == f"address {addr}: invalid port"
    assert issubclass(InvalidPortError, ValueError)


@pytest.mark.parametrize(
    ("host", "port", "joined"),
    [
        ("127.0.0.1", 8500, "127.0.0.1:8500"),
        ("example.com", 80, "example.com:80"),
        ("::1", 8500, "[::1]:8500"),
        ("fe80::1%eth0", 8301, "[fe80::1%eth0]:8301"),
        ("", 8500, ":8500"),
    ],
)
def test_join_round_trips(host: str, port: int, joined: str) -> None:
    assert join_host_port(host, port) == joined
    assert split_host_port(joined) == (host, port)
