"""A kustomize render read as its pods' containers, and the checks on its objects one kind at
a time: schemas, selectors, references, security."""

from __future__ import annotations

import base64
import functools
from collections.abc import Iterator, Mapping
from pathlib import Path

import yaml

from tests.deployment.containers import Container, Mount, serves
from tests.deployment.image import image_entrypoint

#: Secrets an overlay uses without defining them: the operators create them (see the guide).
EXTERNAL_SECRETS: dict[str, frozenset[str]] = {
    "dev": frozenset(),
    "production": frozenset(
        {
            "runstream-api-token",
            "runstream-kafka-client",
            "runstream-tiled",
            "runstream-tiled-db",
            "runstream-tiled-tls",
            "runstream-web-tls",
        }
    ),
}
EXTERNAL_SECRETS["strimzi"] = EXTERNAL_SECRETS["production"]

#: Containers allowed a writable root filesystem, and why.
WRITABLE_ROOT = {"kafka": "the official Kafka image writes its server.properties at start"}

#: Kubernetes versions whose schemas every built-in resource must satisfy (strict mode).
KUBE_VERSIONS = ("1.30.0", "latest")

#: JSON Schemas, by API group and kind, for the custom resources in the overlays (the fields
#: we use): Strimzi's and the Prometheus Operator's ServiceMonitor.
CUSTOM_SCHEMAS: dict[str, dict[str, dict]] = yaml.safe_load(
    (Path(__file__).parent / "custom_resources.yaml").read_text()
)["schemas"]

WORKLOADS = ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job")


# -- reading a render -----------------------------------------------------------------------


def by_name(resources: list[dict], kind: str) -> dict[tuple[str, str], dict]:
    """The resources of this kind by (namespace, name)."""
    return {
        (r["metadata"].get("namespace", ""), r["metadata"]["name"]): r
        for r in resources
        if r.get("kind") == kind
    }


def pod_templates(resources: list[dict]) -> Iterator[tuple[dict, dict]]:
    for res in resources:
        if res.get("kind") in WORKLOADS:
            yield res, res["spec"]["template"]
        elif res.get("kind") == "CronJob":
            yield res, res["spec"]["jobTemplate"]["spec"]["template"]


def workload_of(resources: list[dict], c: Container) -> dict:
    return next(
        r
        for r, _ in pod_templates(resources)
        if c.where.startswith(f"{r['kind']}/{r['metadata']['name']}/")
    )


