"""go-sockaddr templates in address settings, as Consul accepts them since 0.7.2:
`-bind '{{ GetPrivateIP }}'`, `{{ GetInterfaceIP "eth0" }}`,
`{{ GetPrivateInterfaces | include "network" "10.0.0.0/8" | attr "address" }}`.

A template is `{{ pipeline }}` inside an otherwise literal string. A pipeline is commands joined
by `|`; each command is a function name and its arguments (double-quoted strings or bare
numbers), and the value of the previous command is its last argument, as in Go's text/template.
Functions that return interfaces yield a list of `IfAddr`; the filters (`include`, `exclude`,
`sort`, `limit`, `offset`, `unique`) take and return such lists; `attr` and `join` turn them
into text, and a list left at the end renders as its addresses separated by spaces.
"""

from __future__ import annotations

import ipaddress
import re
import shlex
import socket
from dataclasses import dataclass
from typing import Any

import psutil

_TEMPLATE = re.compile(r"\{\{(.*?)\}\}", re.S)
#: RFC 6890 special-purpose ranges go-sockaddr calls private
_PRIVATE = tuple(
    ipaddress.ip_network(n)
    for n in (
        "10.0.0.0/8",
        "100.64.0.0/10",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "fc00::/7",
    )
)


class TemplateError(ValueError):
    """A template cannot be parsed or evaluated; the message says what and where."""


@dataclass(frozen=True, slots=True)
class IfAddr:
    name: str
    address: ipaddress.IPv4Address | ipaddress.IPv6Address
    network: ipaddress.IPv4Network | ipaddress.IPv6Network
    up: bool
    loopback: bool

    @property
    def private(self) -> bool:
        return any(self.address in n for n in _PRIVATE if n.version == self.address.version)

    @property
    def public(self) -> bool:
        return self.address.is_global

    def attr(self, name: str) -> str:
        values = {
            "address": str(self.address),
            "name": self.name,
            "network": str(self.network.network_address),
            "mask": str(self.network.netmask),
            "size": str(self.network.num_addresses),
            "type": f"IPv{self.address.version}",
            "string": f"{self.address}/{self.network.prefixlen}",
            "flags": " ".join(f for f, on in (("up", self.up), ("loopback", self.loopback)) if on),
        }
        if name not in values:
            raise TemplateError(f"unsupported attribute name {name!r}")
        return values[name]


def interfaces() -> list[IfAddr]:
    """Every address of every interface on this host, in the kernel's interface order."""
    stats = psutil.net_if_stats()
    out: list[IfAddr] = []
    for name, addrs in psutil.net_if_addrs().items():
        st = stats.get(name)
        up = bool(st and st.isup)
        for a in addrs:
            if a.family not in (socket.AF_INET, socket.AF_INET6) or not a.netmask:
                continue
            addr = a.address.split("%", 1)[0]
            try:
                net = ipaddress.ip_network(f"{addr}/{a.netmask}", strict=False)
            except ValueError:
                continue
            ip = ipaddress.ip_address(addr)
            out.append(IfAddr(name, ip, net, up, ip.is_loopback))
    return out


def _by_size(addrs: list[IfAddr]) -> list[IfAddr]:
    # go-sockaddr sorts an interface's addresses by network size, the largest network first
    return sorted(addrs, key=lambda a: (a.address.version, a.network.prefixlen))


def _first_v4(addrs: list[IfAddr]) -> str:
    for a in addrs:
        if a.address.version == 4 and a.up:
            return str(a.address)
    return ""


def _include(kind: str, value: str, addrs: list[IfAddr], keep: bool = True) -> list[IfAddr]:
    def test(a: IfAddr) -> bool:
        if kind == "name":
            return re.fullmatch(value, a.name) is not None
        if kind == "network":
            try:
                return a.address in ipaddress.ip_network(value, strict=False)
            except ValueError:
                raise TemplateError(f"invalid network {value!r}") from None
        if kind == "type":
            return value.lower() in (f"ipv{a.address.version}", "ip")
        if kind == "flags":
            flags = {"up": a.up, "down": not a.up, "loopback": a.loopback}
            return flags.get(value, False)
        if kind == "rfc":
            return value in ("1918", "6890") and a.private
        if kind in ("private", "public"):
            return a.private if kind == "private" else a.public
        raise TemplateError(f"unsupported include/exclude selector {kind!r}")

    return [a for a in addrs if test(a) == keep]


