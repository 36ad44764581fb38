"""Detector frames a run's documents point at: its stream resources and stream datums.

A `stream_resource` names a file and a dataset for one data key; each `stream_datum`
says which of the file's indices belong to which events (``seq_nums``). The Tiled
writer, as TiledWriter does, concatenates a key's datums in arrival order into one
array node ``<run>/<stream>/<key>`` whose first axis is that order: so the n-th
index a key received is frame n in Tiled, and a row's frame number follows from its
seq_num. Only these numbers are kept here; the pixels stay in the files and in Tiled.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import urlparse

log = logging.getLogger(__name__)

IMAGE = "image"
SPECTRUM = "spectrum"
SCALAR = "scalar"


def frame_kind(shape: Sequence[int]) -> str:
    """``image`` for 2-D or more per event (a stack shows its first image), ``spectrum`` for
    1-D of more than one value, else ``scalar`` (shown in the table only)."""
    dims = [int(n) for n in shape]
    if len(dims) >= 2:
        return IMAGE
    if len(dims) == 1 and dims[0] > 1:
        return SPECTRUM
    return SCALAR


def frame_slice(index: int, shape: Sequence[int]) -> str:
    """Tiled's ``slice`` parameter for frame ``index`` of a key of per-event ``shape``: the
    leading axes of a stack at 0, so an image is 2-D and a spectrum 1-D."""
    kind = frame_kind(shape)
    keep = 2 if kind == IMAGE else 1 if kind == SPECTRUM else 0
    leading = max(0, len(shape) - keep)
    return ",".join([str(index), *["0"] * leading])


@dataclass
class Resource:
    """One ``stream_resource`` as the page lists it."""

    uid: str
    data_key: str
    uri: str
    mimetype: str
    dataset: str | None
    stream: str | None = None  # known from its first datum
    frames: int = 0

    def line(self, shape: Sequence[int] | None) -> dict[str, Any]:
        path = urlparse(self.uri).path or self.uri
        return {"uid": self.uid, "data_key": self.data_key, "stream": self.stream,
                "file": PurePosixPath(path).name, "uri": self.uri, "mimetype": self.mimetype,
                "dataset": self.dataset, "shape": list(shape) if shape is not None else None,
                "frames": self.frames}  # fmt: skip


@dataclass
class KeyFrames:
    """One external data key of a stream: its datums as (first seq_num, events, first frame,
    frames), in arrival order."""

    count: int = 0
    spans: list[tuple[int, int, int, int]] = field(default_factory=list)

    def add(self, seq_start: int, seq_stop: int, frames: int) -> None:
        self.spans.append((seq_start, max(1, seq_stop - seq_start), self.count, frames))
        self.count += frames

    def frame_of(self, seq_num: int) -> int | None:
        """The frame (Tiled's first axis) of the event ``seq_num``, None when no datum has it."""
        for first_seq, events, first_frame, frames in reversed(self.spans):
            if first_seq <= seq_num < first_seq + events:
                return first_frame + (seq_num - first_seq) * frames // events
        return None


class RunFrames:
    """A run's stream resources and, per stream and key, its frames so far."""

    def __init__(self, uid: str) -> None:
        self.uid = uid
        self.resources: dict[str, Resource] = {}
        self.keys: dict[str, dict[str, KeyFrames]] = {}  # stream -> data key -> frames

    def add_resource(self, doc: Mapping[str, Any]) -> None:
        parameters = doc.get("parameters") or {}
        self.resources[doc["uid"]] = Resource(
            uid=doc["uid"], data_key=str(doc.get("data_key", "")), uri=str(doc.get("uri", "")),
            mimetype=str(doc.get("mimetype", "")),
            dataset=parameters.get("dataset") if isinstance(parameters, Mapping) else None,
        )  # fmt: skip

    def add_datum(self, stream: str, doc: Mapping[str, Any]) -> None:
        resource = self.resources.get(doc.get("stream_resource", ""))
        if resource is None:
            log.warning("run %s: stream_datum %s for unknown stream_resource %s", self.uid,
                        doc.get("uid"), doc.get("stream_resource"))  # fmt: skip
            return
        seq, indices = doc.get("seq_nums") or {}, doc.get("indices") or {}
        frames = int(indices.get("stop", 0)) - int(indices.get("start", 0))
        if frames <= 0:
            return
        resource.stream = stream
        resource.frames += frames
        key = self.keys.setdefault(stream, {}).setdefault(resource.data_key, KeyFrames())
        key.add(int(seq.get("start", 0)), int(seq.get("stop", 0)), frames)

    def counts(self) -> dict[str, dict[str, int]]:
        """Frames so far per stream and key (the page follows these numbers)."""
        return {s: {k: f.count for k, f in keys.items()} for s, keys in self.keys.items()}

    def of(self, stream: str, key: str) -> KeyFrames | None:
        return self.keys.get(stream, {}).get(key)

    def label_rows(self, stream: str, rows: list[dict[str, Any]]) -> None:
        """Each row's frame number in its external keys' cells (the events carry none)."""
        for key, frames in self.keys.get(stream, {}).items():
            for row in rows:
                frame = frames.frame_of(row["seq_num"])
                if frame is not None:
                    row["cells"][key] = f"frame {frame}"
