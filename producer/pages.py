"""Splitting event and datum pages into pages that fit a message size limit."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

PAGE_NAMES = ("event_page", "datum_page")


def page_length(name: str, page: Mapping[str, Any]) -> int:
    return len(page["seq_num"] if name == "event_page" else page["datum_id"])


def page_slice(name: str, page: Mapping[str, Any], lo: int, hi: int) -> dict[str, Any]:
    """Rows ``lo:hi`` of a page, as a page of the same kind."""

    def cut(columns: Mapping[str, Any]) -> dict[str, Any]:
        return {k: v[lo:hi] for k, v in columns.items()}

    if name == "event_page":
        return {
            **page,
            "uid": page["uid"][lo:hi],
            "seq_num": page["seq_num"][lo:hi],
            "time": page["time"][lo:hi],
            "data": cut(page["data"]),
            "timestamps": cut(page["timestamps"]),
            "filled": cut(page.get("filled", {})),
        }
    return {**page, "datum_id": page["datum_id"][lo:hi], "datum_kwargs": cut(page["datum_kwargs"])}


def split_to_fit(
    name: str,
    page: Mapping[str, Any],
    encode: Callable[[str, Mapping[str, Any]], bytes],
    limit: int,
) -> Iterator[tuple[dict[str, Any] | Mapping[str, Any], bytes]]:
    """(page, encoded) parts, in row order, each under ``limit`` bytes where possible.

    A single row that alone exceeds the limit comes out as a one-row page over it:
    the caller refuses it.
    """
    value = encode(name, page)
    rows = page_length(name, page)
    if len(value) <= limit or rows <= 1:
        yield page, value
        return
    half = rows // 2
    yield from split_to_fit(name, page_slice(name, page, 0, half), encode, limit)
    yield from split_to_fit(name, page_slice(name, page, half, rows), encode, limit)
