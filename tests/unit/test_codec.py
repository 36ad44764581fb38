"""The message value: round trips, msgpack-numpy compatibility both ways, bad input."""

from __future__ import annotations

import contextlib
import os

import msgpack
import msgpack_numpy
import numpy as np
import pytest

from runstream import schemas
from runstream.schemas import DecodeError, EncodeError
from tests.seed_documents import seed_documents

DTYPES = ["<f8", "<f4", ">f8", "<i2", "<i8", "<u1", "<u4", "?", "<c16", "<M8[ns]", "S5", "<U3"]
SHAPES = [(), (0,), (7,), (3, 4), (2, 3, 4)]


def _sample(dtype: str, shape: tuple[int, ...]) -> np.ndarray:
    rng = np.random.default_rng(0)
    raw = rng.integers(0, 100, size=shape)
    if dtype.startswith("S"):
        return raw.astype(dtype)
    if dtype.startswith("<U"):
        return raw.astype(dtype)
    return raw.astype(np.dtype(dtype))


def _same(a, b) -> None:
    if isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray)
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(a, b)
    elif isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            _same(a[k], b[k])
    elif isinstance(a, list | tuple):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            _same(x, y)
    elif isinstance(a, np.float64):  # a float subclass: msgpack writes it as a plain float
        assert float(a) == b
    else:
        assert type(a) is type(b), (a, b)
        assert a == b


def _every_document_type() -> list[tuple[str, dict]]:
    """One of each event-model document, with numpy inside."""
    run = "0a1b2c3d-run"
    image = np.arange(12, dtype="<u2").reshape(3, 4)
    return [
        ("start", {"uid": run, "time": 1.0, "scan_id": 1, "plan_name": "count", "md": [1, 2]}),
        ("descriptor", {"uid": "desc", "run_start": run, "time": 1.1, "name": "primary",
                        "data_keys": {"det": {"dtype": "number", "shape": [], "source": "sim"}}}),
        ("event", {"uid": "ev1", "descriptor": "desc", "seq_num": 1, "time": 1.2,
                   "data": {"det": np.float64(1.5), "img": image}, "timestamps": {"det": 1.2},
                   "filled": {}}),
        ("event_page", {"uid": ["a", "b"], "descriptor": "desc", "seq_num": [2, 3],
                        "time": [1.3, 1.4], "data": {"det": np.array([1.0, 2.0])},
                        "timestamps": {"det": [1.3, 1.4]}, "filled": {}}),
        ("resource", {"uid": "res", "run_start": run, "spec": "NPY_SEQ", "root": "/",
                      "resource_path": "a/b", "resource_kwargs": {}, "path_semantics": "posix"}),
        ("datum", {"datum_id": "res/0", "resource": "res", "datum_kwargs": {"index": np.int64(0)}}),
        ("datum_page", {"datum_id": ["res/1", "res/2"], "resource": "res",
                        "datum_kwargs": {"index": [1, 2]}}),
        ("stream_resource", {"uid": "sr", "run_start": run, "data_key": "img",
                             "mimetype": "application/x-hdf5", "uri": "file://localhost/x.h5",
                             "parameters": {"dataset": "/data"}}),
        ("stream_datum", {"uid": "sd", "stream_resource": "sr", "descriptor": "desc",
                          "indices": {"start": 0, "stop": 2}, "seq_nums": {"start": 1, "stop": 3}}),
        ("stop", {"uid": "stop", "run_start": run, "time": 2.0, "exit_status": "success",
                  "num_events": {"primary": 3}, "reason": ""}),
    ]  # fmt: skip


@pytest.mark.parametrize("name,doc", _every_document_type(), ids=lambda x: str(x)[:12])
def test_every_document_type_round_trips(name: str, doc: dict) -> None:
    got_name, got = schemas.decode(schemas.encode(name, doc))
    assert got_name == name
    _same(doc, got)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_arrays_round_trip_and_match_msgpack_numpy(dtype: str, shape: tuple[int, ...]) -> None:
    array = _sample(dtype, shape)
    doc = {"data": {"x": array}}
    ours = schemas.encode("event", doc)
    # what we write, msgpack-numpy reads ...
    _, theirs_read = msgpack.unpackb(ours, object_hook=msgpack_numpy.decode, raw=False)
    _same(array, theirs_read["data"]["x"])
    if array.dtype.kind == "M":
        return  # msgpack-numpy itself cannot write datetime64 arrays
    # ... and what it writes, we read
    _, ours_read = schemas.decode(msgpack.packb(["event", doc], default=msgpack_numpy.encode))
    _same(array, ours_read["data"]["x"])


