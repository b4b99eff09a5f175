"""host:port addresses as Go's net package splits and joins them, IPv6 literals in brackets
("[::1]:8500"): the one reading of an address a user, a check or a peer gives the agent."""

from __future__ import annotations


class AddressError(ValueError):
    """Not a host:port address; the message is Go's (`address x: missing port in address`)."""


class InvalidPortError(AddressError):
    """The port is not a number from 1 to 65535 (`address x: invalid port`)."""


def split_host_port(addr: str, default_port: int | None = None) -> tuple[str, int]:
    """ "host:port" or "[v6]:port" -> (host, port), the brackets removed.

    Without `default_port` the port is required, as in Go's net.SplitHostPort: "host" is
    "missing port in address", "::1:80" "too many colons in address". With it, an address
    without a port gets `default_port`: "host", "[v6]", and a bare IPv6 literal such as
    "::1" (more than one colon outside brackets is never a port, as memberlist reads a join
    address). A port is ASCII digits, 1 to 65535, else InvalidPortError; "host:" has an
    empty, invalid port. Nothing is trimmed; the host may be empty (":8500")."""
    if addr.startswith("["):
        end = addr.find("]")
        if end < 0:
            raise AddressError(f"address {addr}: missing ']' in address")
        host, rest = addr[1:end], addr[end + 1 :]
        if not rest and default_port is not None:
            return host, default_port
        if not rest.startswith(":"):
            raise AddressError(f"address {addr}: missing port in address")
        port_text = rest[1:]
    else:
        colons = addr.count(":")
        if colons != 1:
            if default_port is not None:
                return addr, default_port
            reason = "missing port" if colons == 0 else "too many colons"
            raise AddressError(f"address {addr}: {reason} in address")
        host, _, port_text = addr.partition(":")
    if not (port_text.isascii() and port_text.isdigit() and 0 < int(port_text) < 65536):
        raise InvalidPortError(f"address {addr}: invalid port")
    return host, int(port_text)


def join_host_port(host: str, port: int | str) -> str:
    """Go's net.JoinHostPort: "host:port", or "[host]:port" when the host has a colon (IPv6)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
