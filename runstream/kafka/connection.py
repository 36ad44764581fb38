"""What a Kafka client says about its connection: each change once, not a line per retry.

librdkafka reports every failed connection attempt (a broker that is away for a
minute makes well over a hundred lines). `ConnectionReport` takes librdkafka's
``error_cb`` and its log lines (``logger``) and says instead:

- one line when Kafka goes away (every broker unreachable for `AWAY_GRACE` s: a broker
  closing an idle connection, or one blip in a restart, is no outage), with librdkafka's
  reason;
- one line a minute while it is away, with what is waiting (outbox, lag);
- one line when it is back;
- one line when authentication or TLS fails, and why (wrong password, untrusted
  certificate, a plaintext client on a TLS port...).

The publisher, the consumer runtime and the dead-letter producer share it; each
passes `client_settings()` into its librdkafka configuration and calls
`connected()` when Kafka answers, `tick()` from its loop.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from typing import Any, Literal

from confluent_kafka import KafkaError

from runstream.schemas.errors import CommandError

#: librdkafka's error codes that the report reads from errors handed to ``error_cb``.
ALL_BROKERS_DOWN = KafkaError._ALL_BROKERS_DOWN
TRANSPORT = KafkaError._TRANSPORT
RESOLVE = KafkaError._RESOLVE
AUTHENTICATION = KafkaError._AUTHENTICATION
SSL = KafkaError._SSL
SASL_AUTHENTICATION_FAILED = KafkaError.SASL_AUTHENTICATION_FAILED
TOPIC_AUTHORIZATION_FAILED = KafkaError.TOPIC_AUTHORIZATION_FAILED
CLUSTER_AUTHORIZATION_FAILED = KafkaError.CLUSTER_AUTHORIZATION_FAILED
TIMED_OUT = KafkaError._TIMED_OUT
REQUEST_TIMED_OUT = KafkaError.REQUEST_TIMED_OUT

#: Topic-creation failures that only mean Kafka is away or slow (said by the report).
_QUIET_TOPIC_CODES = {TIMED_OUT, REQUEST_TIMED_OUT, TRANSPORT, ALL_BROKERS_DOWN, RESOLVE}
_AUTH_CODES = {AUTHENTICATION, SSL, SASL_AUTHENTICATION_FAILED}
#: librdkafka words one refusal several ways (the SSL error, the transport error around
#: it, the log line). A transport error in any of these words is a refusal, said once
#: per kind, not once per wording. The first kind that matches names it.
_REFUSAL_KINDS = tuple(
    (kind, re.compile(words, re.IGNORECASE))
    for kind, words in (
        ("credentials", r"invalid credentials|SASL authentication"),
        ("certificate", r"certificate verify failed"),
        ("protocol", r"wrong version number|incorrect security\.protocol"),
        ("handshake", r"SSL handshake failed|SASL|authenticat"),  # any other TLS/SASL refusal
    )
)
#: librdkafka log facilities that repeat per attempt; the report speaks for them.
_PER_ATTEMPT = {"FAIL", "ERROR", "BRKMAIN", "CONNECT", "AUTH", "SASL", "SSL"}
_PREFIX = re.compile(r"^(\[thrd:[^\]]*\]: )?(\S+://)?\S+:\d+/\S+: ")
#: librdkafka log facilities of retries it makes by itself: DEBUG, not recorded as a reason.
_SELF_RETRYING = {"GETPID", "METADATA", "REQTMOUT"}
_SUFFIX = re.compile(r"\s*\(after \d+ms in state \w+(, .*)?\)$")

State = Literal["unknown", "up", "down", "auth_failed"]
#: Seconds between two "still away" lines.
REMIND_INTERVAL = 60.0
#: Seconds every broker must stay unreachable before Kafka is said to be away.
AWAY_GRACE = 2.0
#: Seconds between two probes of a Kafka that is away.
PROBE_INTERVAL = 5.0


class KafkaAuthenticationError(CommandError):
    """Kafka refused our credentials or our TLS handshake: retrying will not help."""


def reason_of(text: str) -> str:
    """librdkafka's message without the broker prefix and the state-machine suffix."""
    return _SUFFIX.sub("", _PREFIX.sub("", text.strip()))


