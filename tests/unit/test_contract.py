"""Headers, the key rule, topic names and validation."""

from __future__ import annotations

import pytest

from runstream import schemas
from runstream.schemas import DecodeError, Headers, RunIndex, ValidationError
from runstream.schemas.topics import check_topic
from tests.seed_documents import seed_documents


def test_headers_round_trip() -> None:
    h = Headers(doc="event", run="uid-1", seq=7, producer="engine-a")
    assert Headers.from_kafka(h.to_kafka()) == h
    assert dict(h.to_kafka())["seq"] == b"7"


@pytest.mark.parametrize(
    "headers,match",
    [
        ([("v", b"1")], "missing .*: doc, run, seq"),
        ([("doc", b"event"), ("run", b"u"), ("v", b"1")], "seq"),
        ([("doc", b"event"), ("run", b"u"), ("seq", b"x"), ("v", b"1")], "malformed"),
        ([("doc", b"event"), ("run", b"u"), ("seq", b"-1"), ("v", b"1")], "negative"),
        ([("doc", b"event"), ("run", b"u"), ("seq", b"1"), ("v", b"2")], "version"),
        ([("doc", b"nope"), ("run", b"u"), ("seq", b"1"), ("v", b"1")], "unknown"),
        ([("doc", b"event"), ("run", b""), ("seq", b"1"), ("v", b"1")], "empty"),
        ([("doc", b"\xff"), ("run", b"u"), ("seq", b"1"), ("v", b"1")], "malformed"),
        ([("doc", None), ("run", b"u"), ("seq", b"1"), ("v", b"1")], "missing"),
    ],
)
def test_bad_headers(headers, match: str) -> None:
    with pytest.raises(DecodeError, match=match):
        Headers.from_kafka(headers)


@pytest.mark.parametrize(
    "headers", [None, [], [("doc", b"start"), ("run", b"u"), ("seq", b"0")], [("x", b"1")]]
)
def test_without_a_version_header_a_message_is_legacy(headers) -> None:
    assert Headers.from_kafka(headers) is None


def test_every_seed_document_maps_to_its_run() -> None:
    for plan, docs in seed_documents().items():
        index = RunIndex()
        starts = [d["uid"] for n, d in docs if n == "start"]
        seen: dict[str, list[str]] = {}
        # the truth, from the documents themselves
        desc_run = {d["uid"]: d["run_start"] for n, d in docs if n == "descriptor"}
        for name, doc in docs:
            run = index.run_of(name, doc)
            truth = {
                "start": doc.get("uid"),
                "descriptor": doc.get("run_start"),
                "stop": doc.get("run_start"),
                "event": desc_run.get(doc.get("descriptor")),
            }[name]
            assert run == truth, (plan, name)
            seen.setdefault(run, []).append(name)
        assert sorted(seen) == sorted(starts)
        assert index.open_runs == []  # everything forgotten at the stops


def test_key_rule_for_pages_resources_and_stream_documents() -> None:
    index = RunIndex()
    assert index.run_of("start", {"uid": "R"}) == "R"
    assert index.run_of("descriptor", {"uid": "D", "run_start": "R"}) == "R"
    assert index.run_of("event_page", {"descriptor": "D"}) == "R"
    assert index.run_of("resource", {"uid": "S", "run_start": "R"}) == "R"
    assert index.run_of("datum", {"resource": "S", "datum_id": "S/0"}) == "R"
    assert index.run_of("datum_page", {"resource": "S", "datum_id": ["S/1"]}) == "R"
    assert index.run_of("stream_resource", {"uid": "SR", "run_start": "R"}) == "R"
    assert index.run_of("stream_datum", {"stream_resource": "SR", "descriptor": "D"}) == "R"
    # a stream resource without run_start: the stream datum falls back to its descriptor
    assert index.run_of("stream_resource", {"uid": "SR2"}) is None
    assert index.run_of("stream_datum", {"stream_resource": "SR2", "descriptor": "D"}) == "R"
    assert index.run_of("event", {"descriptor": "unknown"}) is None
    assert index.run_of("stop", {"run_start": "R"}) == "R"
    assert index.run_of("event", {"descriptor": "D"}) is None  # forgotten at the stop
    assert index.open_runs == []


def test_nested_runs_keep_separate_maps() -> None:
    index = RunIndex()
    index.run_of("start", {"uid": "outer"})
    index.run_of("descriptor", {"uid": "d1", "run_start": "outer"})
    index.run_of("start", {"uid": "inner"})
    index.run_of("descriptor", {"uid": "d2", "run_start": "inner"})
    assert index.run_of("event", {"descriptor": "d2"}) == "inner"
    index.run_of("stop", {"run_start": "inner"})
    assert index.run_of("event", {"descriptor": "d1"}) == "outer"
    assert index.open_runs == ["outer"]


def test_topic_names() -> None:
    assert schemas.document_topic("csx") == "csx.bluesky.runengine.documents"
    assert schemas.dead_letter_topic("a.b") == "a.b.dlq"
    for bad in ["", "has space", "x" * 250, "..", "slash/no"]:
        with pytest.raises(ValueError, match="illegal"):
            check_topic(bad)


def test_validator_accepts_everything_the_runengine_emits() -> None:
    import copy

    count = 0
    for docs in seed_documents().values():
        for name, doc in docs:
            before = copy.deepcopy(doc)
            schemas.validate(name, doc)
            assert doc == before, f"validating a {name} changed it"  # no schema defaults filled in
            count += 1
    assert count > 50


@pytest.mark.parametrize(
    "name,mutate,field",
    [
        ("event", lambda d: d.pop("seq_num"), "seq_num"),
        ("event", lambda d: d.update(seq_num="three"), "seq_num"),
        ("event", lambda d: d.update(time=None), "time"),
        ("event", lambda d: d.update(surprise=1), "surprise"),
        ("start", lambda d: d.pop("uid"), "uid"),
        ("start", lambda d: d.update(time="noon"), "time"),
        ("descriptor", lambda d: d.update(data_keys=[]), "data_keys"),
        ("stop", lambda d: d.update(exit_status="meh"), "exit_status"),
    ],
)
def test_validator_rejects_with_the_field_named(name: str, mutate, field: str) -> None:
    docs = seed_documents()["nested_runs"]
    doc = dict(next(d for n, d in docs if n == name))
    mutate(doc)
    with pytest.raises(ValidationError, match=field):
        schemas.validate(name, doc)


def test_fast_path_never_accepts_what_the_full_validator_rejects() -> None:
    import contextlib
    import random

    import fastjsonschema

    from runstream.schemas.validation import _validators

    rng = random.Random(7)
    odd_values = [None, "x", 3, 2.5, True, [], {}, {"k": object}, ["a"], {"k": 1}]
    checked = 0
    for docs in seed_documents().values():
        for name, doc in docs:
            quick, full = _validators(name)
            if quick is None:
                continue
            for _ in range(40):
                mutant = dict(doc)
                roll = rng.random()
                key = rng.choice(list(mutant))
                if roll < 0.3:
                    del mutant[key]
                elif roll < 0.5:
                    mutant[f"extra{rng.randint(0, 3)}"] = 1
                else:
                    mutant[key] = rng.choice(odd_values)
                if quick(mutant):
                    full(mutant)  # must not raise
                    checked += 1
                else:
                    with contextlib.suppress(fastjsonschema.JsonSchemaValueException):
                        full(mutant)
    assert checked > 0
