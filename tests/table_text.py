"""Reading back the tables that `consumers.table` renders."""

from __future__ import annotations


def table_rows(text: str) -> list[list[str]]:
    """The data rows of every table in a rendered file, as stripped cells."""
    return [
        [c.strip() for c in line.strip("|").split("|")]
        for line in text.splitlines()
        if line.startswith("|") and "seq_num" not in line
    ]
