"""The Tiled writer: real broker, real Tiled server, real RunEngine."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import uuid

import numpy as np
from bluesky import RunEngine
from event_model import RunRouter
from tiled.client import from_uri
from tiled.queries import FullText, Key, KeyPresent

from runstream.consumers.tiled import connect_catalog, tiled_factory
from runstream.producer import KafkaPublisher, lineage
from runstream.producer.plans import nested_runs, recursive_runs, sequential_runs
from tests.integration.consumer_harness import ROOT, gated_run, running, settings
from tests.kafka_tools import unique_prefix
from tests.tiled_fixtures import runs_closed
from tests.waiting import eventually


def _reader(tiled_server, name):
    """The catalog as users read it: bluesky-tiled-plugins' CatalogOfBlueskyRuns."""
    return from_uri(tiled_server.url, api_key=tiled_server.api_key)[name]


def _rows(tiled_server, name: str, uid: str) -> int:
    """Rows of the run's primary stream readable now (0 before its table exists)."""
    cat = _reader(tiled_server, name)
    if uid not in cat or "primary" not in cat[uid]:
        return 0
    try:
        return cat[uid]["primary"].read().sizes.get("time", 0)
    except KeyError:
        return 0


def _engine(publisher, *, threaded: bool = False):
    RE = RunEngine({}, context_managers=[]) if threaded else RunEngine({})
    RE.preprocessors.append(lineage)
    emitted: list[tuple[str, dict]] = []
    RE.subscribe(publisher)
    RE.subscribe(lambda n, d: emitted.append((n, d)))
    return RE, emitted


def _complete(cat, uids) -> bool:
    return runs_closed(cat.refresh() if hasattr(cat, "refresh") else cat, uids)


def _retrying(records: list[logging.LogRecord]) -> bool:
    """A request to Tiled failed and is retried: by tiled's client (stamina says so), or past
    its tries by the writer's own policy."""
    return any(r.getMessage() == "stamina.retry_scheduled"
               or "retrying until Tiled answers" in r.getMessage() for r in records)  # fmt: skip


def _events(emitted, uid):
    descs = {d["uid"] for n, d in emitted if n == "descriptor" and d["run_start"] == uid}
    return [d for n, d in emitted if n == "event" and d["descriptor"] in descs]


