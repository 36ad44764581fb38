"""runstream: Bluesky's multi-run documents over Kafka, routed per run on the other side.

One import namespace over the project's top-level folders:
`runstream.schemas` (the wire contract), `runstream.kafka` (Kafka plumbing),
`runstream.producer` (the engine side), `runstream.consumers` (the consumer runtime
and services), and here the ``runstream`` command with the local stack it runs.
"""

import importlib.abc as _abc
import importlib.util as _util
import sys as _sys
from pathlib import Path as _Path

#: The top-level folders that are sub-packages of `runstream`, and nothing else.
_MAPPED = ("schemas", "producer", "consumers")


class _CheckoutFinder(_abc.MetaPathFinder):
    """Finds ``runstream.schemas`` and its siblings in the folders of a source checkout.

    A wheel has them inside the package. From a checkout (plain or an editable install)
    only these folders are mapped, so that nothing else beside them (``tests``,
    ``deploy``) is importable as part of `runstream`.
    """

    def __init__(self, root: _Path) -> None:
        self.folders = {f"{__name__}.{name}": root / name for name in _MAPPED}

    def find_spec(self, fullname, path=None, target=None):  # type: ignore[no-untyped-def]
        folder = self.folders.get(fullname)
        if folder is None:
            return None
        return _util.spec_from_file_location(
            fullname, folder / "__init__.py", submodule_search_locations=[str(folder)]
        )


_here = _Path(__file__).resolve().parent
_checkout = _here.parent
if not (_here / "schemas").is_dir() and all(
    (_checkout / name / "__init__.py").is_file() for name in _MAPPED
):
    # First on the path: the folders beside this package are its sub-packages, also
    # when another copy of runstream is installed (an editable install maps the same).
    _sys.meta_path.insert(0, _CheckoutFinder(_checkout))
