from __future__ import annotations

import pytest
from dnslib import DNSLabel

from agent.dns.names import (
    ApexQuery,
    InvalidQuery,
    NodeQuery,
    OutsideQuery,
    PreparedQueryName,
    Query,
    ReverseQuery,
    ServiceQuery,
    classify,
    domain_labels,
    reverse_name,
)

CONSUL = domain_labels("consul.")


def q(name: str, domain: tuple[bytes, ...] = CONSUL) -> Query:
    return classify(DNSLabel(name).label, domain, "dc1")


@pytest.mark.parametrize(
    ("name", "want"),
    [
        ("n1.node.consul.", NodeQuery("dc1", "n1")),
        ("N1.NODE.Consul.", NodeQuery("dc1", "N1")),
        ("n1.node.dc2.consul.", NodeQuery("dc2", "n1")),
        ("a.b.node.consul.", NodeQuery("dc1", "a.b")),
        ("web.service.consul.", ServiceQuery("dc1", "web", "")),
        ("prod.web.service.consul.", ServiceQuery("dc1", "web", "prod")),
        ("prod.web.service.east.consul.", ServiceQuery("east", "web", "prod")),
        ("_web._tcp.service.consul.", ServiceQuery("dc1", "web", "")),
        ("_web._prod.service.consul.", ServiceQuery("dc1", "web", "prod")),
        ("consul.service.consul.", ServiceQuery("dc1", "consul", "")),
        ("web.query.consul.", PreparedQueryName("dc1", "web")),
        ("web.query.dc2.consul.", PreparedQueryName("dc2", "web")),
        ("geo.db.query.consul.", PreparedQueryName("dc1", "geo.db")),
        ("query.consul.", InvalidQuery("query")),
        ("consul.", ApexQuery()),
        ("node.consul.", InvalidQuery("node")),
        ("service.consul.", InvalidQuery("service")),
        ("foo.bar.consul.", InvalidQuery("foo.bar")),
        ("x.y.dc.consul.", InvalidQuery("x.y.dc")),
        ("server1.mydc.", OutsideQuery()),
        ("example.com.", OutsideQuery()),
        ("notconsul.", OutsideQuery()),
        ("1.0.0.127.in-addr.arpa.", ReverseQuery("127.0.0.1")),
        ("0.0.10.in-addr.arpa.", ReverseQuery("")),
        ("300.0.0.10.in-addr.arpa.", ReverseQuery("")),
        ("x.ip6.arpa.", ReverseQuery("")),
        (
            "6.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa.",
            ReverseQuery("fd00::6"),
        ),
    ],
)
def test_classify_follows_consul_dispatch(name: str, want: Query) -> None:
    assert q(name) == want


def test_custom_multi_label_domain() -> None:
    dom = domain_labels("Service.Example.")
    assert q("web.service.service.example.", dom) == ServiceQuery("dc1", "web", "")
    assert q("web.service.consul.", dom) == OutsideQuery()


def test_reverse_name() -> None:
    assert reverse_name("10.1.2.3") == "3.2.1.10.in-addr.arpa."
    name = reverse_name("fd00::6")
    assert name.endswith(".d.f.ip6.arpa.") and q(name) == ReverseQuery("fd00::6")
