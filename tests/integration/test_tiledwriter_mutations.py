"""bluesky-tiled-plugins' example runs, mutated as their TiledWriter tests mutate them
(datums moved, documents dropped, shapes sliced or wrong): runstream's Tiled writer
writes what TiledWriter writes, and no frame of the files is lost.

Documents go straight into the writer's RunRouter (what is tested is the writer; the
examples' test carries them through Kafka) and into TiledWriter in-process, into two
catalogs of the session's Tiled server, then `tests.tiled_compare` compares them node by
node. The mutations are written here from their descriptions, not copied.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from pathlib import Path

import h5py
import numpy as np
import pytest
import stamina
from bluesky_tiled_plugins import TiledWriter
from event_model import RunRouter
from tiled.client import from_uri

from runstream.consumers.tiled import connect_catalog, tiled_factory
from tests.kafka_tools import unique_prefix
from tests.tiled_compare import Nodes, compare, values
from tests.tiled_fixtures import TiledServer
from tests.tiledwriter_examples import make_files, render

Docs = list[tuple[str, dict]]
TWO_FILES = "external_assets_single_key_two_files"  # det-key2: [1, 13, 17] per index, 3 + 5
ONE_FILE = "external_assets_single_key"  # det-key2: 3 frames of [13, 17] in one file
RESOURCES = {"resource", "stream_resource"}


def _datums_last(docs: Docs) -> Docs:
    """Every datum after the events that name it, just before the stop."""
    datums = [(n, d) for n, d in docs if n == "datum"]
    rest = [(n, d) for n, d in docs if n != "datum"]
    return rest[:-1] + datums + rest[-1:]


def _no_data(docs: Docs) -> Docs:
    """A stream declared, but no resource, datum or event ever sent."""
    dropped = RESOURCES | {"datum", "stream_datum", "event"}
    return [(n, d) for n, d in docs if n not in dropped]


def _changed(descriptor: dict | None = None, parameters: dict | None = None
             ) -> Callable[[Docs], Docs]:  # fmt: skip
    """det-key2's data key and its resources' parameters, updated."""

    def mutate(docs: Docs) -> Docs:
        for name, doc in docs:
            if name == "descriptor" and descriptor:
                doc["data_keys"]["det-key2"].update(descriptor)
            elif name in RESOURCES and parameters:
                doc["parameters"].update(parameters)
        return docs

    return mutate


def _files_frames(files: Path, names: list[str], dataset: str) -> np.ndarray:
    parts = []
    for name in names:
        with h5py.File(files / name) as f:
            parts.append(f[dataset][()])
    return np.concatenate(parts)


def _both_files(files: Path) -> np.ndarray:
    return _files_frames(files, ["dataset.h5", "dataset_part2.h5"], "entry/data/data_2")


def _one_file(files: Path) -> np.ndarray:
    return _files_frames(files, ["dataset.h5"], "entry/data/data_2")


#: name: (example, mutation, the frames of det-key2 expected from the files, or None for none)
READABLE: dict[str, tuple[str, Callable[[Docs], Docs], Callable[[Path], np.ndarray] | None]] = {
    "datums_moved": ("external_assets_legacy", _datums_last, lambda f: _one_file(f)),
    "documents_dropped": (TWO_FILES, _no_data, None),
    "sliced": (TWO_FILES, _changed({"shape": [1, 5, 17]},
                                   {"slice": ":,:5,:", "squeeze": False, "chunk_shape": [1]}),
               lambda f: _both_files(f)[:, np.newaxis, :5, :]),
    "sliced_squeezed": (TWO_FILES, _changed({"shape": [1, 17]}, {"slice": ":,5,:",
                                            "squeeze": True, "chunk_shape": [1]}),
                        lambda f: _both_files(f)[:, np.newaxis, 5, :]),
    "legacy_multiplier": (TWO_FILES, _changed({"shape": [13, 17]}, {"multiplier": 1}),
                          lambda f: _both_files(f)[:, np.newaxis]),
    "wrong_chunks": (ONE_FILE, _changed(parameters={"chunk_shape": [1, 2, 3]}), _one_file),
    "wrong_dims": (ONE_FILE, _changed({"dims": ["dim_2", "dim_3"]}), _one_file),
}  # fmt: skip
#: Declared wrong: Tiled cannot read the frames as registered, from either writer.
UNREADABLE = {"shape": _changed({"shape": [1, 2, 3]}),
              "dtype": _changed({"dtype_numpy": "<i4"})}  # fmt: skip


def _write_both(server: TiledServer, docs: Docs) -> tuple[str, str, str]:
    """The documents by TiledWriter and by runstream's writer: (reference, ours, run uid)."""
    ref, ours = unique_prefix("ref"), unique_prefix("ours")
    writer = TiledWriter(connect_catalog(server.url, server.api_key, ref), max_array_size=0)
    catalog = connect_catalog(server.url, server.api_key, ours)
    router = RunRouter([tiled_factory(catalog, max_latency=0.1, max_array_size=0)])
    for name, doc in docs:
        writer(name, copy.deepcopy(doc))
        router(name, copy.deepcopy(doc))
    return ref, ours, docs[0][1]["uid"]


