"""The deployment guide (deploy/README.md) covers what the code and manifests use, and says
plainly what was not tried."""

from __future__ import annotations

import re

import pytest

from tests.deployment.codebase import deployment_env
from tests.deployment.kubernetes import EXTERNAL_SECRETS, k8s_containers
from tests.deployment.render import GUIDE, OVERLAYS, render

GUIDE_TEXT = GUIDE.read_text()


def test_every_setting_of_the_deployed_services_is_in_the_reference() -> None:
    names = set().union(*deployment_env().values())
    assert names  # the settings classes were found
    missing = sorted(n for n in names if f"`{n}`" not in GUIDE_TEXT)
    assert missing == []


def test_every_variable_the_manifests_set_is_in_the_reference() -> None:
    names: set[str] = set()
    for overlay in OVERLAYS:
        for c in k8s_containers(render(overlay)):
            if c.is_runstream:
                names |= {n for n in c.env if n.startswith(("RUNSTREAM_", "TILED_"))}
    assert names
    assert sorted(n for n in names if f"`{n}`" not in GUIDE_TEXT) == []


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_external_secret_is_documented(overlay: str) -> None:
    section = GUIDE_TEXT.split("\n## Secrets\n", 1)[1].split("\n## ", 1)[0]
    for name in EXTERNAL_SECRETS[overlay]:
        row = next((line for line in section.splitlines() if line.startswith(f"| `{name}`")), "")
        assert "external" in row, name


def test_the_guide_says_what_could_not_be_run() -> None:
    text = " ".join(GUIDE_TEXT.replace("\n> ", "\n").split())  # the note is a block quote
    assert "builds the image with `deploy/build-image`" in text
    assert "does not start the compose stack or apply the manifests to a cluster" in text


def test_the_guide_has_the_commands_and_topics_asked_for() -> None:
    text = " ".join(GUIDE_TEXT.split())
    for needle in (
        "docker build -f deploy/Dockerfile -t runstream:0.1.0 .",
        "docker compose -f deploy/compose/compose.yml up --build -d",
        "kubectl apply -k deploy/k8s/overlays/dev",
        "kubectl apply -k deploy/k8s/overlays/production",
        "tiled catalog upgrade-database",
        "from_uri(",
        "bluesky-tiled-plugins",
        "RUNSTREAM_PARTITIONS` (default 6",
    ):
        assert needle in text, needle
    headings = set(re.findall(r"^## (.+)$", GUIDE_TEXT, re.MULTILINE))
    assert {
        "Sizing",
        "Configuration reference",
        "Secrets",
        "Upgrading",
        "Tiled query clients",
    } <= headings


def test_the_documented_partition_default_is_the_codes() -> None:
    from runstream.producer.settings import PublisherSettings

    default = PublisherSettings.model_fields["partitions"].default
    assert f"`RUNSTREAM_PARTITIONS` (default {default}" in " ".join(GUIDE_TEXT.split())
