"""bluesky-tiled-plugins' example document streams (tests/data/tiledwriter_examples) and the
detector files they point at.

The JSON files are theirs (BSD-3-Clause, see the NOTICE beside them): templates in which
``{{ uuid }}`` is a run's uid prefix and ``{{ root_path }}`` the directory of the files.
The files are made here, with the shapes and dtypes the documents declare (our own
code; their values are random, and the comparisons read them back through Tiled).
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import h5py
import numpy as np
import tifffile

EXAMPLES = Path(__file__).parent / "data" / "tiledwriter_examples"


def render(name: str, root: Path) -> list[tuple[str, dict]]:
    """The example ``name`` (file stem) as (name, document) pairs, for files under ``root``,
    with a fresh uid prefix (so that one example can be written more than once)."""
    text = (EXAMPLES / f"{name}.json").read_text()
    prefix = str(uuid.uuid4())[:-12]
    text = text.replace("{{ uuid }}", prefix).replace("{{ root_path }}", root.as_posix())
    return [(item["name"], item["doc"]) for item in json.loads(text)]


def make_files(root: Path, seed: int = 19) -> Path:
    """Every file the examples reference, under ``root``."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    frames = (13, 17)
    with h5py.File(root / "dataset.h5", "w") as f:
        data = f.require_group("entry/data")
        data["data_1"] = rng.normal(size=3)
        data["data_2"] = rng.integers(-100, 100, size=(3, *frames), dtype="<i8")
    with h5py.File(root / "dataset_part2.h5", "w") as f:
        f.require_group("entry/data")["data_2"] = rng.integers(0, 9, (5, *frames), dtype="<i8")
    (root / "multipart_hdf5").mkdir(exist_ok=True)
    for i in range(3):
        with h5py.File(root / "multipart_hdf5" / f"dataset_part_{i:06d}.h5", "w") as f:
            f.require_group("entry/data")["data"] = rng.normal(size=(1, *frames))
    (root / "tiff_files").mkdir(exist_ok=True)
    for i in range(3):
        image = rng.integers(0, 256, size=(1, 10, 15), dtype="uint8")
        tifffile.imwrite(root / "tiff_files" / f"img_{i:05d}.tif", image)
    (root / "blob.bin").write_bytes(bytes(range(32)))
    (root / "blob_files").mkdir(exist_ok=True)
    for i in range(3):
        (root / "blob_files" / f"blob_{i:05d}.bin").write_bytes(f"blob {i}".encode() * (i + 1))
    return root
