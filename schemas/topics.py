"""Topic names (NSLS-II's convention)."""

from __future__ import annotations

import re

DOCUMENTS_SUFFIX = "bluesky.runengine.documents"
DEAD_LETTER_SUFFIX = ".dlq"
_LEGAL = re.compile(r"^[A-Za-z0-9._-]{1,249}$")


def document_topic(prefix: str) -> str:
    """``<prefix>.bluesky.runengine.documents``; an empty prefix gives the bare suffix."""
    topic = f"{prefix}.{DOCUMENTS_SUFFIX}" if prefix else DOCUMENTS_SUFFIX
    return check_topic(topic)


def dead_letter_topic(topic: str) -> str:
    return check_topic(topic + DEAD_LETTER_SUFFIX)


def check_topic(topic: str) -> str:
    """Refuse names Kafka would refuse, before a broker has to say so."""
    if not _LEGAL.match(topic) or topic in {".", ".."}:
        raise ValueError(
            f"illegal Kafka topic name {topic!r}: use 1-249 characters of [A-Za-z0-9._-]"
        )
    return topic
