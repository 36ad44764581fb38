"""The engine side of runstream: publish every run's documents to Kafka, losing none.

from runstream.producer import KafkaPublisher, lineage
RE.preprocessors.append(lineage)
RE.subscribe(KafkaPublisher(topic, "broker:9092", "/var/lib/runstream/outbox"))
"""

from .lineage import lineage
from .outbox import OutboxError
from .publisher import KafkaPublisher, PublisherConfigError
from .settings import PublisherSettings

__all__ = ["KafkaPublisher", "OutboxError", "PublisherConfigError", "PublisherSettings", "lineage"]
