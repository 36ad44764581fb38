"""Whether the services of a Kubernetes render fit together: one topic, partitions enough,
volumes big enough, addresses that name real Services, credentials that match, Strimzi
resources that cover what runstream does."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

from tests.deployment.codebase import settings_for
from tests.deployment.containers import Container, Mount, check_detector_files
from tests.deployment.image import image_name
from tests.deployment.kubernetes import (
    by_name,
    k8s_containers,
    secret_files,
    secret_value,
    selects,
    workload_of,
)

_QUANTITY = {
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
}


def quantity_bytes(value: str | int) -> int:
    match = re.fullmatch(r"(\d+)([KMGT]i?|k)?", str(value))
    if not match:
        raise ValueError(f"not a storage quantity: {value!r}")
    return int(match.group(1)) * _QUANTITY.get(match.group(2) or "", 1)


def _replicas(res: dict) -> int:
    return int(res["spec"].get("replicas", 1))


def _claim_size(resources: list[dict], c: Container, mount: Mount) -> tuple[int, list] | None:
    """(requested bytes, access modes) of the claim behind a mount, when it has one."""
    workload = workload_of(resources, c)
    if mount.source.startswith("template:"):
        name = mount.source.partition(":")[2]
        spec = next(
            t["spec"]
            for t in workload["spec"]["volumeClaimTemplates"]
            if t["metadata"]["name"] == name
        )
    elif mount.source.startswith("pvc:"):
        claim = by_name(resources, "PersistentVolumeClaim").get(
            (c.namespace, mount.source.partition(":")[2])
        )
        if claim is None:
            return None
        spec = claim["spec"]
    else:
        return None
    return quantity_bytes(spec["resources"]["requests"]["storage"]), spec.get("accessModes", [])


def check_wiring(resources: list[dict]) -> list[str]:
    """The services agree with each other: the consumers read the engine's topic, in groups of
    their own, with no more replicas than partitions; the engine's state is on volumes big
    enough; URLs and bootstrap addresses name Services of the render."""
    problems = []
    containers = k8s_containers(resources)
    engines = [c for c in containers if c.kind == "engine"]
    consumers = [c for c in containers if c.kind.startswith("consume:")]
    for c in engines:
        workload = workload_of(resources, c)
        if workload["kind"] != "StatefulSet" or _replicas(workload) != 1:
            problems.append(f"{c.where}: the engine must be a StatefulSet of one replica")
    built = {c.where: settings_for(c.kind, c.env)[0] for c in engines + consumers}
    for c in engines:
        settings = built[c.where]
        if "publisher" not in settings or "engine" not in settings:
            continue
        publisher, engine = settings["publisher"], settings["engine"]
        topic, partitions = publisher.resolved_topic, publisher.partitions
        outbox = c.mount_for(Path(publisher.outbox_dir))
        size = outbox and _claim_size(resources, c, outbox)
        if not size:
            problems.append(f"{c.where}: the outbox {publisher.outbox_dir} is on no volume claim")
        elif size[0] < 2 * publisher.max_outbox_bytes:
            problems.append(
                f"{c.where}: the outbox volume is under twice RUNSTREAM_MAX_OUTBOX_BYTES"
            )
        state = c.mount_for(engine.state_dir)
        if not (state and _claim_size(resources, c, state)):
            problems.append(f"{c.where}: the task database {engine.db_path} is on no claim")
        for k in consumers:
            consumer = built[k.where].get("consumer")
            if consumer is None:
                continue
            pattern = consumer.topic_pattern
            if topic not in consumer.topics and not (pattern and re.fullmatch(pattern, topic)):
                problems.append(f"{k.where}: reads {consumer.topics}, not the engine's {topic}")
            replicas = _replicas(workload_of(resources, k))
            if replicas > partitions:
                problems.append(f"{k.where}: {replicas} replicas for {partitions} partitions")
    groups: dict[str, str] = {}
    for k in consumers:
        consumer = built[k.where].get("consumer")
        workload = workload_of(resources, k)["metadata"]["name"]
        if consumer is None:
            continue
        if groups.setdefault(consumer.group, workload) != workload:
            problems.append(
                f"{k.where}: shares the group {consumer.group} with {groups[consumer.group]}"
            )
    for c in containers:
        workload = workload_of(resources, c)
        for path, mount in c.mounts.items():
            size = _claim_size(resources, c, mount)
            if (
                size
                and size[1] == ["ReadWriteOnce"]
                and workload["kind"] != "StatefulSet"
                and _replicas(workload) > 1
            ):
                problems.append(
                    f"{c.where}: {_replicas(workload)} replicas share the "
                    f"ReadWriteOnce claim at {path}"
                )
    problems += _check_addresses(resources, containers)
    problems += _check_postgres(resources, containers)
    problems += check_detector_files(containers)
    return problems


def _service_ports(resources: list[dict], ns: str, host: str) -> set[int] | None:
    """Ports of the Service a short or in-cluster host name means; None: not one of ours."""
    parts = host.split(".")
    if len(parts) > 1 and not (parts[2:3] == ["svc"] or len(parts) == 2):
        return None
    name, namespace = parts[0], parts[1] if len(parts) > 1 else ns
    svc = by_name(resources, "Service").get((namespace, name))
    return None if svc is None else {p["port"] for p in svc["spec"].get("ports", [])}


def _check_addresses(resources: list[dict], containers: list[Container]) -> list[str]:
    problems = []
    kafkas = by_name(resources, "Kafka")
    for c in containers:
        for name in ("RUNSTREAM_TILED_URL", "RUNSTREAM_WEB_ENGINE_URL"):
            url = c.env.get(name)
            if url:
                parts = urlsplit(url)
                ports = _service_ports(resources, c.namespace, parts.hostname or "")
                if ports is None or (parts.port or 80) not in ports:
                    problems.append(f"{c.where}: {name} {url} is no Service port here")
        for address in (c.env.get("RUNSTREAM_KAFKA_BOOTSTRAP") or "").split(","):
            if not address or "." in address.split(":")[0]:
                continue  # outside the cluster, or fully qualified: not checked here
            host, _, port = address.partition(":")
            cluster = host.removesuffix("-kafka-bootstrap")
            if host.endswith("-kafka-bootstrap") and (c.namespace, cluster) in kafkas:
                listeners = kafkas[(c.namespace, cluster)]["spec"]["kafka"]["listeners"]
                if int(port) not in {entry["port"] for entry in listeners}:
                    problems.append(f"{c.where}: Kafka {cluster} has no listener on {port}")
                continue
            ports = _service_ports(resources, c.namespace, host)
            if ports is None or int(port) not in ports:
                problems.append(f"{c.where}: bootstrap {address} is no Service port here")
    return problems


def _check_postgres(resources: list[dict], containers: list[Container]) -> list[str]:
    """URIs in Secrets that point at the render's PostgreSQL use its user, password and
    databases."""
    problems = []
    for db in (c for c in containers if image_name(c.image) == "postgres"):
        workload = workload_of(resources, db)
        services = [
            s
            for s in by_name(resources, "Service").values()
            if selects(
                s["spec"].get("selector", {}),
                workload["spec"]["template"]["metadata"].get("labels", {}),
            )
        ]
        names = {s["metadata"]["name"] for s in services}
        password = _env_secret(resources, workload, db, "POSTGRES_PASSWORD")
        databases = {db.env.get("POSTGRES_DB") or db.env.get("POSTGRES_USER")}
        initdb = db.mounts.get("/docker-entrypoint-initdb.d")
        for text in (initdb.files or {}).values() if initdb else ():
            databases |= set(re.findall(r"CREATE DATABASE (\w+)", text or "", re.IGNORECASE))
        for secret in by_name(resources, "Secret").values():
            for key, value in (secret_files(secret) or {}).items():
                if not (value or "").startswith(("postgresql://", "postgres://")):
                    continue
                uri = urlsplit(value)
                if (uri.hostname or "").split(".")[0] not in names:
                    continue
                where = f"Secret/{secret['metadata']['name']}[{key}]"
                if uri.username != db.env.get("POSTGRES_USER"):
                    problems.append(f"{where}: user {uri.username} is not POSTGRES_USER")
                if password is not None and uri.password != password:
                    problems.append(f"{where}: the password is not the database's")
                if uri.path.lstrip("/") not in databases:
                    problems.append(f"{where}: database {uri.path} is not created")
    return problems


def _env_secret(resources: list[dict], workload: dict, c: Container, name: str) -> str | None:
    spec = workload["spec"]["template"]["spec"]
    raw = next(x for x in spec["containers"] if c.where.endswith("/" + x["name"]))
    for item in raw.get("env", []):
        ref = (item.get("valueFrom") or {}).get("secretKeyRef")
        if item["name"] == name and ref:
            return secret_value(resources, c.namespace, ref["name"], ref["key"])
    return c.env.get(name)


def check_strimzi(resources: list[dict]) -> list[str]:
    """Strimzi resources hang together and fit runstream: pools and users belong to a Kafka,
    the topics are the engine's (same partitions, room for its messages, a dead-letter topic),
    and the user's ACLs cover the topics and every consumer group."""
    kafkas = {r["metadata"]["name"]: r for r in resources if r.get("kind") == "Kafka"}
    if not kafkas:
        return []
    problems = []
    owned = [r for r in resources if r.get("kind") in ("KafkaNodePool", "KafkaTopic", "KafkaUser")]
    for res in owned:
        cluster = res["metadata"].get("labels", {}).get("strimzi.io/cluster")
        if cluster not in kafkas:
            problems.append(f"{res['kind']}/{res['metadata']['name']}: no Kafka {cluster}")
    pools = [r for r in resources if r.get("kind") == "KafkaNodePool"]
    brokers = sum(
        p["spec"].get("replicas", 0) for p in pools if "broker" in p["spec"].get("roles", [])
    )
    if not any("controller" in p["spec"].get("roles", []) for p in pools):
        problems.append("no KafkaNodePool has the controller role (KRaft)")
    topics = {
        r["spec"].get("topicName", r["metadata"]["name"]): r
        for r in resources
        if r.get("kind") == "KafkaTopic"
    }
    for name, topic in topics.items():
        if topic["spec"].get("replicas", 0) > brokers:
            problems.append(
                f"KafkaTopic/{name}: {topic['spec'].get('replicas')} replicas on {brokers} brokers"
            )
    containers = k8s_containers(resources)
    for c in (c for c in containers if c.kind == "engine"):
        publisher = settings_for(c.kind, c.env)[0].get("publisher")
        if publisher is None:
            continue
        topic = topics.get(publisher.resolved_topic)
        if topic is None:
            problems.append(f"no KafkaTopic {publisher.resolved_topic} (the engine's topic)")
            continue
        if topic["spec"].get("partitions") != publisher.partitions:
            problems.append(
                f"KafkaTopic/{publisher.resolved_topic}: "
                f"{topic['spec'].get('partitions')} partitions, the engine says "
                f"{publisher.partitions}"
            )
        limit = int((topic["spec"].get("config") or {}).get("max.message.bytes", 1048588))
        if limit < publisher.max_message_bytes:
            problems.append(
                f"KafkaTopic/{publisher.resolved_topic}: max.message.bytes "
                "under the engine's RUNSTREAM_MAX_MESSAGE_BYTES"
            )
        dlq = f"{publisher.resolved_topic}.dlq"
        if dlq not in topics:
            problems.append(f"no KafkaTopic {dlq} (dead letters)")
        factor, min_isr = publisher.kafka.replication.wanted().resolve(brokers)
        for name in (publisher.resolved_topic, dlq):
            spec = topics.get(name, {}).get("spec")
            if spec is None:
                continue
            isr = int((spec.get("config") or {}).get("min.insync.replicas", 1))
            if (spec.get("replicas"), isr) != (factor, min_isr):
                problems.append(
                    f"KafkaTopic/{name}: replicas {spec.get('replicas')}, min.insync.replicas "
                    f"{isr}; runstream would make replication {factor}, min ISR {min_isr}"
                )
        needs = {
            ("topic", publisher.resolved_topic): {"Write", "Read", "Describe"},
            ("topic", dlq): {"Write", "Describe"},
        }
        for k in (k for k in containers if k.kind.startswith("consume:")):
            consumer = settings_for(k.kind, k.env)[0].get("consumer")
            if consumer is not None:
                needs[("group", consumer.group)] = {"Read"}
        for user in (r for r in resources if r.get("kind") == "KafkaUser"):
            acls = user["spec"].get("authorization", {}).get("acls", [])
            for (kind, name), operations in needs.items():
                granted = set()
                for acl in acls:
                    res = acl["resource"]
                    literal = res.get("patternType", "literal") == "literal"
                    if res["type"] == kind and (
                        name == res["name"] if literal else name.startswith(res["name"])
                    ):
                        granted |= set(acl["operations"])
                if not operations <= granted and "All" not in granted:
                    problems.append(
                        f"KafkaUser/{user['metadata']['name']}: {kind} {name} "
                        f"lacks {sorted(operations - granted)}"
                    )
    return problems
