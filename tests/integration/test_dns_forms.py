"""Issue 17's DNS on a real `senate agent -dev`, asked with dig: EDNS0 with and without
(+bufsize=4096, +noedns), every name form (.addr., node IDs, .virtual., tags, RFC 2782 with
and without .service), SRV targets of services with their own address, node meta in TXT,
NS and SOA with the soa block, alt_domain, a_record_limit, use_cache, the recursors'
order and an upstream SERVFAIL, and bad packets (FORMERR, NOTIMP, dropped) that leave the
agent answering."""

from __future__ import annotations

import json
import re
import shutil
import socket
import struct
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from dnslib import QTYPE, RCODE, RR, A, DNSRecord
from harness import Cluster, Node, wait_for

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(shutil.which("dig") is None, reason="needs dig (Debian bind9-dnsutils)"),
]

IP = "127.6.0.41"
UPSTREAM_BAD, UPSTREAM_GOOD = "127.6.0.42", "127.6.0.43"
PORT = 8600
NODE_ID = "3f1b2c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d"


def dig(*args: str) -> str:
    cmd = ["dig", f"@{IP}", "-p", str(PORT), "+time=5", "+tries=1", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=20).stdout


def short(*args: str) -> list[str]:
    return sorted(line for line in dig("+short", *args).splitlines() if line)


def section(out: str, name: str) -> list[str]:
    """The records of one section of dig's output (ANSWER, AUTHORITY, ADDITIONAL)."""
    m = re.search(rf";; {name} SECTION:\n(.*?)(?:\n\n|\Z)", out, re.S)
    return [] if m is None else [line.split() for line in m.group(1).splitlines()]  # type: ignore[misc]


def raw(packet: bytes) -> DNSRecord | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(2.0)
        s.sendto(packet, (IP, PORT))
        try:
            return DNSRecord.parse(s.recv(65535))
        except TimeoutError:
            return None


@pytest.fixture
def upstreams() -> Iterator[list[str]]:
    """Two recursors: the first answers SERVFAIL, the second 192.0.2.9."""
    socks, seen, stop = [], [], threading.Event()

    def serve(sock: socket.socket, rcode: int) -> None:
        while not stop.is_set():
            try:
                data, addr = sock.recvfrom(4096)
            except TimeoutError:
                continue
            req = DNSRecord.parse(data)
            seen.append(f"{sock.getsockname()[0]} {req.q.qname}")
            reply = req.reply()
            reply.header.rcode = rcode
            if rcode == RCODE.NOERROR:
                reply.add_answer(RR(req.q.qname, QTYPE.A, ttl=30, rdata=A("192.0.2.9")))
            sock.sendto(reply.pack(), addr)

    threads = []
    for ip, rcode in ((UPSTREAM_BAD, RCODE.SERVFAIL), (UPSTREAM_GOOD, RCODE.NOERROR)):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((ip, 53))
        sock.settimeout(0.1)
        socks.append(sock)
        threads.append(threading.Thread(target=serve, args=(sock, rcode), daemon=True))
        threads[-1].start()
    try:
        yield seen
    finally:
        stop.set()
        for t in threads:
            t.join(5)
        for s in socks:
            s.close()


def register(node: Node, body: dict[str, object]) -> None:
    status, text, _ = node.request("PUT", "/v1/catalog/register", json.dumps(body).encode())
    assert status == 200, text


