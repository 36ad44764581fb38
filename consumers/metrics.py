"""The consumer runtime's Prometheus metrics, on a registry of its own."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge


@dataclass
class ConsumerMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.consumed = Counter("runstream_consumer_documents", "Documents consumed", registry=r)
        self.lag = Gauge(
            "runstream_consumer_lag", "Messages behind the end", ["topic", "partition"], registry=r
        )
        self.open_runs = Gauge("runstream_consumer_open_runs", "Runs open", registry=r)
        self.dead_letters = Counter(
            "runstream_consumer_dead_letters", "Messages dead-lettered", ["reason"], registry=r
        )
        self.callback_errors = Counter(
            "runstream_consumer_callback_errors",
            "Exceptions raised by callbacks and factories",
            registry=r,
        )
        self.dropped = Counter(
            "runstream_consumer_dropped", "Documents of runs whose factory failed", registry=r
        )
        self.duplicates = Counter(
            "runstream_consumer_duplicates", "Documents seen before", registry=r
        )
        self.gaps = Counter("runstream_consumer_gaps", "Breaks in a run's seq", registry=r)
        self.abandoned = Counter(
            "runstream_consumer_abandoned_runs",
            "Runs dropped without a stop",
            ["reason"],
            registry=r,
        )