def _sort(keys: str, addrs: list[IfAddr]) -> list[IfAddr]:
    out = list(addrs)
    for key in reversed([k.strip() for k in keys.split(",") if k.strip()]):
        reverse = key.startswith("-")
        key = key.lstrip("+-")
        if key == "address":
            out.sort(key=lambda a: (a.address.version, int(a.address)), reverse=reverse)
        elif key == "name":
            out.sort(key=lambda a: a.name, reverse=reverse)
        elif key == "size":
            out.sort(key=lambda a: a.network.prefixlen, reverse=not reverse)
        elif key == "type":
            out.sort(key=lambda a: a.address.version, reverse=reverse)
        elif key in ("private", "public"):
            out.sort(key=lambda a: not getattr(a, key), reverse=reverse)
        else:
            raise TemplateError(f"unsupported sort key {key!r}")
    return out


def _call(name: str, args: list[Any]) -> Any:
    def want(n: int) -> None:
        if len(args) != n:
            raise TemplateError(f"wrong number of args for {name}: want {n} got {len(args)}")

    if name in ("GetAllInterfaces", "GetPrivateInterfaces", "GetPublicInterfaces"):
        want(0)
        all_ = [a for a in interfaces() if a.up]
        if name == "GetPrivateInterfaces":
            return _by_size([a for a in all_ if a.private])
        if name == "GetPublicInterfaces":
            return _by_size([a for a in all_ if a.public])
        return all_
    if name == "GetDefaultInterfaces":
        want(0)
        return [a for a in interfaces() if a.up and not a.loopback]
    if name == "GetPrivateIP":
        want(0)
        return _first_v4(_by_size([a for a in interfaces() if a.private]))
    if name == "GetPrivateIPs":
        want(0)
        return " ".join(str(a.address) for a in interfaces() if a.private and a.up)
    if name == "GetPublicIP":
        want(0)
        return _first_v4([a for a in interfaces() if a.public])
    if name == "GetPublicIPs":
        want(0)
        return " ".join(str(a.address) for a in interfaces() if a.public and a.up)
    if name in ("GetInterfaceIP", "GetInterfaceIPs"):
        want(1)
        mine = _by_size([a for a in interfaces() if a.name == str(args[0])])
        if name == "GetInterfaceIP":
            return next((str(a.address) for a in mine if a.address.version == 4), "")
        return " ".join(str(a.address) for a in mine)
    if name in ("include", "exclude"):
        if len(args) != 3:
            raise TemplateError(f"wrong number of args for {name}: want 3 got {len(args)}")
        return _include(str(args[0]), str(args[1]), _addrs(name, args[2]), name == "include")
    if name == "sort":
        want(2)
        return _sort(str(args[0]), _addrs(name, args[1]))
    if name in ("limit", "offset"):
        want(2)
        try:
            n = int(args[0])
        except ValueError:
            raise TemplateError(f"{name}: expected a number, got {args[0]!r}") from None
        addrs = _addrs(name, args[1])
        return addrs[:n] if name == "limit" else addrs[n:]
    if name == "unique":
        want(2)
        seen: set[str] = set()
        out = []
        for a in _addrs(name, args[1]):
            v = a.attr(str(args[0]))
            if v not in seen:
                seen.add(v)
                out.append(a)
        return out
    if name == "attr":
        want(2)
        value = args[1]
        if isinstance(value, IfAddr):
            return value.attr(str(args[0]))
        return " ".join(a.attr(str(args[0])) for a in _addrs(name, value))
    if name == "join":
        want(3)
        return str(args[1]).join(a.attr(str(args[0])) for a in _addrs(name, args[2]))
    raise TemplateError(f'function "{name}" not defined')


def _addrs(fn: str, value: Any) -> list[IfAddr]:
    if isinstance(value, list) and all(isinstance(a, IfAddr) for a in value):
        return value
    raise TemplateError(f"{fn}: expected a list of interfaces, got {value!r}")


def _render(value: Any) -> str:
    if isinstance(value, list):
        return " ".join(str(a.address) for a in value)
    return str(value)


def _eval(pipeline: str) -> str:
    value: Any = None
    first = True
    for command in pipeline.split("|"):
        try:
            words = shlex.split(command, posix=True)
        except ValueError as exc:
            raise TemplateError(str(exc)) from None
        if not words:
            raise TemplateError("missing command in pipeline")
        args: list[Any] = words[1:]
        if not first:
            args.append(value)
        value = _call(words[0], args)
        first = False
    return _render(value)


def render(text: str) -> str:
    """`text` with each `{{ ... }}` replaced by its value; text without a template as it is."""
    if "{{" not in text:
        return text
    try:
        return _TEMPLATE.sub(lambda m: _eval(m.group(1)), text).strip()
    except TemplateError as exc:
        raise TemplateError(f"unable to parse address template {text!r}: {exc}") from None
