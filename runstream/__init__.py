"""runstream: Bluesky's multi-run documents over Kafka, routed per run on the other side.

One import namespace over the project's top-level folders:
`runstream.schemas` (the wire contract), `runstream.producer` (the engine side),
`runstream.consumers` (the consumer runtime and services), and here the
``runstream`` command with the local stack it runs (broker, Tiled, demo).
"""

from pathlib import Path as _Path

# An installed runstream (wheel or editable) has its sub-packages mapped in by the
# build; run straight from a source checkout, they are the folders beside this one.
_checkout = _Path(__file__).resolve().parent.parent
if not (_Path(__file__).parent / "schemas").is_dir() and (_checkout / "schemas").is_dir():
    __path__.append(str(_checkout))
