"""The publisher's Prometheus metrics, on a registry of its own (a service may serve several)."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge


@dataclass
class PublisherMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.documents = Counter(
            "runstream_publisher_documents", "Documents appended to the outbox", registry=r
        )
        self.acknowledged = Counter(
            "runstream_publisher_acknowledged", "Documents Kafka acknowledged", registry=r
        )
        self.unacknowledged = Gauge(
            "runstream_publisher_unacknowledged", "Documents not yet acknowledged", registry=r
        )
        self.outbox_bytes = Gauge("runstream_publisher_outbox_bytes", "Outbox size", registry=r)
        self.over_bound = Gauge(
            "runstream_publisher_outbox_over_bound", "1 while the outbox exceeds its bound",
            registry=r,
        )  # fmt: skip
        self.refused = Counter(
            "runstream_publisher_refused", "Documents kept aside, never sent", ["reason"],
            registry=r,
        )  # fmt: skip
        self.pages_split = Counter(
            "runstream_publisher_pages_split", "Pages split to fit the topic", registry=r
        )
        self.broker_up = Gauge(
            "runstream_publisher_broker_up", "1 when the broker answers", registry=r
        )
