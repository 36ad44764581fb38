"""`KafkaPublisher`: a RunEngine callback that never blocks it and never loses a document.

On the RunEngine's thread, each document is keyed by its run (``schemas.RunIndex``),
numbered (``seq``, per run), encoded, and appended to the outbox with one write:
microseconds. A delivery thread reads the outbox back in order, hands records to
an idempotent librdkafka producer (``acks=all``, Java-compatible murmur2
partitioning, no delivery timeout) and moves the outbox's watermark as Kafka
acknowledges them. Each message's timestamp is when the engine emitted it, never
earlier than the one before, and a start's strictly later: consumers merging
partitions by timestamp see runs start in the engine's order (`consumers.ordering`).
While the broker is down the outbox grows; when it returns
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
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient

from runstream import schemas
from runstream.kafka import Replication, TopicSpec, admin_config, ensure_topic
from runstream.kafka.connection import ConnectionReport
from runstream.schemas.errors import RunstreamError
from runstream.schemas.topics import check_topic

from .metrics import PublisherMetrics
from .outbox import Outbox, Record, SegmentReader
from .pages import PAGE_NAMES, split_to_fit
from .settings import FsyncPolicy, PublisherSettings

log = logging.getLogger(__name__)

#: Room left in a Kafka message for the key, the headers and the record's framing.
ENVELOPE_ROOM = 1024
#: Records handed to the delivery thread in memory; past that it reads them back from disk.
FRESH_RECORDS = 100_000
#: How often the acknowledged watermark is persisted (a crash re-sends at most this much).
STATE_INTERVAL = 0.1
_FORCED = {"enable.idempotence": True, "acks": "all", "partitioner": "murmur2_random"}
RESTART_REASON = "engine restarted: the run was still open in the publisher's outbox"


class PublisherConfigError(RunstreamError, ValueError):
    """A setting the publisher cannot work with; raised at construction."""


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
        try:
            self.topic = check_topic(topic)
        except ValueError as exc:
            raise PublisherConfigError(str(exc)) from None
        if partitions < 1:
            raise PublisherConfigError(f"partitions must be at least 1, not {partitions}")
        try:
            self.replication = Replication(replication_factor, min_insync_replicas)
        except ValueError as exc:
            raise PublisherConfigError(str(exc)) from None
        if max_message_bytes < 4096:
            raise PublisherConfigError(
                f"max_message_bytes {max_message_bytes} is too small (< 4096)"
            )
        if fsync not in ("always", "interval", "never"):
            raise PublisherConfigError(f"fsync must be always, interval or never, not {fsync!r}")
        for key, value in _FORCED.items():
            if key in librdkafka and str(librdkafka[key]).lower() != str(value).lower():
                raise PublisherConfigError(
                    f"{key}={librdkafka[key]!r} breaks delivery: runstream needs {value}"
                )
        self.partitions = partitions
        self.max_message_bytes = max_message_bytes
        self.retention_ms = retention_ms
        self.fsync = fsync
        self.fsync_interval = fsync_interval
        self.max_outbox_bytes = max_outbox_bytes
        self.producer_id = producer_id or f"{socket.gethostname()}-{os.getpid()}"
        self.metrics = PublisherMetrics()
        self.connection = ConnectionReport(
            log, "publisher", bootstrap_servers, self._waiting, self._kafka_answers
        )
        self._conf = {
            "bootstrap.servers": bootstrap_servers,
            "linger.ms": 5,
            "compression.type": "lz4",
            "message.timeout.ms": 0,  # never give up a document: the outbox holds it meanwhile
            "message.max.bytes": max_message_bytes + ENVELOPE_ROOM,
            "client.id": self.producer_id,
            **librdkafka,
            **_FORCED,
            **self.connection.client_settings(),
        }
        self._admin_conf = admin_config(self._conf)
        self._producer = self._make_producer()
        self.outbox = Outbox(Path(outbox_dir))  # raises OutboxError when unusable

        self._index = schemas.RunIndex()
        self._next_seq: dict[str, int] = {}
        self._next_id = self.outbox.last_id + 1
        self._last_stamp = 0  # ms: the Kafka timestamp of the last record appended
        self._limit = max_message_bytes - ENVELOPE_ROOM
        self._over_bound_logged = 0.0
        self._lock = threading.Lock()  # appends: the RunEngine's thread and recovery
        self._fresh: deque[Record] = deque()  # appended records, handed over without a re-read
        self._next_send = self.outbox.watermark + 1  # the next record to hand to librdkafka
        # Direct: caught up, so the callback hands each record to librdkafka itself (a
        # non-blocking enqueue; librdkafka's own threads deliver). Otherwise the delivery
        # thread sends the backlog in order first. Switched under self._lock.
        self._direct = False
        self._state_written = 0.0
        self._close_left_open_runs()

        self._stopping = threading.Event()
        self._acked_cv = threading.Condition()
        self._inflight: dict[int, Record] = {}
        self._acked: set[int] = set()
        self._topic_ready = False
        self.metrics.outbox_bytes.set(self.outbox.bytes)
        self._thread = threading.Thread(
            target=self._deliver, name="runstream-publisher", daemon=True
        )
        self._thread.start()

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
            partitions=settings.partitions,
            replication_factor=replication.replication_factor,
            min_insync_replicas=replication.min_insync_replicas,
            max_message_bytes=settings.max_message_bytes,
            retention_ms=settings.retention_ms,
            fsync=settings.fsync,
            fsync_interval=settings.fsync_interval,
            max_outbox_bytes=settings.max_outbox_bytes,
            **{**client, **librdkafka},
        )

    def _make_producer(self) -> Producer:
        try:
            return Producer(self._conf)
        except (KafkaException, ValueError, TypeError) as exc:
            raise PublisherConfigError(f"invalid librdkafka setting: {exc}") from None

    # -- the RunEngine's side -----------------------------------------------------

    def __call__(self, name: str, doc: Mapping[str, Any]) -> None:
        run = self._index.run_of(name, doc)
        if run is None:
            self._refuse_unkeyed(name, doc)
            return
        with self._lock:
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
        if self._direct and self._produce(record):
            self._next_send = record.id + 1
        else:  # catching up: the delivery thread sends it in order after what is older
            self._direct = False
            if len(self._fresh) < FRESH_RECORDS:
                self._fresh.append(record)
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

    def _refuse_unkeyed(self, name: str, doc: Mapping[str, Any]) -> None:
        record = Record(0, "", name, -1, b"", [], repr(dict(doc)).encode())
        path = self.outbox.refuse(record, "no run: it points at nothing this publisher has seen")
        self.metrics.refused.labels("unkeyed").inc()
        log.error("%s %s belongs to no known run; kept in %s", name, doc.get("uid", ""), path)

    def _close_left_open_runs(self) -> None:
        """Abort stops for the runs a previous publisher on this outbox left open."""
        for run, last_seq in sorted(self.outbox.runs.last_seq.items()):
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

    # -- delivery -------------------------------------------------------------------

    def _deliver(self) -> None:
        """The delivery thread: topic, fsync, backlogs, acknowledgements, the watermark.

        It never wakes per document: waking it per document made the RunEngine's
        threads wait for the GIL.
        """
        reader = SegmentReader(self.outbox, after=self.outbox.watermark)
        next_topic_try = 0.0
        last_sync = time.monotonic()
        while not self._stopping.is_set():
            now = time.monotonic()
            if not self._topic_ready and now >= next_topic_try:
                self._topic_ready = self._ensure_topic()
                next_topic_try = now + 2.0
            if self.fsync == "interval" and now - last_sync >= self.fsync_interval:
                self.outbox.sync()
                last_sync = now
            if self._topic_ready and not self._direct and len(self._producer) < 50_000:
                self._catch_up(reader)
            self._producer.poll(0.02)
            self._advance()
            self.connection.tick()
        self._producer.flush(1)
        self._advance(force=True)

    def _catch_up(self, reader: SegmentReader) -> None:
        records = self._next_batch(reader)
        if records and self.fsync == "always":
            self.outbox.sync()
        for record in records:
            if not self._produce(record):
                return
            self._next_send = record.id + 1
        if not records:
            with self._lock:
                if self._next_send == self._next_id:
                    self._fresh.clear()
                    self._direct = self.fsync != "always"  # "always": sync before every send

    def _next_batch(self, reader: SegmentReader, limit: int = 2000) -> list[Record]:
        """The next records to send in id order: fresh ones from memory, older ones from disk."""
        fresh = self._fresh
        while fresh and fresh[0].id < self._next_send:
            fresh.popleft()
        if fresh and fresh[0].id == self._next_send:
            batch = [fresh.popleft()]
            while fresh and len(batch) < limit and fresh[0].id == batch[-1].id + 1:
                batch.append(fresh.popleft())
            return batch
        # Only on disk: left by a previous publisher, to be re-sent, or past the memory queue.
        if reader.after != self._next_send - 1:
            reader.rewind(self._next_send - 1)
        return reader.read(limit)

    def _produce(self, record: Record) -> bool:
        self._inflight[record.id] = record
        try:
            self._producer.produce(
                self.topic,
                key=record.key,
                value=record.value,
                headers=record.headers,
                timestamp=record.timestamp,
                on_delivery=lambda err, msg, rid=record.id: self._delivered(err, rid),
            )
        except BufferError:
            self._inflight.pop(record.id, None)
            return False
        except KafkaException as exc:
            if exc.args[0].code() == KafkaError.MSG_SIZE_TOO_LARGE:
                self._refused_by_kafka(record, str(exc))
                return True
            self._inflight.pop(record.id, None)
            log.warning("producing record %d failed (%s); retrying", record.id, exc)
            return False
        return True

    def _delivered(self, err: KafkaError | None, rid: int) -> None:
        if err is None:
            self._acked.add(rid)
            self.metrics.broker_up.set(1)
            self.connection.connected()
            return
        record = self._inflight.get(rid)
        if record is None:
            return
        if err.code() in (KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.INVALID_RECORD):
            self._refused_by_kafka(record, err.str())
            return
        log.warning("run %s: delivery of seq %d failed (%s); re-sending from the watermark",
                    record.run, record.seq, err.str())  # fmt: skip
        with self._lock:
            self._direct = False
            self._inflight.clear()
            self._acked.clear()
            self._next_send = self.outbox.watermark + 1
        if err.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
            self._topic_ready = False

    def _refused_by_kafka(self, record: Record, reason: str) -> None:
        path = self.outbox.refuse(record, f"broker refused: {reason}")
        self.metrics.refused.labels("broker").inc()
        log.error("run %s: Kafka refused %s seq %d (%s); kept in %s",
                  record.run, record.name, record.seq, reason, path)  # fmt: skip
        self._acked.add(record.id)

    def _advance(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._state_written < STATE_INTERVAL:
            return
        self._state_written = now
        watermark = self.outbox.watermark
        done: list[Record] = []
        while watermark + 1 in self._acked:
            watermark += 1
            self._acked.discard(watermark)
            record = self._inflight.pop(watermark, None)
            if record is not None:
                done.append(record)
        if watermark != self.outbox.watermark:
            self.outbox.advance(watermark, done)
            self.metrics.acknowledged.inc(len(done))
            with self._acked_cv:
                self._acked_cv.notify_all()
        self.metrics.unacknowledged.set(self._unacked())
        self.metrics.outbox_bytes.set(self.outbox.bytes)
        if self.outbox.bytes <= self.max_outbox_bytes:
            self.metrics.over_bound.set(0)

    def _ensure_topic(self) -> bool:
        config = {"max.message.bytes": str(self.max_message_bytes)}
        if self.retention_ms is not None:
            config["retention.ms"] = str(self.retention_ms)
        spec = TopicSpec(self.topic, self.partitions, self.replication, config)
        try:
            ensure_topic(AdminClient(self._admin_conf), spec, timeout=5)
        except KafkaException as exc:
            self.connection.topic_not_ready(self.topic, exc.args[0])
            self.metrics.broker_up.set(0)
            return False
        except Exception as exc:  # timeouts while the broker is away: the report says so once
            log.debug("topic %s not made or found (%s)", self.topic, exc)
            self.metrics.broker_up.set(0)
            return False
        self.metrics.broker_up.set(1)
        self.connection.connected()
        return True

    def _waiting(self) -> str:
        return (f"{self._unacked()} documents wait in the outbox {self.outbox.dir} "
                f"({self.outbox.bytes} bytes on disk)")  # fmt: skip

    def _kafka_answers(self) -> bool:
        try:
            self._producer.list_topics(self.topic, timeout=1)
        except KafkaException:
            return False
        return True

    # -- lifecycle ------------------------------------------------------------------

    def _unacked(self) -> int:
        return (self._next_id - 1) - self.outbox.watermark

    @property
    def unacknowledged(self) -> int:
        """Documents in the outbox that Kafka has not acknowledged yet."""
        return self._unacked()

    def wait_for_topic(self, timeout: float) -> bool:
        """True once the topic exists (made or found); the outbox holds documents meanwhile."""
        deadline = time.monotonic() + timeout
        while not self._topic_ready and time.monotonic() < deadline:
            time.sleep(0.05)
        return self._topic_ready

    def flush(self, timeout: float | None = None) -> int:
        """Wait up to ``timeout`` s for Kafka to acknowledge everything; return what is left."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._acked_cv:
            while self._unacked() > 0 and self._thread.is_alive():
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    break
                self._acked_cv.wait(0.1 if left is None else min(left, 0.1))
        return self._unacked()

    def close(self, timeout: float | None = 30.0) -> int:
        """Flush, stop delivering and release the outbox; return documents left in it.

        What is left stays in the outbox and is sent by the next publisher on it.
        """
        left = self.flush(timeout)
        self._stopping.set()
        self._thread.join(10)
        self.outbox.close()
        if left:
            log.warning(
                "closing with %d documents unacknowledged, kept in %s", left, self.outbox.dir
            )
        return left

    def __repr__(self) -> str:
        return f"KafkaPublisher(topic={self.topic!r}, outbox={str(self.outbox.dir)!r})"
