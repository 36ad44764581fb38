"""podman (or Docker) from the tests: the image built by deploy/build-image, and containers run
as a pod's securityContext runs them (a user of its own, a read-only root, writable volumes)."""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUILD_IMAGE = ROOT / "deploy" / "build-image"
#: Limits given explicitly, at most this machine's: in some VMs runc may not raise a limit
#: (podman's defaults and `--ulimit host` then fail with "error setting rlimit").
ULIMITS = [
    "--ulimit",
    "nofile={0}:{0}".format(min(resource.getrlimit(resource.RLIMIT_NOFILE)[1], 65536)),
    "--ulimit",
    "nproc=4096:4096",
]


def _answers(command: list[str]) -> bool:
    try:
        return subprocess.run(command, capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def find_engine() -> str | None:
    """podman when it works here, else Docker when its engine answers, else None."""
    if shutil.which("podman") and _answers(["podman", "info"]):
        return "podman"
    if shutil.which("docker") and _answers(["docker", "info"]):
        return "docker"
    return None


def build_image(engine: str, timeout: float) -> str:
    """Run deploy/build-image; its last line is the image's reference."""
    done = subprocess.run(
        [str(BUILD_IMAGE)], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
        env={**os.environ, "RUNSTREAM_BUILD_ENGINE": engine},
    )  # fmt: skip
    assert done.returncode == 0, f"deploy/build-image failed:\n{done.stderr[-4000:]}"
    return done.stdout.strip().splitlines()[-1]


@dataclass
class Containers:
    """Containers and volumes made through one engine, each named with ``prefix`` and removed
    together by ``remove_all``."""

    engine: str
    prefix: str
    names: list[str] = field(default_factory=list)
    volumes: set[str] = field(default_factory=set)

    @property
    def cli(self) -> list[str]:
        # crun cannot set rlimits in some sandboxes; runc can, when it is installed
        if self.engine == "podman" and shutil.which("runc"):
            return ["podman", "--runtime", "runc"]
        return [self.engine]

    def command(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run([*self.cli, *args], capture_output=True, text=True, timeout=timeout)

    def secured(self, *, uid: int, volumes: dict[str, str], binds: dict[str, Path],
                tmpfs: list[str]) -> list[str]:  # fmt: skip
        """``run`` options for a pod's securityContext: uid and gid ``uid``, a read-only root,
        named volumes owned by the user (what fsGroup does), read-only files, tmpfs."""
        options = ["--user", f"{uid}:{uid}", "--read-only", "--cap-drop", "ALL",
                   "--security-opt", "no-new-privileges", "--network", "host"]  # fmt: skip
        options += ULIMITS
        if self.engine == "podman":  # only what is mounted is writable, as in a pod
            options += ["--read-only-tmpfs=false"]
        for name, target in volumes.items():
            volume = f"{self.prefix}-{name}"
            self.volumes.add(volume)
            options += ["-v", f"{volume}:{target}" + (":U" if self.engine == "podman" else "")]
        for target, source in binds.items():
            options += ["-v", f"{source}:{target}:ro"]
        for target in tmpfs:
            options += ["--tmpfs", target]
        return options

    def run(self, name: str, image: str, args: list[str], env: dict[str, str],
            options: list[str]) -> tuple[str, float]:  # fmt: skip
        """Start a detached container; (its full name, the monotonic time of the start)."""
        full = f"{self.prefix}-{name}"
        self.names.append(full)
        env_options = [f"--env={k}={v}" for k, v in env.items()]
        began = time.monotonic()
        done = self.command("run", "-d", "--name", full, *options, *env_options, image, *args)
        assert done.returncode == 0, done.stderr
        return full, began

    def logs(self, name: str) -> str:
        done = self.command("logs", name)
        return done.stdout + done.stderr

    def running(self, name: str) -> bool:
        done = self.command("inspect", "--format", "{{.State.Running}}", name)
        return done.stdout.strip() == "true"

    def healthy(self, name: str) -> bool | None:
        """The image's HEALTHCHECK run once in the container (podman); None with Docker, whose
        checks run only on their interval."""
        if self.engine != "podman":
            return None
        return self.command("healthcheck", "run", name).returncode == 0

    def terminate(self, name: str, grace: float) -> tuple[int, float]:
        """SIGTERM, then wait up to ``grace`` seconds: (exit code, seconds it took)."""
        began = time.monotonic()
        done = self.command("kill", "--signal", "TERM", name)
        assert done.returncode == 0, done.stderr
        waited = self.command("wait", name, timeout=grace)
        assert waited.returncode == 0, waited.stderr
        return int(waited.stdout.strip().splitlines()[-1]), time.monotonic() - began

    def exec(self, name: str, *args: str) -> str:
        done = self.command("exec", name, *args)
        assert done.returncode == 0, done.stderr
        return done.stdout

    def remove_all(self) -> None:
        for name in reversed(self.names):
            self.command("rm", "-f", "-t", "0", name)
        for volume in self.volumes:
            self.command("volume", "rm", "-f", volume)
