"""The lineage preprocessor: every start document says which run key it ran under and
which run was open around it.

The run key (`bpp.set_run_key_decorator`) lives only on the RunEngine's messages
and the parent of a nested or recursive run is nowhere in the documents, so
without this a consumer cannot relate an inner run to its outer one.

    RE.preprocessors.append(producer.lineage)
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from bluesky.preprocessors import plan_mutator
from bluesky.utils import Msg

Plan = Generator[Msg, Any, Any]


def lineage(plan: Plan) -> Plan:
    """Add ``run_key`` and ``parent_uid`` to the metadata of every ``open_run``.

    Values the plan put in its metadata itself are left alone.
    """
    open_runs: list[tuple[Any, str]] = []  # (run key, uid), innermost last
    ours: set[int] = set()

    def annotate(msg: Msg) -> tuple[Plan | None, None]:
        if id(msg) in ours:
            return None, None
        if msg.command == "open_run":
            extra = {}
            if "run_key" not in msg.kwargs:  # None: the RunEngine's default run key
                extra["run_key"] = None if msg.run is None else str(msg.run)
            if open_runs and "parent_uid" not in msg.kwargs:
                extra["parent_uid"] = open_runs[-1][1]
            tagged = msg._replace(kwargs={**msg.kwargs, **extra})
            ours.add(id(tagged))

            def head() -> Plan:
                uid = yield tagged
                open_runs.append((msg.run, uid))
                return uid

            return head(), None
        if msg.command == "close_run":
            for i in range(len(open_runs) - 1, -1, -1):
                if open_runs[i][0] == msg.run:
                    del open_runs[i]
                    break
        return None, None

    return (yield from plan_mutator(plan, annotate))
