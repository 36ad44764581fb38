"""`Delivery`: the publisher's thread that takes the outbox to Kafka, in order.

It makes or finds the topic, fsyncs the outbox by policy, sends in id order what
is behind (a previous publisher's records, the backlog of an outage), collects
Kafka's acknowledgements and moves the outbox's acknowledged id. When it has
caught up, the RunEngine's thread hands each new record to librdkafka itself
(`Delivery.offer`, a non-blocking enqueue); librdkafka's own threads deliver it.
The thread never wakes per document: waking it per document made the RunEngine's
threads wait for the GIL.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient

from runstream.kafka import TopicSpec, ensure_topic
from runstream.kafka.connection import ConnectionReport

from .metrics import PublisherMetrics
from .outbox import Outbox, Record, SegmentReader
from .settings import PublisherOptions

log = logging.getLogger(__name__)

#: Records handed to the delivery thread in memory; past that it reads them back from disk.
FRESH_RECORDS = 100_000
#: How often the acknowledged id is persisted (a crash re-sends at most this much).
STATE_INTERVAL = 0.1
#: Seconds between two attempts to make or find the topic.
TOPIC_RETRY = 2.0
#: Messages librdkafka may hold before the backlog waits for it to send some.
MAX_QUEUED = 50_000
#: Records read from the outbox per backlog batch.
BATCH = 2000


class Delivery:
    """The outbox's way to Kafka: one thread, started by `start`, stopped by `stop`.

    ``lock`` is the publisher's append lock: records are handed over (`offer`) under
    it, and the switch between the backlog and direct sending is made under it.
    """

    def __init__(
        self,
        outbox: Outbox,
        producer: Producer,
        topic: TopicSpec,
        admin_conf: dict[str, Any],
        options: PublisherOptions,
        metrics: PublisherMetrics,
        connection: ConnectionReport,
        lock: threading.Lock,
    ) -> None:
        self.outbox, self.topic, self.options = outbox, topic, options
        self.metrics, self.connection = metrics, connection
        self._producer, self._admin_conf, self._lock = producer, admin_conf, lock
        self.topic_ready = False
        self._acknowledged = threading.Condition()  # notified as the acknowledged id moves
        self._fresh: deque[Record] = deque()  # appended records, handed over without a re-read
        self._next_send = outbox.acked_id + 1  # the next record to hand to librdkafka
        # Direct: caught up, so `offer` hands each record to librdkafka itself. Otherwise
        # the thread sends the backlog in order first. Switched under the lock.
        self._direct = False
        self._inflight: dict[int, Record] = {}
        self._acked: set[int] = set()
        self._state_written = 0.0
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="runstream-publisher", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the thread after a last flush of librdkafka and of the acknowledged id."""
        self._stopping.set()
        self._thread.join(timeout)

    def wait_for_topic(self, timeout: float) -> bool:
        """True once the topic exists (made or found)."""
        deadline = time.monotonic() + timeout
        while not self.topic_ready and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.topic_ready

    def wait_acknowledged(self, timeout: float | None) -> int:
        """Wait up to ``timeout`` s until Kafka has every record; return how many it has not."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._acknowledged:
            while self.outbox.unacknowledged > 0 and self._thread.is_alive():
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    break
                self._acknowledged.wait(0.1 if left is None else min(left, 0.1))
        return self.outbox.unacknowledged

    # -- the RunEngine's side (under the lock) ----------------------------------------

    def offer(self, record: Record) -> None:
        """Hand over a record just appended: to librdkafka when caught up, else to the thread."""
        if self._direct and self._produce(record):
            self._next_send = record.id + 1
        else:  # catching up: the thread sends it in order after what is older
            self._direct = False
            if len(self._fresh) < FRESH_RECORDS:
                self._fresh.append(record)

    # -- the thread ----------------------------------------------------------------------

    def _run(self) -> None:
        reader = SegmentReader(self.outbox, after=self.outbox.acked_id)
        next_topic_try = 0.0
        last_sync = time.monotonic()
        while not self._stopping.is_set():
            now = time.monotonic()
            if not self.topic_ready and now >= next_topic_try:
                self.topic_ready = self._ensure_topic()
                next_topic_try = now + TOPIC_RETRY
            if self.options.fsync == "interval" and now - last_sync >= self.options.fsync_interval:
                self.outbox.sync()
                last_sync = now
            if self.topic_ready and not self._direct and len(self._producer) < MAX_QUEUED:
                self._catch_up(reader)
            self._producer.poll(0.02)
            self._advance()
            self.connection.tick()
        self._producer.flush(1)
        self._advance(force=True)

    def _catch_up(self, reader: SegmentReader) -> None:
        records = self._next_batch(reader)
        if records and self.options.fsync == "always":
            self.outbox.sync()
        for record in records:
            if not self._produce(record):
                return
            self._next_send = record.id + 1
        if not records:
            with self._lock:
                if self._next_send == self.outbox.last_id + 1:
                    self._fresh.clear()
                    # "always": the outbox is synced before every send, so never direct
                    self._direct = self.options.fsync != "always"

    def _next_batch(self, reader: SegmentReader, limit: int = BATCH) -> list[Record]:
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
                self.topic.name,
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

    # -- acknowledgements -------------------------------------------------------------------

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
        log.warning("run %s: delivery of seq %d failed (%s); re-sending from the last "
                    "acknowledged record", record.run, record.seq, err.str())  # fmt: skip
        with self._lock:
            self._direct = False
            self._inflight.clear()
            self._acked.clear()
            self._next_send = self.outbox.acked_id + 1
        if err.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
            self.topic_ready = False

    def _refused_by_kafka(self, record: Record, reason: str) -> None:
        path = self.outbox.refuse(record, f"broker refused: {reason}")
        self.metrics.refused.labels("broker").inc()
        log.error("run %s: Kafka refused %s seq %d (%s); kept in %s",
                  record.run, record.name, record.seq, reason, path)  # fmt: skip
        self._acked.add(record.id)

    def _advance(self, force: bool = False) -> None:
        """Move the outbox's acknowledged id over every record acknowledged in a row."""
        now = time.monotonic()
        if not force and now - self._state_written < STATE_INTERVAL:
            return
        self._state_written = now
        acked_id = self.outbox.acked_id
        done: list[Record] = []
        while acked_id + 1 in self._acked:
            acked_id += 1
            self._acked.discard(acked_id)
            record = self._inflight.pop(acked_id, None)
            if record is not None:
                done.append(record)
        if acked_id != self.outbox.acked_id:
            self.outbox.advance(acked_id, done)
            self.metrics.acknowledged.inc(len(done))
            with self._acknowledged:
                self._acknowledged.notify_all()
        self.metrics.unacknowledged.set(self.outbox.unacknowledged)
        self.metrics.outbox_bytes.set(self.outbox.bytes)
        if self.outbox.bytes <= self.options.max_outbox_bytes:
            self.metrics.over_bound.set(0)

    def _ensure_topic(self) -> bool:
        try:
            ensure_topic(AdminClient(self._admin_conf), self.topic, timeout=5)
        except KafkaException as exc:
            self.connection.topic_not_ready(self.topic.name, exc.args[0])
            self.metrics.broker_up.set(0)
            return False
        except Exception as exc:  # timeouts while the broker is away: the report says so once
            log.debug("topic %s not made or found (%s)", self.topic.name, exc)
            self.metrics.broker_up.set(0)
            return False
        self.metrics.broker_up.set(1)
        self.connection.connected()
        return True
