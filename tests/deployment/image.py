"""The container image as its Dockerfile builds it, so the image is checked without Docker:
what runs in it, as whom, with which directories, from which build context."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.deployment.render import DOCKERFILE, final_stage, parse_dockerfile

#: The image's name (any registry, any tag) and its ENTRYPOINT.
IMAGE_NAME = "runstream"
IMAGE_ENTRYPOINT = ["runstream"]

COMPILERS = (
    "build-essential",
    "gcc",
    "g++",
    "clang",
    "make",
    "cmake",
    "cargo",
    "rustc",
    "gfortran",
    "python3-dev",
    "libc6-dev",
)


def image_name(image: str) -> str:
    """An image reference without its registry, tag and digest."""
    last = image.rsplit("/", 1)[-1]
    return last.split("@", 1)[0].split(":", 1)[0]


def dockerfile_dirs(path: Path = DOCKERFILE) -> set[str]:
    """Directories the final stage makes and gives to its user."""
    made: set[str] = set()
    owned: set[str] = set()
    final = final_stage(path)
    user = next((i.arguments for i in reversed(final) if i.instruction == "USER"), "root")
    for ins in final:
        if ins.instruction == "RUN":
            for part in re.findall(r"mkdir -p ([^&;]+)", ins.arguments):
                made.update(p for p in part.split() if p.startswith("/"))
            for owner, part in re.findall(r"chown -R (\S+) ([^&;]+)", ins.arguments):
                if owner == user:
                    owned.update(p for p in part.split() if p.startswith("/"))
    return {d for d in made if any(d == o or d.startswith(o + "/") for o in owned)}


def check_dockerfile(text: str) -> list[str]:
    """A non-root user, a health check, OCI labels, ``runstream`` as the entrypoint, and no
    compilers in the image that runs."""
    stages = parse_dockerfile(text)
    if not stages:
        return ["no FROM"]
    final = stages[-1]
    problems = []
    users = [i.arguments.split(":")[0] for i in final if i.instruction == "USER"]
    if not users or users[-1] in ("root", "0"):
        problems.append("the final stage runs as root (no USER, or USER root)")
    health = [i for i in final if i.instruction == "HEALTHCHECK"]
    if not health or health[-1].arguments.strip().upper() == "NONE":
        problems.append("no HEALTHCHECK")
    labels = " ".join(i.arguments for i in final if i.instruction == "LABEL")
    for key in ("title", "description", "version", "revision", "licenses"):
        if f"org.opencontainers.image.{key}=" not in labels:
            problems.append(f"no org.opencontainers.image.{key} label")
    entry = [i for i in final if i.instruction == "ENTRYPOINT"]
    if not entry or entry[-1].json() != IMAGE_ENTRYPOINT:
        problems.append(f"the ENTRYPOINT is not {json.dumps(IMAGE_ENTRYPOINT)} (exec form)")
    for ins in final:
        if ins.instruction == "RUN" and re.search(
            r"(apt-get|apt|apk|yum|dnf) .*install", ins.arguments
        ):
            words = set(ins.arguments.split())
            for compiler in COMPILERS:
                if compiler in words:
                    problems.append(f"the final stage installs {compiler}")
        if ins.instruction == "COPY" and "--from=" in ins.arguments:
            sources = [w for w in ins.arguments.split() if not w.startswith("--")][:-1]
            if sources != ["/opt/runstream"]:
                problems.append(
                    f"the final stage copies {sources} from a build stage, not "
                    "only the finished environment"
                )
    return problems


def dockerignore_allows(path: str, ignore_text: str) -> bool:
    """Whether a build-context path survives the ignore file (patterns, ``!`` exceptions and
    ``**``; a path is out when it or a folder above it matches, and the last match wins)."""
    parts = path.strip("/").split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    allowed = True
    for line in ignore_text.splitlines():
        pattern = line.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/")
        regex = ""
        for token in re.split(r"(\*\*/|\*|\?)", pattern):
            regex += {"**/": "(?:.*/)?", "*": "[^/]*", "?": "[^/]"}.get(token, re.escape(token))
        if any(re.fullmatch(regex, prefix) for prefix in prefixes):
            allowed = negate
    return allowed
