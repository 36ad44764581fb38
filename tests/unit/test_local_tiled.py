"""`runstream tiled up` where Tiled's server extra is not installed (the services' image)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from runstream import tiledserver as local_tiled
from runstream.settings import LocalSettings
from tests.kafka_tools import free_port


def test_up_without_the_server_says_what_to_install(tmp_path: Path, monkeypatch) -> None:
    real = importlib.util.find_spec

    def without_server(name: str, *args):
        if name == "tiled.server.app":
            raise ModuleNotFoundError("No module named 'sqlalchemy'")
        return real(name, *args)

    monkeypatch.setattr(local_tiled.importlib.util, "find_spec", without_server)
    server = local_tiled.LocalTiled(LocalSettings(home=tmp_path, tiled_port=free_port()))
    with pytest.raises(local_tiled.TiledError, match=r"pip install 'runstream\[server\]'"):
        server.up()
    assert not (tmp_path / "tiled").exists()  # refused before making anything
