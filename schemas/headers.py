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


@dataclass(slots=True)
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
    def from_kafka(cls, headers: Iterable[tuple[str, bytes | None]] | None) -> Headers | None:
        """Parse and check a message's headers; anything missing or malformed raises.

        None when there is no ``v`` header: a legacy message, as bluesky-kafka's
        Publisher writes them (no headers at all), whose run the document names.
        """
        doc = run = seq = version = None
        producer = ct = b""
        for key, value in headers or ():
            if key == DOC:
                doc = value
            elif key == RUN:
                run = value
            elif key == SEQ:
                seq = value
            elif key == VERSION:
                version = value
            elif key == PRODUCER:
                producer = value or b""
            elif key == CONTENT:
                ct = value or b""
        if version is None:
            return None
        if doc is None or run is None or seq is None:
            missing = [k for k, v in ((DOC, doc), (RUN, run), (SEQ, seq)) if v is None]
            raise DecodeError(f"missing header(s): {', '.join(missing)}")
        try:
            header = cls(doc.decode(), run.decode(), int(seq), producer.decode(), int(version),
                         ct.decode() or CONTENT_TYPE)  # fmt: skip
        except (UnicodeDecodeError, ValueError) as exc:
            raise DecodeError(f"malformed header: {exc}") from exc
        if header.v != CONTRACT_VERSION:
            raise DecodeError(f"unsupported contract version {header.v}")
        if header.doc not in DOCUMENT_NAMES:
            raise DecodeError(f"unknown document name {header.doc!r} in header")
        if not header.run:
            raise DecodeError("empty run header")
        if header.seq < 0:
            raise DecodeError(f"negative seq {header.seq}")
        return header
