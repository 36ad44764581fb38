"""Pages split to fit a size limit keep every row, in order."""

from __future__ import annotations

import numpy as np

from runstream import schemas
from runstream.producer.pages import split_to_fit


def _event_page(rows: int) -> dict:
    return {
        "descriptor": "d",
        "uid": [f"u{i}" for i in range(rows)],
        "seq_num": list(range(1, rows + 1)),
        "time": [float(i) for i in range(rows)],
        "data": {
            "img": [np.full(100, float(i)) for i in range(rows)],
            "x": list(range(rows)),
        },
        "timestamps": {"img": [0.0] * rows, "x": [0.0] * rows},
        "filled": {},
    }


def test_event_page_split_keeps_rows_in_order() -> None:
    page = _event_page(50)
    limit = len(schemas.encode("event_page", page)) // 3
    parts = list(split_to_fit("event_page", page, schemas.encode, limit))
    assert len(parts) >= 3
    assert all(len(value) <= limit for _, value in parts)
    assert [s for p, _ in parts for s in p["seq_num"]] == page["seq_num"]
    assert np.array_equal(
        np.stack([img for p, _ in parts for img in p["data"]["img"]]), np.stack(page["data"]["img"])
    )
    for _part, value in parts:
        schemas.validate("event_page", schemas.decode(value)[1])


def test_datum_page_split() -> None:
    page = {"resource": "r", "datum_id": [f"r/{i}" for i in range(400)],
            "datum_kwargs": {"index": list(range(400))}}  # fmt: skip
    parts = list(split_to_fit("datum_page", page, schemas.encode, 1000))
    assert [d for p, _ in parts for d in p["datum_id"]] == page["datum_id"]
    assert [i for p, _ in parts for i in p["datum_kwargs"]["index"]] == list(range(400))


def test_a_single_row_too_big_comes_out_alone() -> None:
    page = _event_page(4)
    parts = list(split_to_fit("event_page", page, schemas.encode, 900))
    assert len(parts) == 4 and all(len(v) > 900 for _, v in parts)
