"""A RunEngine process for the crash test: runs the nested plan and hangs inside the inner run.

Usage: python -m tests.integration.engine_crash_child TOPIC BOOTSTRAP OUTBOX EMITTED READY

Every emitted document is written (name, run, seq order) to EMITTED; READY
appears once the inner run has some events; then the plan waits to be killed.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import bluesky.plan_stubs as bps
import bluesky.preprocessors as bpp
from bluesky import RunEngine

from runstream.producer import KafkaPublisher, lineage
from runstream.producer.plans import sim_hw


def main() -> None:
    topic, bootstrap, outbox, emitted, ready = sys.argv[1:6]
    hw = sim_hw()
    publisher = KafkaPublisher(topic, bootstrap, outbox, partitions=2)
    RE = RunEngine({})
    RE.preprocessors.append(lineage)
    log = open(emitted, "a")  # noqa: SIM115

    def record(name: str, doc: dict) -> None:
        log.write(json.dumps([name, doc.get("uid") or doc.get("run_start")]) + "\n")
        log.flush()

    RE.subscribe(publisher)
    RE.subscribe(record)

    def mark_ready():
        Path(ready).write_text("inner run has events")
        yield from bps.null()

    @bpp.set_run_key_decorator("run_2")
    @bpp.run_decorator(md={})
    def inner():
        for j in range(5):
            yield from bps.mov(hw.motor1, j)
            yield from bps.trigger_and_read([hw.motor1, hw.det2])
        yield from mark_ready()
        while True:
            yield from bps.sleep(0.1)

    @bpp.set_run_key_decorator("run_1")
    @bpp.run_decorator(md={})
    def outer():
        for j in range(3):
            yield from bps.mov(hw.motor, j)
            yield from bps.trigger_and_read([hw.motor, hw.det])
        yield from inner()

    RE(outer())
    time.sleep(3600)


if __name__ == "__main__":
    main()
