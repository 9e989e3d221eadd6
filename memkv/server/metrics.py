"""Prometheus metrics of one server (served on the admin endpoint's /metrics)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

# A `*_created` series per counter and histogram doubles the series count and means nothing to an
# operator (the process start time is in the status document).
disable_created_metrics()  # type: ignore[no-untyped-call]

LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                   1.0, 2.5, 5.0, 10.0)


class _EngineCollector(Collector):
    """Capacity, blocks, hits/misses and evictions read from the engine at scrape time."""

    def __init__(self, stats: Callable[[], dict[str, Any]]) -> None:
        self._stats = stats

    def collect(self) -> Iterator[Any]:
        try:
            s = self._stats()
        except Exception:
            return
        for name, doc in (("capacity_bytes", "Raw capacity of the store"),
                          ("used_bytes", "Bytes allocated to blocks"), ("free_bytes", "Bytes free"),
                          ("blocks", "Committed blocks"), ("pinned_blocks", "Blocks pinned by sessions"),
                          ("leases", "Live lookup leases")):
            yield GaugeMetricFamily(f"memkv_store_{name}", doc, value=float(s.get(name, 0)))
        sessions = GaugeMetricFamily("memkv_sessions", "Sessions by state", labels=["state"])
        for state, count in sorted(s.get("sessions", {}).items()):
            sessions.add_metric([state], float(count))
        yield sessions
        usage = GaugeMetricFamily("memkv_namespace_bytes", "Bytes stored per namespace", labels=["namespace"])
        for ns, entry in sorted(s.get("namespaces", {}).items()):
            usage.add_metric([ns], float(entry["bytes"]))
        yield usage
        for name, doc in (("hits", "Gets that found their block"), ("misses", "Gets that found nothing"),
                          ("evictions", "Blocks evicted to make room"),
                          ("invalidations", "Blocks removed by invalidation or delete")):
            yield CounterMetricFamily(f"memkv_store_{name}", doc, value=float(s.get(name, 0)))


class _NamespaceView:
    """The registry with every sample labelled with another namespace left out (MKV-ADM-010)."""

    def __init__(self, registry: CollectorRegistry, namespace: str) -> None:
        self._registry = registry
        self._namespace = namespace

    def collect(self) -> Iterator[Metric]:
        for family in self._registry.collect():
            samples = [s for s in family.samples if s.labels.get("namespace", self._namespace) == self._namespace]
            if len(samples) != len(family.samples):
                scoped = Metric(family.name, family.documentation, family.type, family.unit)
                scoped.samples = samples
                family = scoped
            yield family


class ServerMetrics:
    def __init__(self, stats: Callable[[], dict[str, Any]]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.operations = Counter("memkv_operations", "Requests handled, by opcode and status",
                                  ["op", "status"], registry=r)
        self.items = Counter("memkv_items", "Batch items handled, by opcode and status", ["op", "status"], registry=r)
        self.bytes = Counter("memkv_bytes", "Payload bytes moved, by direction", ["direction"], registry=r)
        self.latency = Histogram("memkv_request_seconds", "Request latency by opcode", ["op"],
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.errors = Counter("memkv_errors", "Errors by spec error code", ["code"], registry=r)
        self.connections = Gauge("memkv_connections", "Open client connections", registry=r)
        self.connections_total = Counter("memkv_connections_accepted", "Connections accepted", registry=r)
        self.connections_refused = Counter("memkv_connections_refused", "Connections refused at the limit",
                                           registry=r)
        r.register(_EngineCollector(stats))

    def view(self, namespace: str | None) -> CollectorRegistry | _NamespaceView:
        """Everything for an operator (None), only `namespace`'s labelled series for its admin."""
        return self.registry if namespace is None else _NamespaceView(self.registry, namespace)
