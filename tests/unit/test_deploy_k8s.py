"""The Kubernetes manifests: every overlay renders, validates, and agrees with the code.

Rendering needs kubectl (or kustomize) on PATH; ``./dev test`` says so when it is missing.
Nothing here talks to a cluster: see deploy/README.md for what that leaves unchecked.
"""

from __future__ import annotations

import base64
import shutil
from collections.abc import Callable

import pytest

from tests.deployment.containers import container_problems, shell_invocations
from tests.deployment.kubernetes import (
    EXTERNAL_SECRETS,
    check_references,
    check_schemas,
    check_scrape_annotations,
    check_security,
    check_selectors,
    k8s_containers,
)
from tests.deployment.render import K8S, OVERLAYS, find, kustomize_command, render
from tests.deployment.wiring import check_strimzi, check_wiring

CHECKS: dict[str, Callable[[list[dict], frozenset[str]], list[str]]] = {
    "schemas": lambda res, ext: check_schemas(res),
    "selectors": lambda res, ext: check_selectors(res),
    "references": check_references,
    "containers": lambda res, ext: container_problems(k8s_containers(res)),
    "scrape-annotations": lambda res, ext: check_scrape_annotations(res),
    "security": lambda res, ext: check_security(res),
    "wiring": lambda res, ext: check_wiring(res),
    "strimzi": lambda res, ext: check_strimzi(res),
}


