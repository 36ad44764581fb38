"""A real Tiled server over loopback for the session, with a writable catalog."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from runstream.settings import LocalSettings
from runstream.tiledserver import LocalTiled
from tests.kafka_tools import free_port


def runs_closed(catalog, uids) -> bool:
    """Every run in ``catalog`` with its stop. One lookup each: a half-written run is
    deleted before it is written again, so a check-then-read could miss it in between."""
    for uid in uids:
        try:
            if not catalog[uid].metadata.get("stop"):
                return False
        except KeyError:
            return False
    return True


@dataclass
class TiledServer:
    url: str
    api_key: str
    server: LocalTiled
    files: Path  # a directory the server may read detector files from


@pytest.fixture(scope="session")
def tiled_server(tmp_path_factory) -> Iterator[TiledServer]:
    settings = LocalSettings(home=tmp_path_factory.mktemp("tiled-home"), tiled_port=free_port())
    server = LocalTiled(settings)
    url = server.up()
    yield TiledServer(url, server.api_key(), server, settings.tiled_read_dirs[0])
    server.down()
