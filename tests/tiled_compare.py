"""Two subtrees of one Tiled server, compared node by node over Tiled's HTTP API.

What a node is (specs, metadata, structure), what it holds (a table's values read back,
an array's values) and where Tiled keeps it (its data sources: mimetype, parameters,
assets). Differences are collected, not asserted one at a time: a failing comparison
says everything that differs at once.
"""

from __future__ import annotations

import re
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pyarrow as pa
from tiled.structures.array import ArrayStructure

ARROW = "application/vnd.apache.arrow.file"
RAW = "application/octet-stream"
#: A data source's parameters that name its storage rather than its data: a table's row
#: in the table storage, made per write.
STORAGE_PARAMETERS = ("dataset_id",)


class Nodes:
    """Tiled's HTTP API, read the same way for every subtree compared."""

    def __init__(self, url: str, api_key: str) -> None:
        self.http = httpx.Client(
            base_url=url, headers={"Authorization": f"Apikey {api_key}"}, timeout=30
        )

    def close(self) -> None:
        self.http.close()

    def attributes(self, path: str) -> dict[str, Any]:
        """The node's attributes, its data sources included."""
        answer = self.http.get(f"/api/v1/metadata/{path}", params={"include_data_sources": True})
        answer.raise_for_status()
        return answer.json()["data"]["attributes"]

    def children(self, path: str) -> list[str]:
        answer = self.http.get(f"/api/v1/search/{path}", params={"page[limit]": 300})
        answer.raise_for_status()
        return [item["id"] for item in answer.json()["data"]]

    def table(self, path: str) -> pd.DataFrame:
        answer = self.http.get(f"/api/v1/table/full/{path}", params={"format": ARROW})
        answer.raise_for_status()
        return pa.ipc.open_file(answer.content).read_all().to_pandas()

    def array(self, path: str, structure: dict[str, Any]) -> np.ndarray:
        """The array's values as its bytes in its dtype: strings and NaNs as they are."""
        answer = self.http.get(f"/api/v1/array/full/{path}", params={"format": RAW})
        answer.raise_for_status()
        shape = ArrayStructure.from_json({**structure, "chunks": ()})
        return np.frombuffer(answer.content, shape.data_type.to_numpy_dtype()).reshape(shape.shape)


def described(attributes: dict[str, Any], base: str) -> dict[str, Any]:
    """What of a node's attributes is compared: specs, metadata, structure family and
    structure (less its chunks: how the writes were batched), and its data sources, with
    the paths under its own subtree (``base``) made relative."""
    structure = dict(attributes.get("structure") or {})
    structure.pop("chunks", None)
    sources = [_source(source, base) for source in attributes.get("data_sources") or []]
    return {"specs": attributes.get("specs"), "metadata": attributes.get("metadata"),
            "structure_family": attributes.get("structure_family"), "structure": structure,
            "data_sources": sources}  # fmt: skip


def _source(source: dict[str, Any], base: str) -> dict[str, Any]:
    """A data source as compared: what it is and what it reads, not its row ids."""
    parameters = {k: v for k, v in (source.get("parameters") or {}).items()
                  if k not in STORAGE_PARAMETERS}  # fmt: skip
    assets = [{"data_uri": _relative(asset["data_uri"], base),
               "is_directory": asset["is_directory"], "parameter": asset.get("parameter"),
               "num": asset.get("num")} for asset in source.get("assets") or []]  # fmt: skip
    return {"mimetype": source.get("mimetype"), "management": source.get("management"),
            "structure_family": source.get("structure_family"), "parameters": parameters,
            "assets": assets}  # fmt: skip


def _relative(uri: str, base: str) -> str:
    """A writable storage's file of the node under ``base`` (the catalog key), made relative
    to it: the two subtrees' own files are at the same place under their own keys."""
    marker = f"/{base}/"
    return "<subtree>/" + uri.split(marker, 1)[1] if marker in uri else uri


def internal_order_free(attributes: dict[str, Any]) -> None:
    """What TiledWriter writes in the order of a set of its internal array keys (its
    ``_int_array_keys``, iterated in the process's string-hash order), made order-free:
    the run's notes as a set, and ``dim_int_<n>`` names (numbered in that order) by the
    size of their axis. The streams' children are compared as a set (`compare`)."""
    metadata = attributes.get("metadata") or {}
    if isinstance(metadata.get("notes"), list):
        metadata["notes"] = sorted(metadata["notes"])
    structure = attributes["structure"]
    dims = structure.get("dims")
    if dims:
        structure["dims"] = [
            f"dim_int(size {size})" if re.fullmatch(r"dim_int_\d+", dim) else dim
            for dim, size in zip(dims, structure["shape"], strict=True)
        ]


def compare(nodes: Nodes, ref: str, ours: str, path: str, *, order_free: bool = False
            ) -> list[str]:  # fmt: skip
    """Every difference between ``ref/path`` and ``ours/path`` and their descendants;
    with ``order_free``, what is in TiledWriter's set order compared as sets
    (`internal_order_free`)."""
    found: list[str] = []
    _compare(nodes, ref, ours, path, order_free, found)
    return found


def _compare(nodes: Nodes, ref: str, ours: str, path: str, order_free: bool,
             found: list[str]) -> None:  # fmt: skip
    where = path
    a = described(nodes.attributes(f"{ref}/{path}"), ref)
    b = described(nodes.attributes(f"{ours}/{path}"), ours)
    if order_free:
        internal_order_free(a)
        internal_order_free(b)
    for part in a.keys() | b.keys():
        if a.get(part) != b.get(part):
            found.append(f"{where}: {part}: {a.get(part)!r} != {b.get(part)!r}")
    family = a["structure_family"]
    if family != b["structure_family"]:
        return
    if family == "container":
        keys = nodes.children(f"{ref}/{path}")
        theirs = nodes.children(f"{ours}/{path}")
        if (sorted(keys) != sorted(theirs)) if order_free else (keys != theirs):
            found.append(f"{where}: children: {keys} != {theirs}")
        for key in keys:
            if key in theirs:
                _compare(nodes, ref, ours, f"{path}/{key}", order_free, found)
    elif family == "table":
        left, right = nodes.table(f"{ref}/{path}"), nodes.table(f"{ours}/{path}")
        try:
            pd.testing.assert_frame_equal(left, right)
        except AssertionError as exc:
            found.append(f"{where}: table values: {exc}")
    elif family == "array":
        x, y = values(nodes, f"{ref}/{path}", a), values(nodes, f"{ours}/{path}", b)
        if isinstance(x, str) or isinstance(y, str):
            if isinstance(x, str) != isinstance(y, str):  # one read, the other not
                found.append(f"{where}: array read: {_shown(x)} != {_shown(y)}")
        elif x.dtype != y.dtype or not np.array_equal(x, y, equal_nan=x.dtype.kind in "fc"):
            found.append(f"{where}: array values: {x!r} != {y!r}")


def values(nodes: Nodes, path: str, attributes: dict[str, Any] | None = None
           ) -> np.ndarray | str:  # fmt: skip
    """The array's values, or why Tiled cannot read them: what the files hold is not the
    node's structure (an error answer, or, for some, an answer cut off). One request, not
    retried (as tiled's client retries an answer cut off, for many seconds)."""
    structure = (attributes or nodes.attributes(path))["structure"]
    try:
        return nodes.array(path, structure)
    except httpx.HTTPStatusError as exc:
        return f"HTTP {exc.response.status_code}"
    except httpx.TransportError as exc:
        return type(exc).__name__


def _shown(values: np.ndarray | str) -> str:
    return values if isinstance(values, str) else f"values of shape {values.shape}"
