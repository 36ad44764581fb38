"""Documents a real RunEngine emits for the seed's plans, recorded once per session."""

from __future__ import annotations

import copy
from functools import cache

from bluesky import RunEngine

from runstream.producer.plans import SEED_PLANS


@cache
def seed_documents() -> dict[str, tuple[tuple[str, dict], ...]]:
    """{plan name: ((name, doc), ...)} as emitted, deep-copied."""
    RE = RunEngine({})
    out: dict[str, tuple[tuple[str, dict], ...]] = {}
    for plan_name, plan in SEED_PLANS.items():
        docs: list[tuple[str, dict]] = []
        token = RE.subscribe(lambda name, doc, docs=docs: docs.append((name, copy.deepcopy(doc))))
        RE(plan(5))
        RE.unsubscribe(token)
        out[plan_name] = tuple(docs)
    return out
