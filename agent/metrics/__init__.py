"""The agent's metrics: one registry (registry.py) fanned out to the in-memory intervals of
/v1/agent/metrics (inmem.py), Prometheus (prom.py) and statsd/statsite/dogstatsd (statsd.py),
set up from the `telemetry` block by `Telemetry` (telemetry.py).

Recording, anywhere in the agent (keys are Consul's, without the `consul.` prefix):

    from agent.metrics import metrics
    metrics.incr("raft.apply")
    metrics.measure_since("raft.commitTime", start)   # start = time.perf_counter()
    metrics.gauge("autopilot.healthy", 1.0)
"""

from agent.metrics.config import TelemetryConfig
from agent.metrics.registry import METRICS, Labels, Metrics

metrics = METRICS

__all__ = ["Labels", "Metrics", "TelemetryConfig", "metrics"]
