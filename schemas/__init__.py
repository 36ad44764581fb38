"""The runstream wire contract (version 1), shared by `producer` and `consumers`.

A Kafka message is one event-model document: the key is its run's start uid,
the value is ``msgpack([name, doc])`` and the headers carry the routing facts.
"""

from .codec import DOCUMENT_NAMES, decode, encode
from .errors import (
    CommandError,
    ContractError,
    DecodeError,
    EncodeError,
    RunstreamError,
    ValidationError,
)
from .headers import CONTRACT_VERSION, Headers
from .keys import RunIndex
from .partition import murmur2, partition_for
from .service import CONTROLS, Control, Health, health
from .topics import dead_letter_topic, document_topic
from .unlabeled import Keyed, RunKeys, Unkeyed
from .validation import validate

__all__ = [
    "CONTRACT_VERSION",
    "CONTROLS",
    "DOCUMENT_NAMES",
    "CommandError",
    "ContractError",
    "Control",
    "DecodeError",
    "EncodeError",
    "Headers",
    "Health",
    "Keyed",
    "RunIndex",
    "RunKeys",
    "RunstreamError",
    "Unkeyed",
    "ValidationError",
    "dead_letter_topic",
    "decode",
    "document_topic",
    "encode",
    "health",
    "murmur2",
    "partition_for",
    "validate",
]