def selects(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def secret_files(secret: dict | None) -> dict[str, str | None] | None:
    if secret is None:
        return None
    files: dict[str, str | None] = {
        k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()
    }
    files.update(secret.get("stringData") or {})
    return files


def secret_value(resources: list[dict], namespace: str, name: str, key: str) -> str | None:
    files = secret_files(by_name(resources, "Secret").get((namespace, name)))
    return (files or {}).get(key)


def k8s_containers(resources: list[dict]) -> list[Container]:
    config_maps = by_name(resources, "ConfigMap")
    secrets = by_name(resources, "Secret")
    found = []
    for res, template in pod_templates(resources):
        ns = res["metadata"].get("namespace", "")
        spec = template["spec"]
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        claims = {t["metadata"]["name"] for t in res["spec"].get("volumeClaimTemplates", [])}
        for c in [*spec.get("initContainers", []), *spec["containers"]]:
            env: dict[str, str | None] = {}
            for source in c.get("envFrom", []):
                if "configMapRef" in source:
                    cm = config_maps.get((ns, source["configMapRef"]["name"]), {})
                    env.update({k: str(v) for k, v in (cm.get("data") or {}).items()})
                if "secretRef" in source:
                    keys = secret_files(secrets.get((ns, source["secretRef"]["name"]))) or {}
                    env.update(dict.fromkeys(keys))
            for item in c.get("env", []):
                value = item.get("value")
                ref = (item.get("valueFrom") or {}).get("configMapKeyRef")
                if ref:
                    cm = config_maps.get((ns, ref["name"]), {})
                    value = (cm.get("data") or {}).get(ref["key"])
                env[item["name"]] = None if value is None else str(value)
            ports: dict[str | int, int] = {}
            for port in c.get("ports", []):
                ports[port["containerPort"]] = port["containerPort"]
                if "name" in port:
                    ports[port["name"]] = port["containerPort"]
            probes = [
                (kind, c[kind]["httpGet"].get("port"), c[kind]["httpGet"].get("path", "/"))
                for kind in ("startupProbe", "livenessProbe", "readinessProbe")
                if "httpGet" in c.get(kind, {})
            ]
            hooks = [
                hook["exec"]["command"]
                for hook in (c.get("lifecycle") or {}).values()
                if "exec" in hook
            ]
            mounts = {}
            for m in c.get("volumeMounts", []):
                mounts[m["mountPath"]] = _mount(
                    volumes.get(m["name"]), m, claims, ns, config_maps, secrets
                )
            argv = [*(c.get("command") or image_entrypoint(c["image"])), *c.get("args", [])]
            where = f"{res['kind']}/{res['metadata']['name']}/{c['name']}"
            found.append(Container(where, c["image"], argv, env, ports, probes, hooks, mounts, ns))
    return found


def _mount(
    volume: dict | None, mount: dict, claims: set[str], ns: str, config_maps: dict, secrets: dict
) -> Mount:
    if volume is None:
        name = mount["name"]
        return Mount(f"template:{name}") if name in claims else Mount(f"missing:{name}")
    if "secret" in volume:
        name = volume["secret"]["secretName"]
        files = secret_files(secrets.get((ns, name)))
        return Mount(f"secret:{name}", _items(volume["secret"], files, mount))
    if "configMap" in volume:
        name = volume["configMap"]["name"]
        cm = config_maps.get((ns, name))
        files = None if cm is None else {k: str(v) for k, v in (cm.get("data") or {}).items()}
        return Mount(f"configMap:{name}", _items(volume["configMap"], files, mount))
    if "persistentVolumeClaim" in volume:
        return Mount(f"pvc:{volume['persistentVolumeClaim']['claimName']}")
    if "emptyDir" in volume:
        return Mount("emptyDir")
    return Mount("other")


def _items(source: dict, files: dict | None, mount: dict) -> dict | None:
    if files is None:
        return None
    if "items" in source:
        files = {item["path"]: files.get(item["key"]) for item in source["items"]}
    if mount.get("subPath"):
        return {"": files.get(mount["subPath"])} if mount["subPath"] in files else {}
    return files


# -- checks ---------------------------------------------------------------------------------


@functools.cache
def _patch_schema_cache() -> None:
    import kubernetes_validate.utils as kv

    kv.schema_contents = functools.cache(kv.schema_contents)


def check_schemas(resources: list[dict]) -> list[str]:
    """Built-in kinds against the Kubernetes schemas (strict); custom resources against ours."""
    import jsonschema
    import kubernetes_validate.utils as kv

    _patch_schema_cache()
    versions = [kv.latest_version() if v == "latest" else v for v in KUBE_VERSIONS]
    problems = []
    for res in resources:
        where = f"{res.get('kind')}/{res.get('metadata', {}).get('name')}"
        group = res.get("apiVersion", "").rpartition("/")[0]
        if group in CUSTOM_SCHEMAS:
            schema = CUSTOM_SCHEMAS[group].get(res.get("kind"))
            if schema is None:
                problems.append(f"{where}: no schema for {res.get('kind')} in {group}")
                continue
            for error in jsonschema.Draft202012Validator(schema).iter_errors(res):
                path = ".".join(str(p) for p in error.absolute_path)
                problems.append(f"{where}: {path}: {error.message}")
            continue
        for version in versions:
            try:
                kv.validate(res, version, strict=True)
            except kv.ValidationError as exc:
                path = ".".join(str(p) for p in exc.path)
                problems.append(f"{where} (Kubernetes {version}): {path}: {exc.message}")
            except kv.SchemaNotFoundError as exc:
                problems.append(f"{where}: {exc.message}")
    return problems


def _templates_in(resources: list[dict], namespace: str) -> list[tuple[dict, dict]]:
    return [
        (r, t)
        for r, t in pod_templates(resources)
        if r["metadata"].get("namespace", "") == namespace
    ]


def check_selectors(resources: list[dict]) -> list[str]:
    """Services, budgets and monitors select pods (or Services) that exist; ports resolve."""
    problems = []
    containers = {c.where: c for c in k8s_containers(resources)}
    services = by_name(resources, "Service")
    for res, template in pod_templates(resources):
        selector = res["spec"].get("selector", {}).get("matchLabels", {})
        if not selects(selector, template["metadata"].get("labels", {})):
            problems.append(
                f"{res['kind']}/{res['metadata']['name']}: its selector does not "
                "match its own pod template"
            )
        name = res["spec"].get("serviceName")
        if name and (res["metadata"].get("namespace", ""), name) not in services:
            problems.append(
                f"{res['kind']}/{res['metadata']['name']}: serviceName {name} is no Service here"
            )
    for (ns, name), svc in services.items():
        selector = svc["spec"].get("selector")
        if not selector:
            continue
        chosen = [
            (r, t)
            for r, t in _templates_in(resources, ns)
            if selects(selector, t["metadata"].get("labels", {}))
        ]
        if not chosen:
            problems.append(f"Service/{name}: selects no pods ({selector})")
            continue
        for port in svc["spec"].get("ports", []):
            target = port.get("targetPort", port["port"])
            if not any(
                target in containers[f"{r['kind']}/{r['metadata']['name']}/{c['name']}"].ports
                for r, t in chosen
                for c in t["spec"]["containers"]
            ):
                problems.append(
                    f"Service/{name}: port {port['port']} targets {target!r}, "
                    "which no selected container declares"
                )
    for (ns, name), pdb in by_name(resources, "PodDisruptionBudget").items():
        selector = pdb["spec"].get("selector", {}).get("matchLabels", {})
        if not any(
            selects(selector, t["metadata"].get("labels", {}))
            for _, t in _templates_in(resources, ns)
        ):
            problems.append(f"PodDisruptionBudget/{name}: selects no pods ({selector})")
    for (ns, name), ingress in by_name(resources, "Ingress").items():
        for rule in ingress["spec"].get("rules", []):
            for path in rule.get("http", {}).get("paths", []):
                backend = path["backend"]["service"]
                svc = services.get((ns, backend["name"]))
                port = backend["port"].get("name", backend["port"].get("number"))
                if svc is None:
                    problems.append(f"Ingress/{name}: no Service {backend['name']}")
                elif not any(port in (p.get("name"), p["port"]) for p in svc["spec"]["ports"]):
                    problems.append(
                        f"Ingress/{name}: Service {backend['name']} has no port {port!r}"
                    )
    problems += _check_monitors(resources, containers)
    return problems


def _check_monitors(resources: list[dict], containers: dict[str, Container]) -> list[str]:
    problems = []
    services = by_name(resources, "Service")
    for (ns, name), monitor in by_name(resources, "ServiceMonitor").items():
        selector = monitor["spec"].get("selector", {}).get("matchLabels", {})
        chosen = [
            s
            for (sns, _), s in services.items()
            if sns == ns and selects(selector, s["metadata"].get("labels", {}))
        ]
        if not chosen:
            problems.append(f"ServiceMonitor/{name}: selects no Service ({selector})")
        for endpoint in monitor["spec"].get("endpoints", []):
            for svc in chosen:
                port = next(
                    (p for p in svc["spec"]["ports"] if p.get("name") == endpoint.get("port")), None
                )
                if port is None:
                    problems.append(
                        f"ServiceMonitor/{name}: Service/{svc['metadata']['name']} "
                        f"has no port named {endpoint.get('port')!r}"
                    )
                    continue
                target = port.get("targetPort", port["port"])
                selector = svc["spec"].get("selector", {})
                for c in containers.values():
                    res = workload_of(resources, c)
                    labels = res["spec"]["template"]["metadata"].get("labels", {})
                    if not (selects(selector, labels) and target in c.ports):
                        continue
                    answer = serves(c, endpoint.get("path", "/metrics"))
                    has_credential = any(
                        k in endpoint for k in ("authorization", "basicAuth", "bearerTokenSecret")
                    )
                    if answer is None:
                        problems.append(
                            f"ServiceMonitor/{name}: {c.where} does not serve "
                            f"{endpoint.get('path')}"
                        )
                    elif answer == "auth" and not has_credential:
                        problems.append(
                            f"ServiceMonitor/{name}: {endpoint.get('path')} of "
                            f"{c.where} needs a credential"
                        )
    return problems


def check_scrape_annotations(resources: list[dict]) -> list[str]:
    """prometheus.io annotations name a port of the pod and a path served without credential."""
    problems = []
    containers = k8s_containers(resources)
    for res, template in pod_templates(resources):
        notes = template["metadata"].get("annotations") or {}
        if notes.get("prometheus.io/scrape") != "true":
            continue
        where = f"{res['kind']}/{res['metadata']['name']}"
        port = int(notes.get("prometheus.io/port", "0"))
        path = notes.get("prometheus.io/path", "/metrics")
        owners = [c for c in containers if c.where.startswith(where + "/") and port in c.ports]
        if not owners:
            problems.append(f"{where}: scrape port {port} is declared by no container")
        for c in owners:
            answer = serves(c, path)
            if answer != "open":
                problems.append(
                    f"{where}: scrape path {path} is "
                    f"{'not served' if answer is None else 'behind a credential'}"
                )
    return problems


def check_references(resources: list[dict], external: frozenset[str] = frozenset()) -> list[str]:
    """ConfigMaps, Secrets and claims that pods, Ingresses and monitors use exist (Secrets may be
    external, when listed), with the keys asked for."""
    problems = []
    config_maps, secrets = by_name(resources, "ConfigMap"), by_name(resources, "Secret")
    claims = by_name(resources, "PersistentVolumeClaim")

    def need(kind: str, ns: str, name: str, key: str | None, where: str) -> None:
        table = config_maps if kind == "ConfigMap" else secrets
        found = table.get((ns, name))
        if found is None:
            if not (kind == "Secret" and name in external):
                problems.append(f"{where}: {kind} {name} is neither defined nor external")
            return
        if key is not None:
            keys = set(found.get("data") or {}) | set(found.get("stringData") or {})
            if key not in keys:
                problems.append(f"{where}: {kind} {name} has no key {key!r}")

    for res, template in pod_templates(resources):
        ns = res["metadata"].get("namespace", "")
        where = f"{res['kind']}/{res['metadata']['name']}"
        spec = template["spec"]
        templates = {t["metadata"]["name"] for t in res["spec"].get("volumeClaimTemplates", [])}
        for volume in spec.get("volumes", []):
            if "configMap" in volume:
                for item in volume["configMap"].get("items", []) or [None]:
                    need("ConfigMap", ns, volume["configMap"]["name"], item and item["key"], where)
            if "secret" in volume:
                for item in volume["secret"].get("items", []) or [None]:
                    need("Secret", ns, volume["secret"]["secretName"], item and item["key"], where)
            if "persistentVolumeClaim" in volume:
                claim = volume["persistentVolumeClaim"]["claimName"]
                if (ns, claim) not in claims:
                    problems.append(f"{where}: PersistentVolumeClaim {claim} is not defined")
        for c in [*spec.get("initContainers", []), *spec["containers"]]:
            mounted = {v["name"] for v in spec.get("volumes", [])} | templates
            for m in c.get("volumeMounts", []):
                if m["name"] not in mounted:
                    problems.append(f"{where}/{c['name']}: mounts {m['name']}, no such volume")
            for source in c.get("envFrom", []):
                for kind, ref in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
                    if ref in source:
                        need(kind, ns, source[ref]["name"], None, where)
            for item in c.get("env", []):
                value_from = item.get("valueFrom") or {}
                for kind, ref in (("ConfigMap", "configMapKeyRef"), ("Secret", "secretKeyRef")):
                    if ref in value_from and not value_from[ref].get("optional"):
                        need(kind, ns, value_from[ref]["name"], value_from[ref]["key"], where)
    for (ns, name), ingress in by_name(resources, "Ingress").items():
        for tls in ingress["spec"].get("tls", []):
            need("Secret", ns, tls["secretName"], None, f"Ingress/{name}")
    for (ns, name), monitor in by_name(resources, "ServiceMonitor").items():
        for endpoint in monitor["spec"].get("endpoints", []):
            ref = (endpoint.get("authorization") or {}).get("credentials")
            if ref:
                need("Secret", ns, ref["name"], ref["key"], f"ServiceMonitor/{name}")
    return problems


def check_security(resources: list[dict]) -> list[str]:
    """Non-root, no privilege escalation, no capabilities, read-only root where the image
    allows, and requests and limits for CPU and memory, for every container."""
    problems = []
    for res, template in pod_templates(resources):
        spec = template["spec"]
        pod = spec.get("securityContext") or {}
        for c in [*spec.get("initContainers", []), *spec["containers"]]:
            where = f"{res['kind']}/{res['metadata']['name']}/{c['name']}"
            ctx = c.get("securityContext") or {}
            if not ctx.get("runAsNonRoot", pod.get("runAsNonRoot")):
                problems.append(f"{where}: runAsNonRoot is not set")
            if ctx.get("runAsUser", pod.get("runAsUser")) == 0:
                problems.append(f"{where}: runs as uid 0")
            if ctx.get("allowPrivilegeEscalation", True):
                problems.append(f"{where}: allowPrivilegeEscalation is not false")
            if "ALL" not in (ctx.get("capabilities") or {}).get("drop", []):
                problems.append(f"{where}: capabilities are not dropped")
            if not ctx.get("readOnlyRootFilesystem") and c["name"] not in WRITABLE_ROOT:
                problems.append(f"{where}: the root filesystem is writable")
            resources_ = c.get("resources") or {}
            for part in ("requests", "limits"):
                for what in ("cpu", "memory"):
                    if what not in (resources_.get(part) or {}):
                        problems.append(f"{where}: no {what} in {part}")
    return problems
