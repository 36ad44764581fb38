"""`KafkaPublisher`: a RunEngine callback that never blocks it and never loses a document.

On the RunEngine's thread, each document is keyed by its run (``schemas.RunKeys``;
a resource without ``run_start`` goes to the run it was emitted in, see
`schemas.unlabeled`), numbered (``seq``, per run), encoded, and appended to the
outbox with one write: microseconds. The delivery thread (`delivery.Delivery`)
reads the outbox back in order, hands records to an idempotent librdkafka producer
(``acks=all``, Java-compatible murmur2 partitioning, no delivery timeout) and moves
the outbox's acknowledged id as Kafka acknowledges them. Each message's timestamp is when the
engine emitted it, never earlier than the one before, and a start's strictly later:
consumers merging partitions by timestamp see runs start in the engine's order
(`consumers.ordering`). While the broker is down the outbox grows; when it returns
the outbox drains in order. A publisher started on the outbox of one that died
re-sends what was not acknowledged and closes every run left open with an abort
stop document.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaException, Producer

from runstream import schemas
from runstream.kafka import Replication, TopicSpec, admin_config
from runstream.kafka.connection import ConnectionReport
from runstream.schemas.topics import check_topic

from .delivery import Delivery
from .metrics import PublisherMetrics
from .outbox import Outbox, Record
from .pages import PAGE_NAMES, split_to_fit
from .settings import FsyncPolicy, PublisherConfigError, PublisherOptions, PublisherSettings

log = logging.getLogger(__name__)

#: Room left in a Kafka message for the key, the headers and the record's framing.
ENVELOPE_ROOM = 1024
_FORCED = {"enable.idempotence": True, "acks": "all", "partitioner": "murmur2_random"}
RESTART_REASON = "engine restarted: the run was still open in the publisher's outbox"

__all__ = ["KafkaPublisher", "PublisherConfigError"]


class KafkaPublisher:
    """Publish every run's documents to ``topic`` through an outbox in ``outbox_dir``.

    ``librdkafka`` takes extra client settings verbatim (SASL/SSL and the like),
    e.g. ``KafkaPublisher(t, b, d, **{"security.protocol": "SASL_SSL"})``. A missing
    topic is made with ``replication_factor`` copies (default min(3, brokers)) and
    ``min_insync_replicas`` (default replication - 1, at least 1); one that exists is
    used as it is.
    """

    def __init__(
        self,
        topic: str,
        bootstrap_servers: str,
        outbox_dir: str | os.PathLike[str],
        *,
        partitions: int = 6,
        replication_factor: int | None = None,
        min_insync_replicas: int | None = None,
        max_message_bytes: int = 1_048_576,
        retention_ms: int | None = None,
        fsync: FsyncPolicy = "interval",
        fsync_interval: float = 1.0,
        max_outbox_bytes: int = 1 << 30,
        producer_id: str | None = None,
        **librdkafka: Any,
    ) -> None:
        self.topic = _checked_topic(topic)
        self.options = PublisherOptions.checked(
            partitions=partitions, max_message_bytes=max_message_bytes,
            retention_ms=retention_ms, fsync=fsync, fsync_interval=fsync_interval,
            max_outbox_bytes=max_outbox_bytes,
        )  # fmt: skip
        self.replication = _checked_replication(replication_factor, min_insync_replicas)
        _check_forced(librdkafka)
        self.max_outbox_bytes = self.options.max_outbox_bytes
        self.producer_id = producer_id or f"{socket.gethostname()}-{os.getpid()}"
        self.metrics = PublisherMetrics()
        self.connection = ConnectionReport(
            log, "publisher", bootstrap_servers, self._waiting, self._kafka_answers
        )
        conf = self._client_config(bootstrap_servers, librdkafka)
        self._producer = _make_producer(conf)
        self.outbox = Outbox(Path(outbox_dir))  # raises OutboxError when unusable

        self._keys = schemas.RunKeys()  # resources without run_start wait here for their run
        self._next_seq: dict[str, int] = {}
        self._next_id = self.outbox.last_id + 1
        self._last_stamp = 0  # ms: the Kafka timestamp of the last record appended
        self._limit = self.options.max_message_bytes - ENVELOPE_ROOM
        self._over_bound_logged = 0.0
        self._lock = threading.Lock()  # appends: the RunEngine's thread and recovery
        self.delivery = Delivery(
            self.outbox, self._producer, self._topic_spec(), admin_config(conf), self.options,
            self.metrics, self.connection, self._lock,
        )  # fmt: skip
        self._close_left_open_runs()
        self.metrics.outbox_bytes.set(self.outbox.bytes)
        self.delivery.start()

    @classmethod
    def from_settings(cls, settings: PublisherSettings, **librdkafka: Any) -> KafkaPublisher:
        try:
            client = settings.kafka.client_config()
        except ValueError as exc:
            raise PublisherConfigError(str(exc)) from None
        bootstrap = client.pop("bootstrap.servers")
        replication = settings.kafka.replication
        return cls(
            settings.resolved_topic,
            bootstrap,
            settings.outbox_dir,
            replication_factor=replication.replication_factor,
            min_insync_replicas=replication.min_insync_replicas,
            **settings.model_dump(include=set(PublisherOptions.model_fields)),
            **{**client, **librdkafka},
        )

    def _client_config(self, bootstrap_servers: str, librdkafka: dict[str, Any]) -> dict[str, Any]:
        return {
            "bootstrap.servers": bootstrap_servers,
            "linger.ms": 5,
            "compression.type": "lz4",
            "message.timeout.ms": 0,  # never give up a document: the outbox holds it meanwhile
            "message.max.bytes": self.options.max_message_bytes + ENVELOPE_ROOM,
            "client.id": self.producer_id,
            **librdkafka,
            **_FORCED,
            **self.connection.client_settings(),
        }

    def _topic_spec(self) -> TopicSpec:
        config = {"max.message.bytes": str(self.options.max_message_bytes)}
        if self.options.retention_ms is not None:
            config["retention.ms"] = str(self.options.retention_ms)
        return TopicSpec(self.topic, self.options.partitions, self.replication, config)

    # -- the RunEngine's side -----------------------------------------------------

    def __call__(self, name: str, doc: Mapping[str, Any]) -> None:
        keyed, unkeyed = self._keys.sort(name, doc)
        for lost in unkeyed:
            self._refuse_unkeyed(lost)
        if not keyed:
            return
        with self._lock:
            for item in keyed:
                self._publish(item.run, item.name, item.doc)

    def _publish(self, run: str, name: str, doc: Mapping[str, Any]) -> None:
        if name in PAGE_NAMES:
            parts = list(split_to_fit(name, doc, schemas.encode, self._limit))
            if len(parts) > 1:
                self.metrics.pages_split.inc()
                log.info("run %s: %s split into %d pages to fit", run, name, len(parts))
            for _part, value in parts:
                self._append(run, name, value)
        else:
            try:
                value = schemas.encode(name, doc)
            except schemas.EncodeError as exc:
                self._append(run, name, repr(doc).encode(), refuse=f"unencodable: {exc}")
            else:
                self._append(run, name, value)
        if name == "stop":
            self._next_seq.pop(run, None)

    def _append(self, run: str, name: str, value: bytes, refuse: str | None = None) -> None:
        seq = self._next_seq.get(run, 0)
        self._next_seq[run] = seq + 1
        headers = schemas.Headers(doc=name, run=run, seq=seq, producer=self.producer_id)
        stamp = max(time.time_ns() // 1_000_000, self._last_stamp + (name == "start"))
        record = Record(self._next_id, run, name, seq, run.encode(), headers.to_kafka(), value,
                        stamp)  # fmt: skip
        if refuse is None and len(value) > self._limit:
            refuse = f"oversize: {len(value)} bytes, the topic takes {self._limit}"
        if refuse is not None:
            path = self.outbox.refuse(record, refuse)
            self.metrics.refused.labels(refuse.split(":", 1)[0]).inc()
            log.error("run %s: %s (seq %d) not sent, %s; kept in %s", run, name, seq, refuse, path)
            return
        self._next_id += 1
        self._last_stamp = stamp
        size = self.outbox.append(record)
        self.delivery.offer(record)
        self.metrics.documents.inc()
        if size > self.max_outbox_bytes:
            self._over_bound(size)

    def _over_bound(self, size: int) -> None:
        self.metrics.over_bound.set(1)
        now = time.monotonic()
        if now - self._over_bound_logged > 10:
            self._over_bound_logged = now
            log.error(
                "outbox %s holds %d bytes, over its bound of %d: Kafka is not taking documents; "
                "nothing is dropped, the outbox keeps growing",
                self.outbox.dir, size, self.max_outbox_bytes,
            )  # fmt: skip

    def _refuse_unkeyed(self, lost: schemas.Unkeyed) -> None:
        try:
            value = schemas.encode(lost.name, lost.doc)
        except schemas.EncodeError:
            value = repr(dict(lost.doc)).encode()
        record = Record(0, "", lost.name, -1, b"", [], value)
        path = self.outbox.refuse(record, f"no run: {lost.reason}")
        self.metrics.refused.labels("unkeyed").inc()
        uid = lost.doc.get("uid") or lost.doc.get("datum_id", "")
        log.error("%s %s not sent, %s; kept in %s", lost.name, uid, lost.reason, path)

    def _close_left_open_runs(self) -> None:
        """Abort stops for the runs a previous publisher on this outbox left open."""
        for run, last_seq in sorted(self.outbox.open_runs.last_seq.items()):
            self._next_seq[run] = last_seq + 1
            stop = {
                "uid": str(uuid.uuid4()),
                "run_start": run,
                "time": time.time(),
                "exit_status": "abort",
                "reason": RESTART_REASON,
                "num_events": {},
            }
            log.warning("run %s: closing it with an abort stop (%s)", run, RESTART_REASON)
            self._append(run, "stop", schemas.encode("stop", stop))
            self._next_seq.pop(run, None)

    # -- the connection report's questions ------------------------------------------

    def _waiting(self) -> str:
        return (f"{self.outbox.unacknowledged} documents wait in the outbox {self.outbox.dir} "
                f"({self.outbox.bytes} bytes on disk)")  # fmt: skip

    def _kafka_answers(self) -> bool:
        try:
            self._producer.list_topics(self.topic, timeout=1)
        except KafkaException:
            return False
        return True

    # -- lifecycle ------------------------------------------------------------------

    @property
    def unacknowledged(self) -> int:
        """Documents in the outbox that Kafka has not acknowledged yet."""
        return self.outbox.unacknowledged

    def wait_for_topic(self, timeout: float) -> bool:
        """True once the topic exists (made or found); the outbox holds documents meanwhile."""
        return self.delivery.wait_for_topic(timeout)

    def flush(self, timeout: float | None = None) -> int:
        """Wait up to ``timeout`` s for Kafka to acknowledge everything; return what is left."""
        return self.delivery.wait_acknowledged(timeout)

    def close(self, timeout: float | None = 30.0) -> int:
        """Flush, stop delivering and release the outbox; return documents left in it.

        What is left stays in the outbox and is sent by the next publisher on it.
        """
        left = self.flush(timeout)
        self.delivery.stop(10)
        self.outbox.close()
        if left:
            log.warning(
                "closing with %d documents unacknowledged, kept in %s", left, self.outbox.dir
            )
        return left

    def __repr__(self) -> str:
        return f"KafkaPublisher(topic={self.topic!r}, outbox={str(self.outbox.dir)!r})"


def _checked_topic(topic: str) -> str:
    try:
        return check_topic(topic)
    except ValueError as exc:
        raise PublisherConfigError(str(exc)) from None


def _checked_replication(factor: int | None, min_insync: int | None) -> Replication:
    try:
        return Replication(factor, min_insync)
    except ValueError as exc:
        raise PublisherConfigError(str(exc)) from None


def _check_forced(librdkafka: Mapping[str, Any]) -> None:
    """Refuse client settings that would break delivery (acks, idempotence, partitioning)."""
    for key, value in _FORCED.items():
        if key in librdkafka and str(librdkafka[key]).lower() != str(value).lower():
            raise PublisherConfigError(
                f"{key}={librdkafka[key]!r} breaks delivery: runstream needs {value}"
            )


def _make_producer(conf: dict[str, Any]) -> Producer:
    try:
        return Producer(conf)
    except (KafkaException, ValueError, TypeError) as exc:
        raise PublisherConfigError(f"invalid librdkafka setting: {exc}") from None