def test_non_contiguous_and_structured_arrays() -> None:
    sliced = np.arange(100, dtype="<f8").reshape(10, 10)[::2, 1::3]
    structured = np.array([(1, 2.5), (3, 4.5)], dtype=[("a", "<i4"), ("b", "<f8")])
    doc = {"s": sliced, "r": structured}
    _, got = schemas.decode(schemas.encode("event", doc))
    _same(np.ascontiguousarray(sliced), got["s"])
    _same(structured, got["r"])
    _, theirs = msgpack.unpackb(
        schemas.encode("event", doc), object_hook=msgpack_numpy.decode, raw=False
    )
    _same(structured, theirs["r"])


@pytest.mark.parametrize(
    "scalar",
    [np.float64(2.5), np.float32(-1.25), np.int8(-3), np.uint64(2**63 + 5), np.bool_(True),
     np.complex64(1 + 2j)],
    ids=lambda s: type(s).__name__,
)  # fmt: skip
def test_numpy_scalars_both_ways(scalar) -> None:
    _, ours = schemas.decode(schemas.encode("event", {"v": scalar}))
    _same(scalar, ours["v"])
    _, theirs = schemas.decode(
        msgpack.packb(["event", {"v": scalar}], default=msgpack_numpy.encode)
    )
    _same(scalar, theirs["v"])


def test_buffer_types_decode_alike() -> None:
    value = schemas.encode("event", {"x": np.arange(3), "c": 1j})
    for buffer in (value, bytearray(value), memoryview(value)):
        name, doc = schemas.decode(buffer)
        assert name == "event" and doc["c"] == 1j
        np.testing.assert_array_equal(doc["x"], np.arange(3))


def test_python_complex_and_object_arrays() -> None:
    _, got = schemas.decode(schemas.encode("event", {"c": 3 - 4j, "o": np.array(["a", 1], "O")}))
    assert got["c"] == 3 - 4j
    assert got["o"] == ["a", 1]  # object arrays travel as lists, never pickled


def test_every_seed_document_round_trips() -> None:
    for docs in seed_documents().values():
        for name, doc in docs:
            got_name, got = schemas.decode(schemas.encode(name, doc))
            assert got_name == name
            _same(doc, got)


def test_unencodable_object_is_a_clear_error() -> None:
    with pytest.raises(EncodeError, match="object"):
        schemas.encode("start", {"uid": "u", "device": object()})


def _pickled_object_array() -> bytes:
    return msgpack.packb(
        ["event", {"x": {b"nd": True, b"type": "|O", b"kind": b"O", b"shape": [1],
                         b"data": b"\x80\x04K\x01."}}],
        use_bin_type=True,
    )  # fmt: skip


BAD_VALUES = {
    "garbage": os.urandom(64) + b"\xc1",
    "truncated": schemas.encode("event", {"data": {"x": 1.0}, "uid": "u"})[:-5],
    "not a list": msgpack.packb({"name": "start"}),
    "three items": msgpack.packb(["start", {}, {}]),
    "unknown name": msgpack.packb(["bulk_events", {}]),
    "name not str": msgpack.packb([1, {}]),
    "doc not map": msgpack.packb(["start", [1, 2]]),
    "trailing bytes": schemas.encode("start", {"uid": "u"}) + b"\x00",
    "empty": b"",
    "None": None,
    "pickled array": _pickled_object_array(),
    "bad dtype": msgpack.packb(
        ["event", {"x": {b"nd": True, b"type": "zz9", b"kind": b"", b"shape": [1], b"data": b"1"}}]
    ),
    "shape mismatch": msgpack.packb(
        [
            "event",
            {"x": {b"nd": True, b"type": "<f8", b"kind": b"", b"shape": [3], b"data": b"12345678"}},
        ]
    ),
}


@pytest.mark.parametrize("value", BAD_VALUES.values(), ids=BAD_VALUES.keys())
def test_bad_values_raise_one_exception_type(value) -> None:
    with pytest.raises(DecodeError):
        schemas.decode(value)


def test_random_bytes_never_crash_differently() -> None:
    rng = np.random.default_rng(42)
    good = schemas.encode("event", {"data": {"x": np.arange(4.0)}, "uid": "u"})
    for i in range(3000):
        if i % 2:
            value = rng.bytes(int(rng.integers(0, 80)))
        else:  # flip bytes of a good message: the nastier case
            value = bytearray(good)
            for pos in rng.integers(0, len(value), size=3):
                value[pos] = int(rng.integers(0, 256))
            value = bytes(value)
        with contextlib.suppress(DecodeError):
            schemas.decode(value)
