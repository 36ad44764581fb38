"""Codec and validation speed, against msgpack-numpy and event-model's jsonschema validators.

Run: python tests/benchmarks/bench_codec.py  -> one JSON line of figures.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable

import event_model
import msgpack
import msgpack_numpy
import numpy as np
from bluesky import RunEngine
from bluesky.plans import count
from ophyd.sim import det

from runstream import schemas


def _rate(fn: Callable[[], object], items: int, min_seconds: float = 1.0) -> float:
    """Items per second of ``fn`` (which handles ``items`` items), best of repeats."""
    best = float("inf")
    spent = 0.0
    while spent < min_seconds:
        t0 = time.perf_counter()
        fn()
        dt = time.perf_counter() - t0
        best = min(best, dt)
        spent += dt
    return items / best


def run_documents() -> list[tuple[str, dict]]:
    RE = RunEngine({})
    docs: list[tuple[str, dict]] = []
    RE.subscribe(lambda name, doc: docs.append((name, copy.deepcopy(doc))))
    RE(count([det], num=2000))
    return docs


def codec_figures(docs: list[tuple[str, dict]]) -> dict:
    ours = [schemas.encode(n, d) for n, d in docs]
    theirs = [msgpack.packb([n, d], default=msgpack_numpy.encode) for n, d in docs]
    n = len(docs)
    return {
        "documents": n,
        "bytes_per_doc": round(sum(map(len, ours)) / n, 1),
        "pack_docs_per_s": round(_rate(lambda: [schemas.encode(a, b) for a, b in docs], n)),
        "unpack_docs_per_s": round(_rate(lambda: [schemas.decode(v) for v in ours], n)),
        "msgpack_numpy_pack_docs_per_s": round(
            _rate(lambda: [msgpack.packb([a, b], default=msgpack_numpy.encode) for a, b in docs], n)
        ),
        "msgpack_numpy_unpack_docs_per_s": round(
            _rate(
                lambda: [
                    msgpack.unpackb(v, object_hook=msgpack_numpy.decode, raw=False) for v in theirs
                ],
                n,
            )
        ),
    }


def image_figures() -> dict:
    image = np.random.default_rng(0).random((512, 512))
    event = {"uid": "u", "descriptor": "d", "seq_num": 1, "time": 1.0,
             "data": {"img": image}, "timestamps": {"img": 1.0}, "filled": {}}  # fmt: skip
    ours = schemas.encode("event", event)
    theirs = msgpack.packb(["event", event], default=msgpack_numpy.encode)
    reps = 50

    def per_s(one: Callable[[], object]) -> int:
        return round(_rate(lambda: [one() for _ in range(reps)], reps))

    return {
        "image_bytes": len(ours),
        "image_pack_per_s": per_s(lambda: schemas.encode("event", event)),
        "image_unpack_per_s": per_s(lambda: schemas.decode(ours)),
        "msgpack_numpy_image_pack_per_s": per_s(
            lambda: msgpack.packb(["event", event], default=msgpack_numpy.encode)
        ),
        "msgpack_numpy_image_unpack_per_s": per_s(
            lambda: msgpack.unpackb(theirs, object_hook=msgpack_numpy.decode, raw=False)
        ),
    }


def validation_figures(docs: list[tuple[str, dict]]) -> dict:
    events = [d for n, d in docs if n == "event"]
    jsonschema_validate = event_model.schema_validators[event_model.DocumentNames.event].validate
    ours = _rate(lambda: [schemas.validate("event", e) for e in events], len(events))
    theirs = _rate(lambda: [jsonschema_validate(e) for e in events[:500]], 500)
    return {
        "validate_events_per_s": round(ours),
        "jsonschema_validate_events_per_s": round(theirs),
        "validate_speedup": round(ours / theirs, 1),
    }


def main() -> None:
    docs = run_documents()
    figures = {"benchmark": "codec", **codec_figures(docs), **image_figures(),
               **validation_figures(docs)}  # fmt: skip
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