def _compared(server: TiledServer, ref: str, ours: str, uid: str) -> np.ndarray | str | None:
    """The two runs compared; det-key2's values in ours, or why Tiled cannot read them
    (None: no such node)."""
    nodes = Nodes(server.url, server.api_key)
    try:
        differences = compare(nodes, ref, ours, uid)
        assert differences == [], "\n".join(differences)
        if "det-key2" not in nodes.children(f"{ours}/{uid}/primary"):
            return None
        return values(nodes, f"{ours}/{uid}/primary/det-key2")
    finally:
        nodes.close()


@pytest.fixture(scope="module")
def files(tiled_server: TiledServer) -> Path:
    return make_files(tiled_server.files / unique_prefix("mutations"))


@pytest.mark.parametrize("kind", READABLE)
def test_mutated_runs_as_tiledwriter(tiled_server: TiledServer, files: Path, kind: str) -> None:
    example, mutate, frames = READABLE[kind]
    ref, ours, uid = _write_both(tiled_server, mutate(render(example, files)))
    held = _compared(tiled_server, ref, ours, uid)
    run = from_uri(tiled_server.url, api_key=tiled_server.api_key)[ours][uid]
    assert "runstream" not in run.metadata, run.metadata["runstream"]  # nothing set aside
    if frames is None:  # nothing sent, nothing made up: an empty stream, still readable
        assert held is None
        assert run["primary"].read().data_vars == {}
    else:  # every frame, as the files hold it
        assert not isinstance(held, str | None), held
        np.testing.assert_array_equal(held, frames(files))


@pytest.mark.parametrize("kind", UNREADABLE, ids=[f"wrong_{k}" for k in UNREADABLE])
def test_frames_declared_wrong_are_kept_for_validation(
    tiled_server: TiledServer, files: Path, kind: str
) -> None:
    """As TiledWriter's (whose own ``validate`` is deprecated for the client's), the frames
    are registered as declared, which Tiled cannot read; nothing is dropped: the client's
    validation fixes the structure from the files, and every frame reads back."""
    ref, ours, uid = _write_both(tiled_server, UNREADABLE[kind](render(ONE_FILE, files)))
    why = _compared(tiled_server, ref, ours, uid)  # the same: unreadable in the same way
    assert isinstance(why, str), why  # a 422, or for the dtype an answer cut off
    run = from_uri(tiled_server.url, api_key=tiled_server.api_key)[ours][uid]
    with pytest.warns(UserWarning, match="validate"):  # on the client: Tiled has no route
        assert run.validate() is True
    run = from_uri(tiled_server.url, api_key=tiled_server.api_key)[ours][uid]
    assert any(f"Fixed {kind} mismatch" in note for note in run.metadata["notes"])
    np.testing.assert_array_equal(run["primary"]["det-key2"].read(), _one_file(files))


@pytest.fixture
def client_tries_once() -> Iterator[None]:
    """Tiled's client tries a request once (its retries of a 500 take 45 s); the writer's
    own policy still tries a failing request twice."""
    stamina.set_testing(True, attempts=1)
    yield
    stamina.set_testing(False)


def test_keys_sqlite_tables_refuse_cost_only_themselves(
    tiled_server: TiledServer, client_tries_once: None
) -> None:
    """The internal events on SQLite-backed tables, which have no list columns: Tiled
    refuses the ragged node and the table holding ``empty`` (HTTP 500; TiledWriter fails the
    whole run). Only those keys are set aside, with the reason; every scalar stays."""
    docs = render("internal_events", tiled_server.files)
    ours = unique_prefix("ours")
    catalog = connect_catalog(tiled_server.url, tiled_server.api_key, ours)
    router = RunRouter([tiled_factory(catalog, max_latency=0.1, max_array_size=0)])
    for name, doc in docs:
        router(name, copy.deepcopy(doc))
    uid = docs[0][1]["uid"]
    run = from_uri(tiled_server.url, api_key=tiled_server.api_key)[ours][uid]
    events = [doc for name, doc in docs if name == "event"]
    table = run["primary"].base["internal"].read()
    assert list(table["seq_num"]) == [e["seq_num"] for e in events]
    assert list(table["det"]) == [e["data"]["det"] for e in events]
    for key in ("long", "str_arr", "str_img", "ragged_padded"):  # array nodes, all rows
        assert run["primary"][key].read().shape[0] == len(events), key
    errors = run.metadata["runstream"]["errors"]
    for key in ("ragged", "empty"):
        assert any(f"{key} of seq_num 1-" in e and "set aside: Tiled refused" in e
                   for e in errors), (key, errors)  # fmt: skip
    assert not any("rows seq_num" in e for e in errors), errors  # never the batch
