"""The Kubernetes manifests' workloads run in containers on this host: each with its manifest's
command, variables and volumes, as the pod's securityContext runs it (uid 10001, a read-only
root, writable only where a volume is mounted), against a Kafka broker and a Tiled server on
the host network. Only the cluster's addresses and Secrets are replaced."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.container_engine import Containers
from tests.deployment.containers import Container
from tests.deployment.kubernetes import k8s_containers, workload_of
from tests.deployment.render import render
from tests.kafka_tools import free_port, unique_prefix
from tests.waiting import eventually

#: The pods' securityContext (deploy/k8s: runAsUser, runAsGroup, fsGroup).
UID = 10001
ENGINE = "StatefulSet/runstream-engine/engine"
#: The consumer services, by name: their workload in the manifests. Add a service here.
CONSUMERS = {
    "table": "Deployment/runstream-table/table",
    "plot": "Deployment/runstream-plot/plot",
    "tiled": "Deployment/runstream-tiled-writer/tiled",
    "web": "Deployment/runstream-web/web",
}


@dataclass
class Service:
    name: str
    container: str
    url: str  # where its /healthz and /readyz answer
    grace: float  # the pod's terminationGracePeriodSeconds
    started: float  # monotonic time of `run`
    ready_after: float = 0.0  # seconds from `run` to /readyz answering 200


@dataclass
class Stack:
    """The workloads of the dev overlay, started one at a time."""

    containers: Containers
    image: str
    files: Path  # Secrets' files are written here, to mount read-only
    bootstrap: str
    topic: str
    tiled_url: str
    tiled_api_key: str
    catalog: str
    token: str  # the engine's API token, given in its environment
    resources: list[dict] = field(default_factory=lambda: render("dev"))
    web_port: int = 0  # the web view's app port, once it runs

    def manifest(self, where: str) -> Container:
        return next(c for c in k8s_containers(self.resources) if c.where == where)

    def grace(self, where: str) -> float:
        workload = workload_of(self.resources, self.manifest(where))
        return float(workload["spec"]["template"]["spec"]["terminationGracePeriodSeconds"])

    def engine(self, name: str = "engine", port: int | None = None) -> Service:
        port = port or free_port()
        env: dict[str, str | None] = {
            "RUNSTREAM_KAFKA_BOOTSTRAP": self.bootstrap,
            "RUNSTREAM_TOPIC": self.topic,
            "RUNSTREAM_PARTITIONS": "2",
            "RUNSTREAM_API_TOKEN": self.token,  # the token from the environment, not the file
            "RUNSTREAM_API_TOKEN_FILE": None,
            "RUNSTREAM_ENGINE_URL": f"http://127.0.0.1:{port}",
        }
        args = ["--host", "127.0.0.1", "--port", str(port)]
        return self._start(name, ENGINE, env, args, port)

    def consumer(self, name: str) -> Service:
        port = free_port()
        env: dict[str, str | None] = {
            "RUNSTREAM_KAFKA_BOOTSTRAP": self.bootstrap,
            "RUNSTREAM_TOPICS": json.dumps([self.topic]),
            "RUNSTREAM_GROUP": unique_prefix(name),
            "RUNSTREAM_FROM_BEGINNING": "true",
            "RUNSTREAM_HTTP_HOST": "127.0.0.1",
            "RUNSTREAM_HTTP_PORT": str(port),
            "RUNSTREAM_TILED_URL": self.tiled_url,
            "RUNSTREAM_TILED_API_KEY": self.tiled_api_key,
            "RUNSTREAM_SESSION_TIMEOUT_MS": "6000",
        }
        if name == "web":  # its app on a port of its own, beside the health port
            self.web_port = free_port()
            env |= {"RUNSTREAM_WEB_HOST": "127.0.0.1", "RUNSTREAM_WEB_PORT": str(self.web_port),
                    "RUNSTREAM_WEB_ENGINE_URL": None}  # fmt: skip
        args = ["--catalog", self.catalog] if name == "tiled" else []
        return self._start(name, CONSUMERS[name], env, args, port)

    def _start(self, name: str, where: str, env: dict[str, str | None], args: list[str],
               port: int) -> Service:  # fmt: skip
        """Run one workload: its arguments, its variables (``env`` replaces the cluster's
        addresses and Secrets; None unsets), a named volume per claim (by the claim's name, so
        a second container of the workload gets the same ones), its Secrets' files read-only,
        /tmp on tmpfs."""
        manifest = self.manifest(where)
        volumes: dict[str, str] = {}
        binds: dict[str, Path] = {}
        tmpfs: list[str] = []
        for target, mount in manifest.mounts.items():
            kind, _, source = mount.source.partition(":")
            if kind == "emptyDir":
                tmpfs.append(target)
            elif kind in ("pvc", "template"):
                volumes[source] = target
            elif kind in ("secret", "configMap"):
                folder = self.files / f"{name}-{source}"
                folder.mkdir(mode=0o755, exist_ok=True)
                folder.chmod(0o755)
                for file, text in (mount.files or {}).items():
                    (folder / file).write_text(text or "")
                    (folder / file).chmod(0o644)
                binds[target] = folder
        variables = {k: v for k, v in {**manifest.env, **env}.items() if v is not None}
        options = self.containers.secured(uid=UID, volumes=volumes, binds=binds, tmpfs=tmpfs)
        argv = [*manifest.argv[1:], *args]
        full, began = self.containers.run(name, self.image, argv, variables, options)
        return Service(name, full, f"http://127.0.0.1:{port}", self.grace(where), began)

    def wait_ready(self, service: Service, timeout: float = 90) -> None:
        """Until /readyz answers 200 (then /healthz and the image's health check must pass)."""

        def stopped() -> str | None:
            running = self.containers.running(service.container)
            return None if running else f"its container stopped:\n{self.logs(service)}"

        eventually(lambda: httpx.get(f"{service.url}/readyz", timeout=2).status_code == 200,
                   timeout, lambda: f"{service.name} to be ready:\n{self.logs(service)}",
                   fail_fast=stopped, ignoring=httpx.HTTPError)  # fmt: skip
        service.ready_after = time.monotonic() - service.started
        assert httpx.get(f"{service.url}/healthz", timeout=2).status_code == 200
        assert self.containers.healthy(service.container) in (True, None)

    def logs(self, service: Service) -> str:
        return self.containers.logs(service.container)
