"""Dead letters: messages the consumer cannot use, kept in ``<topic>.dlq`` with the reason.

The original key, value and headers are kept byte for byte; ``dlq.reason`` says
why and ``dlq.source`` says where the message was read. The runtime commits past
a dead-lettered message only once the dead-letter topic has acknowledged it.
"""

from __future__ import annotations

import logging
from typing import Any

from confluent_kafka import KafkaException, Message, Producer
from confluent_kafka.admin import AdminClient

from runstream import schemas
from runstream.kafka import Replication, TopicSpec, ensure_topic
from runstream.schemas.headers import DLQ_REASON, DLQ_SOURCE

log = logging.getLogger(__name__)


class DeadLetters:
    """An idempotent producer to ``<topic>.dlq``, made when missing with ``replication``."""

    def __init__(self, conf: dict[str, Any], replication: Replication) -> None:
        self._producer = Producer({**conf, "enable.idempotence": True, "acks": "all",
                                   "linger.ms": 20})  # fmt: skip
        self._admin_conf = conf
        self._replication = replication
        self._known: set[str] = set()
        self.pending = 0
        self.failed = 0

    def _ensure(self, topic: str) -> None:
        if topic in self._known:
            return
        spec = TopicSpec(topic, 1, self._replication)
        try:
            ensure_topic(AdminClient(self._admin_conf), spec, timeout=15)
        except KafkaException as exc:
            log.warning("could not make the dead-letter topic %s (%s); producing to it anyway",
                        topic, exc.args[0].str())  # fmt: skip
        self._known.add(topic)

    def send(self, msg: Message, reason: str) -> None:
        topic = schemas.dead_letter_topic(msg.topic())
        self._ensure(topic)
        headers = list(msg.headers() or [])
        headers += [
            (DLQ_REASON, reason.encode()[:1000]),
            (DLQ_SOURCE, f"{msg.topic()}/{msg.partition()}/{msg.offset()}".encode()),
        ]
        self.pending += 1
        self._producer.produce(topic, key=msg.key(), value=msg.value(), headers=headers,
                               on_delivery=self._delivered)  # fmt: skip
        self._producer.poll(0)

    def _delivered(self, err: Any, msg: Message) -> None:
        self.pending -= 1
        if err is not None:
            self.failed += 1
            log.error("dead letter to %s not delivered: %s", msg.topic(), err)

    def flush(self, timeout: float) -> bool:
        """True when every dead letter so far is acknowledged (commits may pass them)."""
        if self.pending:
            self._producer.flush(timeout)
        return self.pending == 0 and self.failed == 0
