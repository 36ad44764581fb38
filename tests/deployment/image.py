"""The container image as its Dockerfile builds it, so the image is checked without Docker:
what runs in it, as whom, with which directories, from which build context."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.deployment.render import DOCKERFILE, Instruction, parse_dockerfile

#: The services' image's name (any registry, any tag) and its ENTRYPOINT.
IMAGE_NAME = "runstream"
IMAGE_ENTRYPOINT = ["runstream"]
#: The Tiled server's image, the Dockerfile's target `tiled`.
TILED_IMAGE_NAME = "runstream-tiled"
#: Every image the Dockerfile builds: its name, its stage (target), its ENTRYPOINT.
IMAGES: dict[str, tuple[str, list[str]]] = {
    IMAGE_NAME: ("runtime", IMAGE_ENTRYPOINT),
    TILED_IMAGE_NAME: ("tiled", ["tiled"]),
}

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


def is_ours(image: str) -> bool:
    """Whether the Dockerfile builds this image."""
    return image_name(image) in IMAGES


def image_entrypoint(image: str) -> list[str]:
    """The ENTRYPOINT of an image the Dockerfile builds; [] for any other image."""
    return IMAGES.get(image_name(image), ("", []))[1]


def named_stage(text: str, name: str) -> list[Instruction]:
    """The stage ``FROM ... AS name``; [] when there is none."""
    for stage in parse_dockerfile(text):
        words = stage[0].arguments.split()
        if len(words) == 3 and words[1].upper() == "AS" and words[2] == name:
            return stage
    return []


def image_stage(image: str, path: Path = DOCKERFILE) -> list[Instruction]:
    """The stage that makes this image (one of IMAGES)."""
    return named_stage(path.read_text(), IMAGES[image_name(image)][0])


def dockerfile_dirs(path: Path = DOCKERFILE, image: str = IMAGE_NAME) -> set[str]:
    """Directories the image's stage makes and gives to its user."""
    made: set[str] = set()
    owned: set[str] = set()
    final = image_stage(image, path)
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
    """Each image (the services' image, the default and last target, and Tiled's): a non-root
    user, a health check, OCI labels, its entrypoint, no compilers and nothing from a build
    stage but the finished environment."""
    stages = parse_dockerfile(text)
    if not stages:
        return ["no FROM"]
    problems = []
    if named_stage(text, IMAGES[IMAGE_NAME][0]) != stages[-1]:
        problems.append(f"the last stage is not {IMAGES[IMAGE_NAME][0]!r} (the default target)")
    for name, (stage_name, entrypoint) in IMAGES.items():
        stage = named_stage(text, stage_name)
        if not stage:
            problems.append(f"no stage {stage_name!r} for the image {name}")
            continue
        prefix = "" if name == IMAGE_NAME else f"{name}: "
        problems += [prefix + p for p in _check_stage(stage, entrypoint)]
    return problems


def _check_stage(final: list[Instruction], entrypoint: list[str]) -> list[str]:
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
    if not entry or entry[-1].json() != entrypoint:
        problems.append(f"the ENTRYPOINT is not {json.dumps(entrypoint)} (exec form)")
    for ins in final:
        if ins.instruction == "RUN" and re.search(r"\bpip3? install|-m pip\b", ins.arguments):
            problems.append("the final stage runs pip")
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
