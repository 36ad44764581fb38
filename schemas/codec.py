"""The message value: msgpack of ``[name, doc]`` with numpy in msgpack-numpy's layout.

msgpack-numpy's layout is kept so that existing bluesky-kafka consumers read our
topics unchanged, but it is written here with plain msgpack hooks: no global
patching of msgpack, and no pickle. msgpack-numpy pickles object arrays; we send
them as plain lists instead, and refuse pickled payloads on the way in.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

try:  # msgpack's own functions, immune to msgpack_numpy.patch() elsewhere in the process
    from msgpack._cmsgpack import Packer, unpackb
except ImportError:  # pure-Python msgpack
    from msgpack.fallback import Packer, unpackb

from .errors import DecodeError, EncodeError

DOCUMENT_NAMES = frozenset(
    {
        "start",
        "descriptor",
        "event",
        "event_page",
        "stop",
        "resource",
        "datum",
        "datum_page",
        "stream_resource",
        "stream_datum",
    }
)

_ND = b"nd"
# The binary map keys of msgpack-numpy's layout as they appear on the wire: a value
# holding neither needs no object hook, which makes decoding a plain document faster.
_ND_KEY, _COMPLEX_KEY = b"\xc4\x02nd", b"\xc4\x07complex"


def _encode_extra(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        if obj.dtype.hasobject:
            return obj.tolist()
        if obj.dtype.kind == "V":
            kind, descr = b"V", obj.dtype.descr
        else:
            kind, descr = b"", obj.dtype.str
        zero_copy = obj.flags["C_CONTIGUOUS"] and obj.dtype.kind not in "mM"
        data = obj.data if zero_copy else obj.tobytes()
        return {_ND: True, b"type": descr, b"kind": kind, b"shape": obj.shape, b"data": data}
    if isinstance(obj, np.bool_ | np.number):
        return {_ND: False, b"type": obj.dtype.str, b"data": obj.tobytes()}
    if isinstance(obj, complex):
        return {b"complex": True, b"data": repr(obj)}
    if isinstance(obj, set | frozenset):
        return list(obj)
    if isinstance(obj, np.generic):  # np.str_, np.bytes_, np.datetime64 ...
        return obj.item()
    raise TypeError(f"cannot encode object of type {type(obj).__name__}")


def _dtype(descr: Any) -> np.dtype:
    if isinstance(descr, list | tuple):
        descr = [(_text(field[0]), _dtype(field[1]), *tuple(field[2:])) for field in descr]
    elif isinstance(descr, bytes):
        descr = descr.decode("ascii")
    dtype = np.dtype(descr)
    if dtype.hasobject:
        raise DecodeError("numpy object arrays are not accepted on the wire")
    return dtype


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _decode_extra(obj: dict) -> Any:
    if _ND in obj:
        kind = obj.get(b"kind", b"")
        if kind == b"O":
            raise DecodeError("pickled numpy payloads are refused")
        dtype = _dtype(obj[b"type"])
        if obj[_ND] is True:
            return np.frombuffer(obj[b"data"], dtype=dtype).reshape(obj[b"shape"])
        return np.frombuffer(obj[b"data"], dtype=dtype)[0]
    if b"complex" in obj:
        return complex(_text(obj[b"data"]))
    return obj


def encode(name: str, doc: Mapping[str, Any]) -> bytes:
    """Pack one document as the message value."""
    try:
        return Packer(default=_encode_extra, use_bin_type=True).pack([name, doc])
    except (TypeError, ValueError, OverflowError) as exc:
        raise EncodeError(f"cannot encode {name} document: {exc}") from exc


def decode(value: bytes | bytearray | memoryview | None) -> tuple[str, dict[str, Any]]:
    """Unpack a message value into ``(name, doc)``; anything else raises `DecodeError`."""
    if value is None:
        raise DecodeError("message has no value")
    if isinstance(value, memoryview):
        value = value.tobytes()
    try:
        if _ND_KEY in value or _COMPLEX_KEY in value:
            obj = unpackb(value, object_hook=_decode_extra, raw=False)
        else:
            obj = unpackb(value, raw=False)
    except DecodeError:
        raise
    except Exception as exc:  # msgpack raises many types for bad bytes
        raise DecodeError(f"undecodable msgpack: {type(exc).__name__}: {exc}") from exc
    if not isinstance(obj, list | tuple) or len(obj) != 2:
        raise DecodeError(f"value is not [name, doc] but {type(obj).__name__}")
    name, doc = obj
    if not isinstance(name, str) or name not in DOCUMENT_NAMES:
        raise DecodeError(f"unknown document name {name!r}")
    if not isinstance(doc, dict):
        raise DecodeError(f"{name} document is a {type(doc).__name__}, not a map")
    return name, doc
