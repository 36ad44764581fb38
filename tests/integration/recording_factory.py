"""A RunRouter factory for consumer processes under test: every run's documents to a file.

Files go to $RUNSTREAM_TEST_RECORD_DIR/<start uid>.<pid>.jsonl, one line per
document: [name, identity], identity being the document's uid (datum id for
datums, seq_num for events of a page).
"""

from __future__ import annotations

import json
import os
from pathlib import Path


def identity(name: str, doc: dict) -> object:
    if name == "event_page":
        return doc["seq_num"]
    return doc.get("uid") or doc.get("datum_id")


def factory(name: str, start: dict):
    path = Path(os.environ["RUNSTREAM_TEST_RECORD_DIR"]) / f"{start['uid']}.{os.getpid()}.jsonl"
    out = open(path, "w")  # noqa: SIM115 (open for the life of the run)

    def record(name: str, doc: dict) -> None:
        out.write(json.dumps([name, identity(name, doc)]) + "\n")
        out.flush()
        if name == "stop":
            out.close()

    return [record], []
