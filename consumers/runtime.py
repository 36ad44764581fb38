"""The consumer runtime: RunRouter over Kafka, crash-safe and isolated per run.

One poll loop per process: messages are checked (headers, value, schema), routed
to their run's callbacks (see `router.Router`), and offsets are committed behind
the start of every run still open in a partition (see `commitpoint`), so a run
whose consumer dies is replayed from its start by the next owner. Rebalancing
is cooperative; a revoked partition's runs are abandoned (their callbacks told)
after committing what is safe. Bad messages go to ``<topic>.dlq``. Messages
without our ``v`` header, as bluesky-kafka writes them, are read too (`legacy`).
Messages of several partitions are handled in timestamp order (see `ordering`).

Callbacks may have ``tick()`` and ``abandon(reason)`` hooks (`protocols`).
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from runstream import schemas
from runstream.kafka import admin_config
from runstream.kafka.connection import ConnectionReport

from .commitpoint import CommitPoint
from .deadletter import DeadLetters
from .health import HealthServer
from .legacy import LegacyRuns, Numbered
from .metrics import ConsumerMetrics
from .ordering import TimestampMerge
from .protocols import Factory
from .router import Router, RoutingError
from .settings import ConsumerSettings

log = logging.getLogger(__name__)

TopicPart = tuple[str, int]
#: Why a run is abandoned when its partition stops being ours, by what happened.
_LEFT_MID_RUN = {
    "shutdown": "the consumer stopped mid-run",
    "revoked": "partition moved to another consumer",
    "lost": "partition lost",
}


class Runtime:
    def __init__(
        self,
        settings: ConsumerSettings,
        factories: list[Factory],
        stop_event: threading.Event | None = None,
    ) -> None:
        if not factories:
            raise ValueError("a consumer needs at least one factory")
        self.settings = settings
        self.metrics = ConsumerMetrics()
        self.router = Router(factories, self.metrics, time.monotonic)
        self.commit_points: dict[TopicPart, CommitPoint] = {}
        self.legacy = LegacyRuns()
        self.order = TimestampMerge(settings.order_wait)
        self._stop = stop_event or threading.Event()  # shared with callbacks that wait
        self._last_loop = time.monotonic()
        self._polled = False
        self._lags: dict[TopicPart, int] = {}
        self.connection = ConnectionReport(
            log, "consumer", settings.kafka.bootstrap, self._waiting, self._kafka_answers
        )
        client = {
            **settings.kafka.client_config(),  # raises KafkaConfigError (a ValueError)
            **self.connection.client_settings(),
        }
        self._conf = {
            "group.id": settings.group,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest" if settings.from_beginning else "latest",
            "partition.assignment.strategy": "cooperative-sticky",
            "session.timeout.ms": settings.session_timeout_ms,
            # A cooperative rebalance takes two rounds, each noticed at a member's next
            # heartbeat: at most 1 s apart, so a new replica works within ~2 s, not ~6 s.
            "heartbeat.interval.ms": min(1000, settings.session_timeout_ms // 3),
            "isolation.level": "read_committed",
            **client,
            "enable.partition.eof": True,  # `ordering` waits for a partition until its end
        }
        try:
            self.consumer = Consumer(self._conf)
            self.dead_letters = DeadLetters(
                admin_config(client), settings.kafka.replication.wanted()
            )
        except (KafkaException, ValueError, TypeError) as exc:
            raise ValueError(f"invalid Kafka setting: {exc}") from None
        self.health: HealthServer | None = None
        self._lag_reported: set[TopicPart] = set()

    # -- lifecycle ------------------------------------------------------------

    def stop(self) -> None:
        """Ask the loop to finish: it commits what it processed and returns."""
        self._stop.set()

    def alive(self) -> bool:
        return time.monotonic() - self._last_loop < 30

    def ready(self) -> bool:
        return bool(self.commit_points) and self._polled and self.alive()

    def run(self) -> None:
        s = self.settings
        if s.tune_gc:
            gc.freeze()
            gc.set_threshold(50_000, 20, 100)
        if s.http_port:
            self.health = HealthServer(s.http_host, s.http_port, self.metrics.registry,
                                       self.alive, self.ready)  # fmt: skip
        subscription = [f"^{s.topic_pattern}"] if s.topic_pattern else list(s.topics)
        self.consumer.subscribe(subscription, on_assign=self._assigned,
                                on_revoke=self._revoked, on_lost=self._lost)  # fmt: skip
        log.info("consuming %s in group %s from %s", ", ".join(subscription), s.group,
                 s.kafka.bootstrap)  # fmt: skip
        next_tick = next_commit = next_idle = next_lag = 0.0
        reading = False  # messages came since the last poll that found none
        try:
            while not self._stop.is_set():
                fetched = self.consumer.consume(s.batch_size, timeout=min(0.1, s.tick_interval))
                if fetched:
                    reading = True
                elif reading:  # caught up: what waits for a batch need not wait for a tick
                    reading = False
                    self.router.caught_up()
                messages = self.order.arrange(fetched)
                self._polled = True
                if any(msg.error() is None for msg in messages):
                    self.connection.connected()
                self.connection.tick()
                self.connection.raise_if_refused()  # a refusal is not retried: exit, say why
                for msg in messages:
                    self._handle(msg)
                if messages:
                    self.metrics.consumed.inc(len(messages))
                now = time.monotonic()
                self._last_loop = now
                if now >= next_tick:
                    self.router.tick()
                    next_tick = now + s.tick_interval
                if now >= next_idle:
                    for uid in self.router.idle_runs(s.idle_timeout):
                        self._release(uid, f"idle: no document for {s.idle_timeout:.0f} s")
                    next_idle = now + 1.0
                if now >= next_commit:
                    self.commit(asynchronous=True)
                    next_commit = now + s.commit_interval
                if now >= next_lag:
                    self._measure_lag()
                    next_lag = now + 5.0
        finally:
            self._shutdown()

    def _shutdown(self) -> None:
        log.info("stopping: committing what was processed")
        self.commit(asynchronous=False)
        self._forget(list(self.commit_points), "shutdown")
        try:
            self.consumer.close()
        except KafkaException as exc:
            log.warning("closing the consumer: %s", exc)
        if self.health is not None:
            self.health.close()

    # -- messages -------------------------------------------------------------

    def _handle(self, msg: Message) -> None:
        err = msg.error()
        if err is not None:
            if err.code() != KafkaError._PARTITION_EOF:
                log.warning("consumer error: %s", err)
            return
        tp = (msg.topic(), msg.partition())
        point = self.commit_points.get(tp)
        if point is None:  # from a partition revoked while the batch was in hand
            return
        try:
            ready, lost = self._read(tp, msg)
        except (schemas.ContractError, RoutingError) as exc:
            ready, lost = [], [(msg, exc)]
        except KeyError as exc:  # a valid document missing a field routing needs
            ready, lost = [], [(msg, RoutingError(f"missing field {exc}"))]
        for origin, exc in lost:
            self._dead_letter(origin, exc)
        for doc in ready:
            self._route(tp, point, doc)
        point.processed(msg.offset())

    def _route(self, tp: TopicPart, point: CommitPoint, item: Numbered) -> None:
        """One document to its run; ``item.tag`` is the message it came in (held ones: earlier)."""
        msg: Message = item.tag
        try:
            routed = self.router.route(tp, item.run, item.seq, item.name, item.doc)
            if routed and item.name == "start":
                point.run_opened(item.run, msg.offset())
            if item.name == "stop":
                point.run_closed(item.run, msg.offset())
        except RoutingError as exc:
            self._dead_letter(msg, exc)
        except KeyError as exc:
            self._dead_letter(msg, RoutingError(f"missing field {exc}"))

    def _read(
        self, tp: TopicPart, msg: Message
    ) -> tuple[list[Numbered], list[tuple[Message, Exception]]]:
        """What the message makes ready for its run(s), and what goes to the dead letters.

        Ours: the message itself. Legacy (`legacy`): maybe documents held back before it too.
        """
        headers = schemas.Headers.from_kafka(msg.headers())
        name, doc = schemas.decode(msg.value())
        if headers is not None:
            key = msg.key()
            if key is None or key.decode(errors="replace") != headers.run:
                raise RoutingError(f"key {key!r} is not the run header {headers.run!r}")
            if name != headers.doc:
                raise RoutingError(f"value holds a {name}, the doc header says {headers.doc}")
        if self.settings.validate_documents:
            schemas.validate(name, doc)
        if headers is None:
            ready, unkeyed = self.legacy.sort(tp, name, doc, msg)
            return ready, [(u.tag, RoutingError(u.reason)) for u in unkeyed]
        return [Numbered(headers.run, headers.seq, name, doc, msg)], []

    def _dead_letter(self, msg: Message, exc: Exception) -> None:
        kind = type(exc).__name__
        reason = f"{kind}: {exc}"
        self.metrics.dead_letters.labels(kind).inc()
        log.warning("dead letter from %s/%d/%d: %s", msg.topic(), msg.partition(), msg.offset(),
                    reason)  # fmt: skip
        self.dead_letters.send(msg, reason)

    def _release(self, uid: str, reason: str) -> None:
        run = self.router.runs.get(uid)
        if run is None:
            return
        self.router.abandon(uid, reason)
        for lost in self.legacy.forget_run(run.partition, uid):
            self._dead_letter(lost.tag, RoutingError(lost.reason))
        point = self.commit_points.get(run.partition)
        if point is not None:
            point.run_closed(uid)

    # -- offsets --------------------------------------------------------------

    def commit(self, asynchronous: bool = True, only: list[TopicPart] | None = None) -> None:
        offsets = []
        for tp, point in self.commit_points.items():
            if only is not None and tp not in only:
                continue
            offset = point.to_commit()
            if offset is not None:
                offsets.append((tp, point, offset))
        if not offsets:
            return
        if not self.dead_letters.flush(10):
            log.error("dead letters not acknowledged: offsets stay where they are")
            return
        try:
            self.consumer.commit(
                offsets=[TopicPartition(t, p, o) for (t, p), _, o in offsets],
                asynchronous=asynchronous,
            )
        except KafkaException as exc:
            log.warning("commit failed (%s); it is retried", exc)
            return
        for _, point, offset in offsets:
            point.committed = offset

    def _measure_lag(self) -> None:
        for (topic, partition), point in list(self.commit_points.items()):
            if point.next_offset is None:
                continue
            try:
                _low, high = self.consumer.get_watermark_offsets(
                    TopicPartition(topic, partition), timeout=1, cached=True
                )
            except KafkaException:
                continue
            if high >= 0:
                lag = max(0, high - point.next_offset)
                self._lags[(topic, partition)] = lag
                self.metrics.lag.labels(topic, str(partition)).set(lag)
                self._lag_reported.add((topic, partition))

    def _waiting(self) -> str:
        lags = [self._lags[tp] for tp in self.commit_points if tp in self._lags]
        lag = f"lag {sum(lags)} messages on {len(lags)} partitions" if lags else "lag unknown"
        return f"{lag}, {len(self.router.runs)} runs open"

    def _kafka_answers(self) -> bool:
        try:
            self.consumer.list_topics(timeout=1)
        except KafkaException:
            return False
        return True

    # -- rebalancing ----------------------------------------------------------

    def _assigned(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        self.connection.connected()
        for p in partitions:
            self.commit_points[(p.topic, p.partition)] = CommitPoint()
        self.order.assigned((p.topic, p.partition) for p in partitions)
        log.info("assigned %s", ", ".join(f"{p.topic}/{p.partition}" for p in partitions) or "-")

    def _revoked(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        lost = [(p.topic, p.partition) for p in partitions]
        self.commit(asynchronous=False, only=lost)
        if self._stop.is_set():
            self._forget(lost, "shutdown")
        else:
            self._forget(lost, "revoked")

    def _lost(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        self._forget([(p.topic, p.partition) for p in partitions], "lost")

    def _forget(self, parts: list[TopicPart], event: str) -> None:
        """Partitions no longer ours (``event``: shutdown, revoked or lost). Their open runs
        are abandoned here, to be replayed whole by the partitions' next owner."""
        parts = [tp for tp in parts if tp in self.commit_points]
        reason = f"{event}: {_LEFT_MID_RUN[event]}"
        left = 0
        for tp in parts:
            for uid in self.router.runs_in(tp):
                self.router.abandon(uid, reason, remember=False)
                left += 1
            self.commit_points.pop(tp, None)
            self.legacy.forget_partition(tp)
            self._lags.pop(tp, None)
            if tp in self._lag_reported:
                self._lag_reported.discard(tp)
                self.metrics.lag.remove(tp[0], str(tp[1]))
        self.order.released(parts)
        if parts:
            runs = f"{left} open run(s) left to their next owner" if left else "no run open"
            log.info("released %s (%s; %s)", ", ".join(f"{t}/{p}" for t, p in parts), event, runs)