def kinds(resources: list[dict]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for res in resources:
        found.setdefault(res["kind"], []).append(res["metadata"]["name"])
    return found


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("check", list(CHECKS))
def test_overlay_passes(overlay: str, check: str) -> None:
    problems = CHECKS[check](render(overlay), EXTERNAL_SECRETS[overlay])
    assert problems == []


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_runs_every_service(overlay: str) -> None:
    resources = render(overlay)
    assert {r["metadata"].get("namespace") for r in resources} == {
        "runstream-dev" if overlay == "dev" else "runstream"
    }
    containers = {c.kind for c in k8s_containers(resources)}
    assert {"engine", "consume:table", "consume:plot", "consume:tiled", "consume:web",
            "tiled-server"} <= containers  # fmt: skip
    engine = find(resources, "StatefulSet", "runstream-engine")
    assert engine["spec"]["replicas"] == 1
    assert {t["metadata"]["name"] for t in engine["spec"]["volumeClaimTemplates"]} == {
        "state",
        "outbox",
    }
    hook = engine["spec"]["template"]["spec"]["containers"][0]["lifecycle"]["preStop"]
    assert [argv[1] for argv in shell_invocations(hook["exec"]["command"])] == ["stop"]
    for name in ("runstream-table", "runstream-plot", "runstream-tiled-writer", "runstream-web"):
        assert find(resources, "Deployment", name)
    budgets = {
        p["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"]
        for p in resources
        if p["kind"] == "PodDisruptionBudget"
    }
    workloads = {
        "runstream-engine",
        "runstream-table",
        "runstream-plot",
        "runstream-tiled-writer",
        "runstream-tiled",
        "runstream-web",
    }
    assert workloads <= budgets


def test_dev_defines_what_it_uses_and_production_defines_no_secret() -> None:
    assert EXTERNAL_SECRETS["dev"] == frozenset()
    for overlay in ("production", "strimzi"):
        assert "Secret" not in kinds(render(overlay))
    dev = kinds(render("dev"))
    assert {"kafka", "runstream-postgres"} <= set(dev["StatefulSet"])


def test_dev_secrets_are_marked_placeholders() -> None:
    for secret in (r for r in render("dev") if r["kind"] == "Secret"):
        for key, value in secret["data"].items():
            text = base64.b64decode(value).decode()
            assert text in ("{}",) or "dev" in text, (secret["metadata"]["name"], key)


def test_strimzi_overlay_adds_the_operator_resources() -> None:
    found = kinds(render("strimzi"))
    assert found["Kafka"] == ["runstream"]
    assert found["KafkaNodePool"] == ["dual-role"]
    assert set(found["KafkaTopic"]) == {
        "beamline.bluesky.runengine.documents",
        "beamline.bluesky.runengine.documents.dlq",
    }
    assert found["KafkaUser"] == ["runstream-app"]


def test_production_scrapes_through_service_monitors() -> None:
    found = kinds(render("production"))
    assert set(found["ServiceMonitor"]) == {
        "runstream-engine",
        "runstream-consumers",
        "runstream-tiled",
    }


# -- the checks find what is wrong ----------------------------------------------------------


def container(resources: list[dict], kind: str, name: str, index: int = 0) -> dict:
    return find(resources, kind, name)["spec"]["template"]["spec"]["containers"][index]


def config(resources: list[dict], name: str) -> dict:
    return find(resources, "ConfigMap", name)["data"]


def broken_selector(r: list[dict]) -> None:
    find(r, "Service", "runstream-tiled")["spec"]["selector"]["app.kubernetes.io/name"] = "tild"


def unknown_variable(r: list[dict]) -> None:
    container(r, "Deployment", "runstream-table")["env"].append(
        {"name": "RUNSTREAM_HTTP_PROT", "value": "9400"}
    )


def variable_of_another_service(r: list[dict]) -> None:
    container(r, "Deployment", "runstream-plot")["env"].append(
        {"name": "RUNSTREAM_TILED_URL", "value": "http://runstream-tiled:8000"}
    )


def unknown_subcommand(r: list[dict]) -> None:
    container(r, "Deployment", "runstream-table")["args"] = ["consume", "tabel", "--out", "/x"]


def hook_with_unknown_command(r: list[dict]) -> None:
    hook = container(r, "StatefulSet", "runstream-engine")["lifecycle"]["preStop"]["exec"]
    hook["command"] = ["/bin/sh", "-c", "runstream halt-now || true"]


def probe_path_not_served(r: list[dict]) -> None:
    container(r, "Deployment", "runstream-plot")["livenessProbe"]["httpGet"]["path"] = "/health"


def probe_port_not_declared(r: list[dict]) -> None:
    container(r, "Deployment", "runstream-plot")["readinessProbe"]["httpGet"]["port"] = "http"


def engine_on_loopback(r: list[dict]) -> None:
    config(r, "runstream-engine")["RUNSTREAM_ENGINE_HOST"] = "127.0.0.1"


def health_server_elsewhere(r: list[dict]) -> None:
    config(r, "runstream-consumers")["RUNSTREAM_HTTP_PORT"] = "9500"


def undefined_secret(r: list[dict]) -> None:
    env = container(r, "Deployment", "runstream-tiled")["env"][0]
    env["valueFrom"]["secretKeyRef"]["name"] = "tiled-key"


def missing_secret_key(r: list[dict]) -> None:
    env = container(r, "Deployment", "runstream-tiled")["env"][0]
    env["valueFrom"]["secretKeyRef"]["key"] = "apikey"


def too_many_replicas(r: list[dict]) -> None:
    find(r, "Deployment", "runstream-tiled-writer")["spec"]["replicas"] = 7


def consumers_on_another_topic(r: list[dict]) -> None:
    config(r, "runstream-consumers")["RUNSTREAM_TOPICS"] = '["runstream.documents"]'


def shared_group(r: list[dict]) -> None:
    container(r, "Deployment", "runstream-plot")["env"][0]["value"] = "runstream-table"


def schema_typo(r: list[dict]) -> None:
    find(r, "Deployment", "runstream-table")["spec"]["replica"] = 2


def writable_root(r: list[dict]) -> None:
    container(r, "Deployment", "runstream-plot")["securityContext"]["readOnlyRootFilesystem"] = 0


def outbox_in_memory(r: list[dict]) -> None:
    config(r, "runstream-engine")["RUNSTREAM_OUTBOX_DIR"] = "/tmp/outbox"


def token_file_not_mounted(r: list[dict]) -> None:
    config(r, "runstream-engine")["RUNSTREAM_API_TOKEN_FILE"] = "/etc/runstream/token"  # noqa: S105


def wrong_database_password(r: list[dict]) -> None:
    secret = find(r, "Secret", "runstream-postgres")
    secret["data"]["password"] = base64.b64encode(b"something-else").decode()


def tiled_config_typo(r: list[dict]) -> None:
    data = config(r, "runstream-tiled-config")
    data["config.yml"] = data["config.yml"].replace("writable_storage", "writeable_storage")


def tiled_url_wrong_port(r: list[dict]) -> None:
    container(r, "Deployment", "runstream-tiled-writer")["env"][1]["value"] = (
        "http://runstream-tiled:8080"
    )


def bootstrap_nobody_serves(r: list[dict]) -> None:
    config(r, "runstream-kafka")["RUNSTREAM_KAFKA_BOOTSTRAP"] = "kafka:29092"


def scrape_port_undeclared(r: list[dict]) -> None:
    template = find(r, "Deployment", "runstream-plot")["spec"]["template"]
    template["metadata"]["annotations"]["prometheus.io/port"] = "9401"


def tiled_monitor_without_key(r: list[dict]) -> None:
    del find(r, "ServiceMonitor", "runstream-tiled")["spec"]["endpoints"][0]["authorization"]


def topic_partitions_disagree(r: list[dict]) -> None:
    find(r, "KafkaTopic", "beamline.bluesky.runengine.documents")["spec"]["partitions"] = 6


def acl_misses_the_groups(r: list[dict]) -> None:
    acls = find(r, "KafkaUser", "runstream-app")["spec"]["authorization"]["acls"]
    acls[1]["resource"]["name"] = "beamline-"


def topic_without_partitions(r: list[dict]) -> None:
    del find(r, "KafkaTopic", "beamline.bluesky.runengine.documents.dlq")["spec"]["partitions"]


def dead_letters_with_one_insync_replica(r: list[dict]) -> None:
    topic = find(r, "KafkaTopic", "beamline.bluesky.runengine.documents.dlq")
    del topic["spec"]["config"]["min.insync.replicas"]


def tiled_cannot_read_detector_files(r: list[dict]) -> None:
    mounts = container(r, "Deployment", "runstream-tiled")["volumeMounts"]
    mounts[:] = [v for v in mounts if v["name"] != "detector-files"]


BROKEN = [
    ("dev", broken_selector, "selectors", "selects no pods"),
    ("dev", unknown_variable, "containers", "RUNSTREAM_HTTP_PROT is not a setting"),
    ("dev", variable_of_another_service, "containers", "RUNSTREAM_TILED_URL is not a setting"),
    ("dev", unknown_subcommand, "containers", "invalid choice: 'tabel'"),
    ("dev", hook_with_unknown_command, "containers", "invalid choice: 'halt-now'"),
    ("dev", probe_path_not_served, "containers", "/health, which `consume:plot` does not"),
    ("dev", probe_port_not_declared, "containers", "names port 'http', which is not declared"),
    ("dev", engine_on_loopback, "containers", "binds 127.0.0.1 only"),
    ("dev", health_server_elsewhere, "containers", "the service listens on 9500"),
    ("production", undefined_secret, "references", "Secret tiled-key is neither defined"),
    ("dev", missing_secret_key, "references", "has no key 'apikey'"),
    ("dev", too_many_replicas, "wiring", "7 replicas for 6 partitions"),
    ("dev", consumers_on_another_topic, "wiring", "not the engine's"),
    ("dev", shared_group, "wiring", "shares the group runstream-table"),
    ("dev", schema_typo, "schemas", "'replica' was unexpected"),
    ("dev", writable_root, "security", "the root filesystem is writable"),
    ("dev", outbox_in_memory, "wiring", "is on no volume claim"),
    ("dev", token_file_not_mounted, "containers", "is in no mounted Secret"),
    ("dev", wrong_database_password, "wiring", "the password is not the database's"),
    ("dev", tiled_config_typo, "containers", "Tiled refuses the configuration"),
    ("dev", tiled_url_wrong_port, "wiring", "is no Service port here"),
    ("dev", bootstrap_nobody_serves, "wiring", "bootstrap kafka:29092 is no Service port"),
    ("dev", scrape_port_undeclared, "scrape-annotations", "declared by no container"),
    ("production", tiled_monitor_without_key, "selectors", "needs a credential"),
    ("strimzi", topic_partitions_disagree, "strimzi", "6 partitions, the engine says 12"),
    ("strimzi", acl_misses_the_groups, "strimzi", "group runstream-table lacks ['Read']"),
    ("strimzi", topic_without_partitions, "schemas", "'partitions' is a required property"),
    ("dev", tiled_cannot_read_detector_files, "wiring", "detector files at"),
    ("strimzi", dead_letters_with_one_insync_replica, "strimzi", "min.insync.replicas 1;"),
]


@pytest.mark.parametrize(
    "overlay,breaking,check,expected", BROKEN, ids=[b[1].__name__ for b in BROKEN]
)
def test_checks_report_a_broken_manifest(
    overlay: str, breaking: Callable[[list[dict]], None], check: str, expected: str
) -> None:
    resources = render(overlay)
    breaking(resources)
    problems = CHECKS[check](resources, EXTERNAL_SECRETS[overlay])
    assert any(expected in p for p in problems), problems


def test_an_external_secret_must_be_listed() -> None:
    problems = check_references(render("production"), frozenset())
    assert any("Secret runstream-api-token is neither defined nor external" in p for p in problems)


def test_kustomize_missing_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(RuntimeError, match="needs kubectl"):
        kustomize_command(K8S / "base")
