"""Kafka headers: routing facts readable without decoding the value."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from .codec import DOCUMENT_NAMES
from .errors import DecodeError

CONTRACT_VERSION = 1
CONTENT_TYPE = "application/msgpack; numpy=msgpack-numpy"

DOC, RUN, SEQ, VERSION, PRODUCER, CONTENT = "doc", "run", "seq", "v", "producer", "ct"
# Added by consumers when they dead-letter a message.
DLQ_REASON = "dlq.reason"
DLQ_SOURCE = "dlq.source"

KafkaHeaders = list[tuple[str, bytes]]


@dataclass(frozen=True, slots=True)
class Headers:
    doc: str
    run: str
    seq: int
    producer: str
    v: int = CONTRACT_VERSION
    ct: str = CONTENT_TYPE

    def to_kafka(self) -> KafkaHeaders:
        return [
            (DOC, self.doc.encode()),
            (RUN, self.run.encode()),
            (SEQ, str(self.seq).encode()),
            (VERSION, str(self.v).encode()),
            (PRODUCER, self.producer.encode()),
            (CONTENT, self.ct.encode()),
        ]

    @classmethod
    def from_kafka(cls, headers: Iterable[tuple[str, bytes | None]] | None) -> Headers:
        """Parse and check a message's headers; anything missing or malformed raises."""
        found: dict[str, bytes | None] = dict(headers or ())
        missing = [k for k in (DOC, RUN, SEQ, VERSION) if found.get(k) is None]
        if missing:
            raise DecodeError(f"missing header(s): {', '.join(missing)}")
        try:
            doc = found[DOC].decode()
            run = found[RUN].decode()
            seq = int(found[SEQ])
            version = int(found[VERSION])
            producer = (found.get(PRODUCER) or b"").decode()
            ct = (found.get(CONTENT) or CONTENT_TYPE.encode()).decode()
        except (UnicodeDecodeError, ValueError) as exc:
            raise DecodeError(f"malformed header: {exc}") from exc
        if version != CONTRACT_VERSION:
            raise DecodeError(f"unsupported contract version {version}")
        if doc not in DOCUMENT_NAMES:
            raise DecodeError(f"unknown document name {doc!r} in header")
        if not run:
            raise DecodeError("empty run header")
        if seq < 0:
            raise DecodeError(f"negative seq {seq}")
        return cls(doc=doc, run=run, seq=seq, producer=producer, v=version, ct=ct)