def test_dns_name_forms_edns_and_settings(
    cluster: Cluster, tmp_path: Path, upstreams: list[str]
) -> None:
    conf = tmp_path / "dns.json"
    conf.write_text(
        json.dumps(
            {
                "alt_domain": "alt",
                "recursors": [UPSTREAM_BAD, UPSTREAM_GOOD],
                "dns_config": {
                    "a_record_limit": 5,
                    "use_cache": True,
                    "cache_max_age": "10s",
                    "recursor_strategy": "sequential",
                    "soa": {"refresh": 77, "retry": 66, "expire": 55, "min_ttl": 4},
                },
            }
        )
    )
    agent = cluster.add("dnsforms", IP)
    agent.args = ["-dev", "-node=dnsforms", f"-bind={IP}", f"-client={IP}", f"-config-file={conf}"]
    agent.start()
    cluster.wait_http([agent], timeout=30)
    cluster.wait_leader([agent], timeout=20)
    wait_for(lambda: short("consul.service.consul") == [IP], 20, "the server in the catalog")
    log = agent.log_text()
    for key in ("alt_domain", "a_record_limit", "use_cache", "soa", "recursor_strategy"):
        assert f"'{key}" not in log and f".{key}'" not in log, log

    for i in range(7):
        register(
            agent,
            {
                "Node": f"ext{i}",
                "Address": f"10.0.0.{i + 1}",
                "NodeMeta": {"rack": f"r{i}"} if i == 0 else {},
                "Service": {"Service": "web", "Tags": ["prod"] if i < 2 else [], "Port": 80 + i},
            },
        )
    register(agent, {"Node": "idnode", "ID": NODE_ID, "Address": "10.1.0.1"})
    register(
        agent,
        {
            "Node": "ext0",
            "Address": "10.0.0.1",
            "NodeMeta": {"rack": "r0"},
            "Service": {"ID": "api1", "Service": "api", "Address": "10.2.0.5", "Port": 9000},
        },
    )
    # use_cache: the answer follows the catalog once the background query sees the change.
    wait_for(lambda: len(short("web.service.consul", "+bufsize=4096")) == 5, 20, "web cached")

    # EDNS0: an OPT record back; the answer sized to the buffer, not udp_answer_limit (3),
    # but a_record_limit (5) still caps it; without EDNS 3 answers and no OPT.
    out = dig("web.service.consul", "+bufsize=4096")
    assert "OPT PSEUDOSECTION" in out and "udp: 4096" in out, out
    assert len(section(out, "ANSWER")) == 5
    out = dig("web.service.consul", "+noedns")
    assert "OPT PSEUDOSECTION" not in out and len(section(out, "ANSWER")) == 3, out
    out = dig("web.service.consul", "SRV", "+bufsize=4096")
    assert len(section(out, "ANSWER")) == 7 and "OPT PSEUDOSECTION" in out, out
    out = dig("web.service.consul", "SRV", "+noedns")
    assert len(section(out, "ANSWER")) == 3, out
    assert short("prod.web.service.consul") == ["10.0.0.1", "10.0.0.2"]

    # RFC 2782, with and without .service; the tag form.
    for name in ("_web._prod.service.consul", "_web._prod.consul", "_web._prod.dc1.consul"):
        targets = sorted(r[-1] for r in section(dig(name, "SRV"), "ANSWER"))
        assert targets == ["ext0.node.dc1.consul.", "ext1.node.dc1.consul."], name

    # A service with its own address: the SRV target is <hex>.addr, its A in Additional
    # (and the node's meta as TXT under the node's name).
    out = dig("api.service.consul", "SRV")
    assert [r[-4:] for r in section(out, "ANSWER")] == [
        ["1", "1", "9000", "0a020005.addr.dc1.consul."]
    ]
    extra = section(out, "ADDITIONAL")
    assert ["0a020005.addr.dc1.consul.", "0", "IN", "A", "10.2.0.5"] in extra, out
    assert short("api.service.consul") == ["10.2.0.5"]

    # .addr. names, node IDs (and a prefix), .virtual.
    assert short("0a000001.addr.consul") == ["10.0.0.1"]
    assert short("0a000001.addr.dc1.consul") == ["10.0.0.1"]
    assert short("fd000000000000000000000000000006.addr.consul", "AAAA") == ["fd00::6"]
    assert "status: NXDOMAIN" in dig("0a0000.addr.consul")
    assert short(f"{NODE_ID}.node.consul") == ["10.1.0.1"]
    assert short(f"{NODE_ID[:8]}.node.consul") == ["10.1.0.1"]
    out = dig("web.virtual.consul")
    assert "status: NOERROR" in out and not section(out, "ANSWER"), out

    # Node meta: TXT answers for TXT, TXT in Additional of A (enable_additional_node_meta_txt).
    assert short("ext0.node.consul", "TXT") == ['"rack=r0"']
    out = dig("ext0.node.consul")
    assert [r[-1] for r in section(out, "ADDITIONAL") if r[3] == "TXT"] == ['"rack=r0"'], out

    # NS and SOA, with the soa block; the alt domain answers under its own name.
    out = dig("consul", "NS")
    assert [r[-1] for r in section(out, "ANSWER")] == ["dnsforms.node.dc1.consul."], out
    assert ["dnsforms.node.dc1.consul.", "0", "IN", "A", IP] in section(out, "ADDITIONAL")
    soa = section(dig("consul", "SOA"), "ANSWER")[0]
    assert soa[:5] == ["consul.", "4", "IN", "SOA", "ns.consul."] and soa[7:] == [
        "77",
        "66",
        "55",
        "4",
    ], soa
    assert soa[5] == "hostmaster.consul."
    assert short("dnsforms.node.alt") == [IP]
    assert section(dig("alt", "SOA"), "ANSWER")[0][0] == "alt."
    assert sorted(r[-1] for r in section(dig("_web._prod.alt", "SRV"), "ANSWER")) == [
        "ext0.node.dc1.alt.",
        "ext1.node.dc1.alt.",
    ]
    out = dig("nosuch.node.alt")
    assert "status: NXDOMAIN" in out and section(out, "AUTHORITY")[0][0] == "alt.", out

    # Recursors in order; an upstream SERVFAIL sends the question to the next one.
    assert short("example.org") == ["192.0.2.9"]
    assert upstreams == [f"{UPSTREAM_BAD} example.org.", f"{UPSTREAM_GOOD} example.org."]

    # Bad packets: FORMERR, NOTIMP, BADVERS, dropped — and the agent keeps answering.
    head = struct.pack("!HHHHHH", 7, 0x0100, 1, 0, 0, 0)
    loop = raw(head + b"\xc0\x0c\x00\x01\x00\x01")
    assert loop is not None and loop.header.rcode == RCODE.FORMERR
    long_label = raw(head + b"\x40" + b"a" * 64 + b"\x04node\x06consul\x00\x00\x01\x00\x01")
    assert long_label is not None and long_label.header.rcode == RCODE.FORMERR
    two_questions = DNSRecord.question("a.node.consul")
    two_questions.add_question(*DNSRecord.question("b.node.consul").questions)
    r = raw(two_questions.pack())
    assert r is not None and r.header.rcode == RCODE.FORMERR
    status = DNSRecord.question("dnsforms.node.consul")
    status.header.opcode = 2
    r = raw(status.pack())
    assert r is not None and r.header.rcode == RCODE.NOTIMP
    assert raw(DNSRecord.question("dnsforms.node.consul").reply().pack()) is None  # a response
    assert "status: BADVERS" in dig("dnsforms.node.consul", "+edns=1", "+noednsneg")
    assert "status: NOTIMP" in dig("consul", "AXFR") or "Transfer failed" in dig("consul", "AXFR")
    assert short("dnsforms.node.consul") == [IP]
    assert "Traceback" not in agent.log_text()
