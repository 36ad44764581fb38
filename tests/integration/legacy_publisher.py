"""bluesky-kafka's own Publisher runs seed plans onto a topic, as beamlines publish today.

Run as a process (``python -m tests.integration.legacy_publisher BOOTSTRAP TOPIC OUT PLAN...``):
bluesky_kafka patches msgpack for the whole interpreter when imported. Every emitted
document is also written to OUT (4-byte length + runstream's encoding) for the test
to compare against. Resources go to the topic without ``run_start``, as older bluesky
emitted them (`tests.unlabeled_runs.old_style`); OUT keeps it, as the truth.
"""

from __future__ import annotations

import sys
from pathlib import Path

from bluesky import RunEngine
from bluesky_kafka import Publisher

from runstream import schemas
from runstream.producer.plans import nested_runs, recursive_runs, sequential_runs
from tests.unlabeled_runs import nested_detector_runs, old_style

PLANS = {"nested_runs": nested_runs, "recursive_runs": recursive_runs,
         "sequential_runs": sequential_runs}  # fmt: skip
#: Plans that write files, given a folder beside OUT.
FILE_PLANS = {"nested_detector_runs": nested_detector_runs}
#: bluesky-kafka's producers use one key for every document of a beamline.
KEY = "legacy-beamline"


def main(bootstrap: str, topic: str, out: str, *plans: str) -> None:
    publisher = Publisher(topic=topic, bootstrap_servers=bootstrap, key=KEY,
                          producer_config={"enable.idempotence": True},
                          flush_on_stop_doc=True)  # fmt: skip
    RE = RunEngine({})
    RE.subscribe(lambda name, doc: publisher(name, old_style(name, doc)))
    with Path(out).open("ab") as f:

        def keep(name: str, doc: dict) -> None:
            value = schemas.encode(name, doc)
            f.write(len(value).to_bytes(4, "big") + value)

        RE.subscribe(keep)
        for plan in plans:
            if plan in FILE_PLANS:
                RE(FILE_PLANS[plan](Path(out).parent / "files", 3))
            else:
                RE(PLANS[plan](3))
    publisher.flush()


def read_emitted(path: Path) -> list[tuple[str, dict]]:
    data, docs, at = path.read_bytes(), [], 0
    while at < len(data):
        size = int.from_bytes(data[at : at + 4], "big")
        docs.append(schemas.decode(data[at + 4 : at + 4 + size]))
        at += 4 + size
    return docs


if __name__ == "__main__":
    main(*sys.argv[1:])
