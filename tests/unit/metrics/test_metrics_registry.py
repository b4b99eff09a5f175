"""The metrics registry and its sinks without an agent: Consul's names (prefix, host name in
gauges), prefix_filter, the inmem interval shown by /v1/agent/metrics, the Prometheus text
exposition, and go-metrics' statsd / dogstatsd lines; the telemetry config keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.config import ConfigError, load
from agent.metrics.inmem import InmemSink
from agent.metrics.prom import PrometheusSink, prometheus_name
from agent.metrics.registry import Metrics, PrefixFilter
from agent.metrics.statsd import DogstatsdFormat, statsd_line


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_names_prefix_and_hostname_in_gauges_only() -> None:
    sink = InmemSink(clock=Clock(1000.0))
    m = Metrics(prefix="consul", hostname="node1", sinks=[sink])
    m.gauge("autopilot.healthy", 1.0)
    m.incr("raft.apply")
    m.sample("raft.commitTime", 2.0, (("peer", "a"),))
    summary = sink.summary()
    assert [g["Name"] for g in summary["Gauges"]] == ["consul.node1.autopilot.healthy"]
    assert [c["Name"] for c in summary["Counters"]] == ["consul.raft.apply"]
    assert summary["Samples"][0]["Labels"] == {"peer": "a"}


def test_prefix_filter_longest_match_wins() -> None:
    sink = InmemSink(clock=Clock(1000.0))
    f = PrefixFilter(["-consul.raft", "+consul.raft.apply"], default=True)
    m = Metrics(prefix="consul", sinks=[sink], prefix_filter=f)
    for key in ("raft.apply", "raft.commitTime", "rpc.request"):
        m.incr(key)
    assert [c["Name"] for c in sink.summary()["Counters"]] == [
        "consul.raft.apply",
        "consul.rpc.request",
    ]
    closed = Metrics(sinks=[sink], prefix_filter=PrefixFilter(["+consul.dns"], default=False))
    assert closed._resolve("rpc.request", False) == ""


def test_inmem_shows_last_completed_interval_as_go_metrics() -> None:
    clock = Clock(1000.0)
    sink = InmemSink(clock=clock)
    m = Metrics(sinks=[sink])
    for v in (1.0, 2.0, 3.0):
        m.sample("kvs.apply", v)
    first = sink.summary()
    assert first["Timestamp"] == "1970-01-01 00:16:40 +0000 UTC"
    (s,) = first["Samples"]
    assert (s["Count"], s["Sum"], s["Min"], s["Max"], s["Mean"]) == (3, 6.0, 1.0, 3.0, 2.0)
    assert s["Rate"] == pytest.approx(0.6) and s["Stddev"] == pytest.approx(1.0)
    assert set(first) == {"Timestamp", "Gauges", "Points", "Counters", "Samples"}
    clock.now = 1012.0  # the next interval: the completed one is still what is shown
    m.sample("kvs.apply", 50.0)
    assert sink.summary()["Samples"][0]["Count"] == 3
    clock.now = 1000.0 + 10 * 60  # a minute later only six intervals are kept
    m.incr("x")
    assert len(sink.intervals) <= 6


def test_prometheus_exposition_names_types_and_quantiles() -> None:
    clock = Clock(50.0)
    sink = PrometheusSink(retention=60.0, clock=clock)
    m = Metrics(sinks=[sink])
    m.incr("serf.member.join", labels=(("network", "lan"),))
    m.incr("serf.member.join", labels=(("network", "lan"),))
    for v in range(1, 101):
        m.sample("raft.commitTime", float(v))
    m.gauge("raft.state.leader-x", 1.0)
    text = sink.exposition().decode()
    assert "# TYPE consul_serf_member_join counter\n" in text
    assert 'consul_serf_member_join{network="lan"} 2.0' in text
    assert "# TYPE consul_raft_commitTime summary" in text
    assert 'consul_raft_commitTime{quantile="0.5"} 50.0' in text
    assert 'consul_raft_commitTime{quantile="0.99"} 99.0' in text
    assert "consul_raft_commitTime_count 100.0" in text
    assert "consul_raft_state_leader_x 1.0" in text
    clock.now = 55.0 + 10  # no observation in the last 10 s: quantiles are NaN
    assert 'consul_raft_commitTime{quantile="0.5"} NaN' in sink.exposition().decode()
    clock.now = 200.0  # past the retention: every series expired
    assert "consul_" not in sink.exposition().decode()
    assert prometheus_name("consul.api.http") == "consul_api_http"


def test_statsd_and_dogstatsd_lines() -> None:
    assert statsd_line("c", "consul.raft.apply", 1.0, ()) == "consul.raft.apply:1.000000|c\n"
    assert (
        statsd_line("ms", "consul.api.http", 2.5, (("method", "GET"),))
        == "consul.api.http.GET:2.500000|ms\n"
    )
    dog = DogstatsdFormat("node1", ["env:test"])
    assert dog("g", "consul.node1.autopilot.healthy", 1.0, ()) == (
        "consul.autopilot.healthy:1|g|#env:test\n"
    )
    assert dog("c", "consul.rpc.request", 3.0, (("method", "KVS.Apply"),)) == (
        "consul.rpc.request:3|c|#env:test,method:KVS.Apply\n"
    )


def test_telemetry_keys_act_and_unknown_ones_warn(tmp_path: Path) -> None:
    (tmp_path / "t.hcl").write_text(
        """
        telemetry {
          statsd_address = "127.0.0.1:8125"
          dogstatsd_addr = "127.0.0.1:8126"
          dogstatsd_tags = ["env:prod"]
          disable_hostname = true
          metrics_prefix = "senate"
          prefix_filter = ["+consul.raft", "-consul.http"]
          prometheus_retention_time = "30s"
          circonus_api_token = "x"
        }
        """
    )
    cfg = load([f"-config-file={tmp_path / 't.hcl'}", f"-data-dir={tmp_path}"])
    t = cfg.telemetry
    assert (t.statsd_address, t.dogstatsd_addr, t.dogstatsd_tags) == (
        "127.0.0.1:8125",
        "127.0.0.1:8126",
        ("env:prod",),
    )
    assert t.disable_hostname and t.metrics_prefix == "senate"
    assert t.prometheus_retention_time == 30.0
    assert t.prefix_filter == ("+consul.raft", "-consul.http")
    assert any("telemetry.circonus_api_token" in w for w in cfg.warnings)
    assert not any("statsd_address" in w for w in cfg.warnings)
    (tmp_path / "bad.hcl").write_text('telemetry { prefix_filter = ["consul.raft"] }')
    with pytest.raises(ConfigError, match="prefix_filter"):
        load([f"-config-file={tmp_path / 'bad.hcl'}", f"-data-dir={tmp_path}"])
    (tmp_path / "old.json").write_text('{"statsite_addr": "127.0.0.1:8125"}')
    old = load([f"-config-file={tmp_path / 'old.json'}", f"-data-dir={tmp_path}"])
    assert old.telemetry.statsite_address == "127.0.0.1:8125"