def _tiled_service(bootstrap, topic, group, tiled_server, catalog):
    return subprocess.Popen(
        [sys.executable, "-m", "runstream.cli", "consume", "tiled", "--tiled-url",
         tiled_server.url, "--catalog", catalog, "--topic", topic, "--group", group,
         "--bootstrap", bootstrap, "--from-beginning", "--max-latency", "0.2"],
        cwd=ROOT, env={**os.environ, "RUNSTREAM_TILED_API_KEY": tiled_server.api_key,
                       "RUNSTREAM_SESSION_TIMEOUT_MS": "6000"},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def test_seed_plans_land_as_runs_users_can_find(kafka_bootstrap, new_topic, tiled_server, tmp_path):
    topic = new_topic(partitions=2)
    name = unique_prefix("cat")
    connect_catalog(tiled_server.url, tiled_server.api_key, name)
    service = _tiled_service(kafka_bootstrap, topic, unique_prefix("g"), tiled_server, name)
    publisher = KafkaPublisher(topic, kafka_bootstrap, tmp_path / "outbox", partitions=2)
    RE, emitted = _engine(publisher)
    try:
        uids = []
        for plan in (sequential_runs(4), nested_runs(4), recursive_runs(2)):
            uids += RE(plan)
        # and one run whose engine never ends it
        publisher("start", {"uid": "never-ends", "time": 1.0, "scan_id": 99, "plan_name": "x"})
        assert publisher.flush(30) == 0
        cat = _reader(tiled_server, name)
        eventually(lambda: _complete(_reader(tiled_server, name), uids), 60, "runs in Tiled")
        eventually(lambda: "never-ends" in _reader(tiled_server, name), 60, "the open run")
    finally:
        publisher.close()
        service.send_signal(signal.SIGTERM)
        assert service.wait(30) == 0
    cat = _reader(tiled_server, name)
    starts = {d["uid"]: d for n, d in emitted if n == "start"}
    stops = {d["run_start"]: d for n, d in emitted if n == "stop"}
    for uid in uids:
        run = cat[uid]
        assert run.metadata["start"]["uid"] == uid
        assert run.metadata["start"]["plan_name"] == starts[uid]["plan_name"]
        assert run.metadata["stop"]["exit_status"] == stops[uid]["exit_status"] == "success"
        events = _events(emitted, uid)
        data = run["primary"].read()
        for key in events[0]["data"]:
            np.testing.assert_allclose(data[key].values, [e["data"][key] for e in events])
        assert list(data["time"].values) == [e["time"] for e in events]
    assert cat[-1].metadata["start"]["uid"] == "never-ends"  # the last one written
    some = starts[uids[2]]
    assert cat[some["scan_id"]].metadata["start"]["uid"] == some["uid"]
    assert cat[some["uid"][:8]].metadata["start"]["uid"] == some["uid"]
    # the queries users type
    outer, inner = uids[2], uids[3]
    assert list(cat.search(Key("start.run_key") == "run_2")) == [inner]
    assert list(cat.search(Key("start.parent_uid") == outer)) == [inner]
    assert len(cat.search(Key("start.plan_name") == "recursive_runs")) == 3
    assert len(cat.search(Key("start.scan_id") == some["scan_id"])) >= 1
    assert set(cat.search(FullText("nested_runs"))) == {outer, inner}
    assert list(cat.search(KeyPresent("stop.uid", False))) == ["never-ends"]


def test_killed_writer_and_a_second_replay_write_rows_once(
    kafka_bootstrap, new_topic, tiled_server, tmp_path
):
    topic = new_topic(partitions=1)
    name = unique_prefix("cat")
    connect_catalog(tiled_server.url, tiled_server.api_key, name)
    group = unique_prefix("g")
    go_on = threading.Event()
    publisher = KafkaPublisher(topic, kafka_bootstrap, tmp_path / "outbox", partitions=1)
    RE, emitted = _engine(publisher, threaded=True)
    first = _tiled_service(kafka_bootstrap, topic, group, tiled_server, name)
    plan = gated_run(40, 15, go_on)
    engine = threading.Thread(target=lambda: RE(plan))
    engine.start()

    try:
        eventually(lambda: any(n == "start" for n, _ in emitted), 60, "the start")
        uid = emitted[0][1]["uid"]
        eventually(lambda: _rows(tiled_server, name, uid) >= 10, 60, "rows of the live run")
        first.send_signal(signal.SIGKILL)
        first.wait()
        go_on.set()
        engine.join(60)
        assert publisher.flush(30) == 0
        second = _tiled_service(kafka_bootstrap, topic, group, tiled_server, name)
        try:
            eventually(lambda: _complete(_reader(tiled_server, name), [uid]),
                       90, "the run replayed after the kill")  # fmt: skip
        finally:
            second.send_signal(signal.SIGTERM)
            assert second.wait(30) == 0
    finally:
        go_on.set()
        first.kill()  # killed above on the way; here too if the test failed before that
        first.wait()
        publisher.close()
    # the whole topic a second time, by a new group
    catalog = connect_catalog(tiled_server.url, tiled_server.api_key, name)
    stops = []
    writers = tiled_factory(catalog, max_latency=0.2)

    def factory(n, start):
        callbacks, sub = writers(n, start)
        return [*callbacks, lambda n2, d: stops.append(d) if n2 == "stop" else None], sub

    with running(settings(kafka_bootstrap, topic), [factory]):
        eventually(lambda: stops, 60, "the replay to pass the run")
    table = _reader(tiled_server, name)[uid]["primary"].base["internal"].read()
    assert list(table["seq_num"]) == list(range(1, 41))  # every row, once
    data = _reader(tiled_server, name)[uid]["primary"].read()
    np.testing.assert_allclose(data["motor"].values, [e["data"]["motor"] for e in
                                                      _events(emitted, uid)])  # fmt: skip


def test_rows_of_a_live_run_become_readable(kafka_bootstrap, new_topic, tiled_server, tmp_path):
    """The run held open after 8 events: once the consumer has read them and finds nothing
    more, they are written, though ``max_latency`` (an hour here) would never come."""
    topic = new_topic(partitions=1)
    name = unique_prefix("cat")
    catalog = connect_catalog(tiled_server.url, tiled_server.api_key, name)
    go_on = threading.Event()
    publisher = KafkaPublisher(topic, kafka_bootstrap, tmp_path / "outbox", partitions=1)
    RE, emitted = _engine(publisher, threaded=True)
    with running(settings(kafka_bootstrap, topic), [tiled_factory(catalog, max_latency=3600)]):
        plan = gated_run(12, 8, go_on)
        engine = threading.Thread(target=lambda: RE(plan))
        engine.start()
        try:
            eventually(lambda: emitted, 60, "the start")
            uid = emitted[0][1]["uid"]

            def visible() -> int:
                return _rows(tiled_server, name, uid)

            eventually(lambda: visible() == 8, 5, "8 rows while the run is open")
            assert "stop" not in _reader(tiled_server, name)[uid].metadata or \
                _reader(tiled_server, name)[uid].metadata.get("stop") is None  # fmt: skip
        finally:
            go_on.set()
            engine.join(30)
            publisher.flush(30)
            publisher.close()
        eventually(lambda: _complete(_reader(tiled_server, name), [uid]), 60, "the stop")
    assert visible() == 12


def test_bad_input_is_recorded_and_other_runs_are_untouched(tiled_server) -> None:
    name = unique_prefix("cat")
    catalog = connect_catalog(tiled_server.url, tiled_server.api_key, name)
    # Every array as a node: the local server's SQLite table storage has no list columns.
    router = RunRouter([tiled_factory(catalog, max_latency=0.1, max_array_size=0)])
    keys = {"x": {"dtype": "number", "shape": [], "source": "s"},
            "v": {"dtype": "array", "shape": [3], "source": "s"}}  # fmt: skip
    bad, good = str(uuid.uuid4()), str(uuid.uuid4())
    for uid in (bad, good):
        router("start", {"uid": uid, "time": 0.0, "scan_id": 1})
        router("descriptor", {"uid": uid + "d", "run_start": uid, "time": 0.0, "name": "primary",
                              "data_keys": keys})  # fmt: skip
    router("event", {"uid": "e1", "descriptor": good + "d", "seq_num": 1, "time": 1.0,
                     "data": {"x": 1.5, "v": np.ones(3)}, "timestamps": {"x": 1.0, "v": 1.0},
                     "filled": {}})  # fmt: skip
    router("event", {"uid": "e2", "descriptor": bad + "d", "seq_num": 1, "time": 1.0,
                     "data": {"x": "not a number", "v": 7.0}, "timestamps": {"x": 1.0, "v": 1.0},
                     "filled": {}})  # fmt: skip
    for uid in (bad, good):
        router("stop", {"uid": uid + "s", "run_start": uid, "time": 2.0, "exit_status": "success"})
    cat = _reader(tiled_server, name)
    errors = cat[bad].metadata["runstream"]["errors"]
    # only the value that cannot be stored is set aside (v: a number, no array of 3)
    assert len(errors) == 1 and errors[0].startswith("stream primary: v of seq_num 1 set aside")
    assert list(cat[bad]["primary"].read()["x"].values) == ["not a number"]  # as TiledWriter's
    assert "runstream" not in cat[good].metadata
    data = cat[good]["primary"].read()
    assert list(data["x"].values) == [1.5] and list(data["v"].values[0]) == [1.0, 1.0, 1.0]


def test_tiled_stopped_mid_run_and_started_again(kafka_bootstrap, new_topic, tmp_path,
                                                 caplog, monkeypatch) -> None:  # fmt: skip
    import tiled.client.utils

    from runstream.settings import LocalSettings
    from runstream.tiledserver import LocalTiled
    from tests.kafka_tools import free_port

    # tiled's client retries for TILED_RETRY_TIMEOUT (45 s) before the writer's own layer,
    # the one under test, takes over: a user may set it shorter, and the test does
    monkeypatch.setattr(tiled.client.utils, "TILED_RETRY_TIMEOUT", 5.0)

    server = LocalTiled(LocalSettings(home=tmp_path / "tiled-home", tiled_port=free_port()))
    url, key = server.up(), server.api_key()
    try:
        topic = new_topic(partitions=1)
        name = unique_prefix("cat")
        catalog = connect_catalog(url, key, name)
        go_on = threading.Event()
        publisher = KafkaPublisher(topic, kafka_bootstrap, tmp_path / "outbox", partitions=1)
        RE, emitted = _engine(publisher, threaded=True)
        stops = []
        writers = tiled_factory(catalog, max_latency=0.2)

        def factory(n, start):
            callbacks, sub = writers(n, start)
            return [*callbacks, lambda n2, d: stops.append(d) if n2 == "stop" else None], sub

        reader = type("Reader", (), {"url": url, "api_key": key})
        with running(settings(kafka_bootstrap, topic), [factory]):
            plan = gated_run(30, 10, go_on)
            engine = threading.Thread(target=lambda: RE(plan))
            engine.start()
            eventually(lambda: emitted, 60, "the start")
            uid = emitted[0][1]["uid"]
            eventually(lambda: _rows(reader, name, uid) == 10, 60, "the first rows")
            said = len(caplog.records)
            server.down()
            go_on.set()
            engine.join(60)
            assert publisher.flush(30) == 0
            eventually(lambda: _retrying(caplog.records[said:]), 60,
                       "the writer to meet a Tiled that is away, and wait")  # fmt: skip
            assert server.up() == url
            eventually(lambda: stops, 90, "the run's stop, written after the outage")
        publisher.close()
        table = _reader(reader, name)[uid]["primary"].base["internal"].read()
        assert list(table["seq_num"]) == list(range(1, 31))  # nothing lost, nothing twice
        assert _reader(reader, name)[uid].metadata["stop"]["exit_status"] == "success"
    finally:
        go_on.set()
        server.down()