def refusal_kind(reason: str) -> str | None:
    """What a refusal means, whatever librdkafka's wording (credentials, certificate...);
    None when the text is no refusal."""
    for kind, words in _REFUSAL_KINDS:
        if words.search(reason):
            return kind
    return None


class ConnectionReport:
    """One client's connection to Kafka, reported once per change.

    ``who`` names the client in messages ("publisher", "consumer"); ``waiting``
    says what waits for Kafka (called for the "away" lines); ``probe`` returns
    True when Kafka answers, and is tried at most every `PROBE_INTERVAL` s while
    it is away (for clients with no traffic to notice the return by).
    """

    def __init__(
        self,
        log: logging.Logger,
        who: str,
        bootstrap: str,
        waiting: Callable[[], str] | None = None,
        probe: Callable[[], bool] | None = None,
        *,
        remind_interval: float = REMIND_INTERVAL,
        away_grace: float = AWAY_GRACE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._out = log
        self.who = who
        self.bootstrap = bootstrap
        self.waiting = waiting
        self.probe = probe
        self.remind_interval = remind_interval
        self.away_grace = away_grace
        self.clock = clock
        self.state: State = "unknown"
        self.auth_failure: str | None = None
        #: Attempts refused for credentials or TLS so far (each said once per reason).
        self.refusals = 0
        self._since = clock()
        self._reminded = self._since
        self._probed = self._since
        self._last_failure = ""
        #: The "away" line not said yet (said by `tick` after the grace): verb and reason.
        self._away: tuple[str, str] | None = None
        self._other_said: set[object] = set()
        self._lock = threading.Lock()
        self._librdkafka_log = logging.getLogger(f"{log.name}.librdkafka")

    # -- what librdkafka tells ------------------------------------------------------

    def client_settings(self) -> dict[str, Any]:
        """librdkafka settings that route its errors and log lines through this report."""
        return {"error_cb": self.error_cb, "logger": self}

    def error_cb(self, err: Any) -> None:
        """librdkafka's ``error_cb``: a ``KafkaError``."""
        code, text = err.code(), reason_of(err.str())
        if code in _AUTH_CODES or (code == TRANSPORT and refusal_kind(text) is not None):
            self.refusals += 1
            self.authentication_failed(text)
        elif code == ALL_BROKERS_DOWN:
            self.unreachable(self._last_failure or text)
        elif code in (TRANSPORT, RESOLVE):
            self._last_failure = text
        elif code in (TOPIC_AUTHORIZATION_FAILED, CLUSTER_AUTHORIZATION_FAILED):
            self.authentication_failed(f"not authorized: {text}")
        elif code not in self._other_said:  # anything else: once per kind until connected
            self._other_said.add(code)
            self._out.warning("Kafka (%s): %s", self.who, err.str())

    def log(self, level: int, msg: str, *args: Any) -> None:
        """The ``logger`` librdkafka writes to: per-attempt lines go to DEBUG."""
        facility = str(args[0]) if args else ""
        if facility in _PER_ATTEMPT:
            text = str(args[-1]) if args else msg
            self._last_failure = reason_of(text)
            self._librdkafka_log.debug(msg, *args)
        elif facility in _SELF_RETRYING:
            self._librdkafka_log.debug(msg, *args)
        else:
            self._librdkafka_log.log(level, msg, *args)

    # -- what the client tells ------------------------------------------------------

    def connected(self) -> None:
        """Kafka answered (an acknowledgement, a message, metadata). Cheap when nothing changed."""
        if self.state == "up":
            return
        with self._lock:
            was, away = self.state, self.clock() - self._since
            self.state, self.auth_failure, self._since = "up", None, self.clock()
            self._other_said.clear()
            unsaid, self._away = self._away, None
        if was == "down" and unsaid is not None:
            self._out.debug("Kafka at %s answered again after %.1f s (%s)", self.bootstrap, away,
                            self.who)  # fmt: skip
        elif was == "down":
            self._out.info("Kafka at %s is back after %.0f s (%s)", self.bootstrap, away,
                             self.who)  # fmt: skip
        elif was == "auth_failed":
            self._out.info("Kafka at %s accepts the %s's credentials now", self.bootstrap,
                             self.who)  # fmt: skip

    def unreachable(self, reason: str) -> None:
        """Every broker is out of reach: said once by `tick` if it lasts, until `connected`."""
        with self._lock:
            if self.state in ("down", "auth_failed"):
                return
            was = self.state
            self.state = "down"
            self._since = self._reminded = self._probed = self.clock()
            verb = "went away" if was == "up" else "cannot be reached"
            self._away = (verb, reason or "no broker answers")

    def _say_away(self) -> None:
        with self._lock:
            unsaid, self._away = self._away, None
        if unsaid is not None:
            verb, reason = unsaid
            self._out.warning("Kafka at %s %s (%s): %s%s", self.bootstrap, verb, self.who,
                              reason, self._waiting())  # fmt: skip

    def authentication_failed(self, reason: str) -> None:
        """Credentials or TLS refused: said once per kind of refusal (`refusal_kind`)."""
        with self._lock:
            kind = refusal_kind(reason) or reason
            said = self.auth_failure or ""
            if self.state == "auth_failed" and (refusal_kind(said) or said) == kind:
                return
            if self.state != "auth_failed":
                self._since = self._reminded = self._probed = self.clock()
            self.state, self.auth_failure, self._away = "auth_failed", reason, None
        self._out.error("Kafka authentication failed at %s (%s): %s%s", self.bootstrap,
                       self.who, reason, self._waiting())  # fmt: skip

    def tick(self) -> None:
        """Call from the client's loop: the minute lines, and probes while Kafka is away."""
        if self.state in ("up", "unknown"):
            return
        now = self.clock()
        if self.probe is not None and now - self._probed >= PROBE_INTERVAL:
            self._probed = now
            if self.probe():
                self.connected()
                return
        if self._away is not None and now - self._since >= self.away_grace:
            self._say_away()
        if now - self._reminded >= self.remind_interval:
            self._reminded = now
            what = "still away" if self.state == "down" else "still refuses authentication"
            self._out.warning("Kafka at %s %s after %.0f s (%s)%s", self.bootstrap, what,
                             now - self._since, self.who, self._waiting())  # fmt: skip

    def topic_not_ready(self, topic: str, err: Any) -> None:
        """A topic could not be made or found: said once per reason, unless Kafka is away."""
        code = err.code()
        if code in _QUIET_TOPIC_CODES or self.state in ("down", "auth_failed"):
            self._out.debug("topic %s not ready (%s): %s", topic, self.who, err.str())
            return
        key = (topic, code)
        if key in self._other_said:
            return
        self._other_said.add(key)
        self._out.warning("topic %s not ready (%s): %s%s", topic, self.who, err.str(),
                          self._waiting())  # fmt: skip

    def raise_if_refused(self) -> None:
        """For clients that stop on a refusal: raise `KafkaAuthenticationError` once refused."""
        if self.state == "auth_failed":
            raise KafkaAuthenticationError(
                f"Kafka authentication failed at {self.bootstrap}: {self.auth_failure}"
            )

    def _waiting(self) -> str:
        if self.waiting is None:
            return ""
        try:
            return f"; {self.waiting()}"
        except Exception as exc:  # a report must never break the client it reports on
            return f"; (what waits is unknown: {exc})"
