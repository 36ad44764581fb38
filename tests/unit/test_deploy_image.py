"""The Dockerfile, read without Docker: a non-root user, a health check, labels, runstream as
the entrypoint, no compilers in the final stage, a build context that holds what it copies;
and the image's health-check script against a real consumer health server."""

from __future__ import annotations

import tomllib

import pytest
from prometheus_client import CollectorRegistry

from runstream.consumers.health import HealthServer
from tests.deployment.codebase import tiled_config_problems, tiled_status
from tests.deployment.image import check_dockerfile, dockerignore_allows
from tests.deployment.render import (
    DOCKERFILE,
    DOCKERIGNORE,
    K8S,
    ROOT,
    final_stage,
    load_healthcheck,
    parse_dockerfile,
)
from tests.kafka_tools import free_port

DOCKERFILE_TEXT = DOCKERFILE.read_text()


def test_dockerfile_passes() -> None:
    assert check_dockerfile(DOCKERFILE_TEXT) == []


def test_build_stages_install_and_image_stages_only_copy_the_environment() -> None:
    stages = {s[0].arguments.split()[-1]: s for s in parse_dockerfile(DOCKERFILE_TEXT)}
    assert list(stages) == ["build", "build-tiled", "tiled", "runtime"]
    # pip from a tool environment installs into /opt/runstream, which never has pip itself
    pip = "/opt/pip-tool/bin/pip --python /opt/runstream/bin/python install"
    for build, count in (("build", 2), ("build-tiled", 1)):
        assert sum(pip in i.arguments for i in stages[build]) == count
    assert "python -m venv --without-pip /opt/runstream" in stages["build"][2].arguments
    for image in ("tiled", "runtime"):
        runs = " ".join(i.arguments for i in stages[image] if i.instruction == "RUN")
        assert "pip" not in runs.replace("/usr/share/python-wheels", "").replace("pip*", "")
        assert "rm -rf /usr/share/python-wheels" in runs  # the base's pip goes too
        (source,) = [i.arguments for i in stages[image] if "--from=" in i.arguments]
        assert source.endswith("/opt/runstream /opt/runstream")


def test_the_build_ca_is_a_secret_mount_of_every_download() -> None:
    for stage in parse_dockerfile(DOCKERFILE_TEXT):
        for ins in stage:
            if ins.instruction == "RUN" and "pip " in ins.arguments and "install" in ins.arguments:
                assert ins.arguments.startswith(
                    "--mount=type=secret,id=build-ca,target=/run/build-ca.pem"
                ), ins.arguments
                assert "PIP_CERT=/run/build-ca.pem" in ins.arguments
    assert "build-ca.pem" not in " ".join(i.arguments for i in final_stage())


def test_the_build_context_holds_every_file_the_image_copies() -> None:
    ignore = DOCKERIGNORE.read_text()
    copied = []
    for stage in parse_dockerfile(DOCKERFILE_TEXT):
        for ins in stage:
            if ins.instruction == "COPY" and "--from=" not in ins.arguments:
                copied += ins.arguments.split()[:-1]
    assert copied
    for source in copied:
        assert (ROOT / source).exists(), source
        assert dockerignore_allows(source, ignore), source
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = set(project["tool"]["setuptools"]["package-dir"].values())
    assert packages | {project["project"]["readme"], "pyproject.toml"} <= set(copied)


def test_the_build_context_leaves_out_the_rest() -> None:
    ignore = DOCKERIGNORE.read_text()
    for path in (
        ".venv/bin/python",
        ".git/config",
        "tests/conftest.py",
        "consumers/__pycache__/cli.cpython-311.pyc",
        "deploy/k8s/base/engine.yaml",
    ):
        assert not dockerignore_allows(path, ignore), path
    assert dockerignore_allows("deploy/docker/healthcheck.py", ignore)


def test_the_health_check_runs_the_copied_script() -> None:
    final = final_stage()
    health = next(i for i in final if i.instruction == "HEALTHCHECK")
    script = health.arguments.split("CMD", 1)[1]
    copies = [i.arguments.split() for i in final if i.instruction == "COPY"]
    assert ["deploy/docker/healthcheck.py", "/usr/local/lib/runstream/healthcheck.py"] in copies
    assert "/usr/local/lib/runstream/healthcheck.py" in script


BROKEN = [
    ("USER 10001:10001", "USER root", "runs as root"),
    ("USER 10001:10001", "", "runs as root"),
    ('ENTRYPOINT ["runstream"]', "ENTRYPOINT runstream", "the ENTRYPOINT is not"),
    ("HEALTHCHECK --interval", "# HEALTHCHECK --interval", "no HEALTHCHECK"),
    (
        'org.opencontainers.image.licenses="BSD-3-Clause"',
        "",
        "no org.opencontainers.image.licenses",
    ),
    (
        "COPY --from=build /opt/runstream /opt/runstream",
        "RUN apt-get install -y gcc\nCOPY --from=build /opt/runstream /opt/runstream",
        "installs gcc",
    ),
    (
        "COPY --from=build /opt/runstream /opt/runstream",
        "COPY --from=build /src /src\nCOPY --from=build /opt/runstream /opt/runstream",
        "copies ['/src'] from a build stage",
    ),
]


@pytest.mark.parametrize("old,new,expected", BROKEN)
def test_checks_report_a_broken_dockerfile(old: str, new: str, expected: str) -> None:
    assert old in DOCKERFILE_TEXT
    problems = check_dockerfile(DOCKERFILE_TEXT.replace(old, new))
    assert any(expected in p for p in problems), problems


# -- the health-check script ----------------------------------------------------------------

HC = load_healthcheck()


@pytest.mark.parametrize(
    "argv,env,url",
    [
        (
            ["/opt/runstream/bin/python", "/opt/runstream/bin/runstream", "engine"],
            {},
            "http://127.0.0.1:8600/healthz",
        ),
        (
            ["runstream", "engine", "--port", "8700"],
            {"RUNSTREAM_ENGINE_PORT": "8800"},
            "http://127.0.0.1:8700/healthz",
        ),
        (
            ["runstream", "-v", "engine"],
            {"RUNSTREAM_ENGINE_PORT": "8800"},
            "http://127.0.0.1:8800/healthz",
        ),
        (
            ["runstream", "consume", "table", "--out", "/x"],
            {"RUNSTREAM_HTTP_PORT": "9400"},
            "http://127.0.0.1:9400/healthz",
        ),
        (
            ["runstream", "consume", "plot", "--out", "/x", "--http-port=9500"],
            {},
            "http://127.0.0.1:9500/healthz",
        ),
        (
            ["python", "/opt/runstream/bin/tiled", "serve", "config", "c.yml"],
            {},
            "http://127.0.0.1:8000/healthz",
        ),
        (["runstream", "submit", "count"], {}, None),
        (
            ["runstream", "engine"],
            {"HEALTHCHECK_URL": "http://127.0.0.1:1/x"},
            "http://127.0.0.1:1/x",
        ),
    ],
)
def test_health_url_follows_the_command(argv: list[str], env: dict, url: str | None) -> None:
    assert HC.health_url(argv, env) == url


def test_a_consumer_without_health_server_is_unhealthy() -> None:
    with pytest.raises(ValueError, match="RUNSTREAM_HTTP_PORT"):
        HC.health_url(["runstream", "consume", "table", "--out", "/x"], {})


def test_check_against_a_real_consumer_health_server() -> None:
    alive = {"ok": True}
    server = HealthServer("127.0.0.1", 0, CollectorRegistry(), lambda: alive["ok"], lambda: True)
    try:
        url = HC.health_url(
            ["runstream", "consume", "table"], {"RUNSTREAM_HTTP_PORT": str(server.port)}
        )
        assert HC.check(url) is True
        alive["ok"] = False  # the poll loop stalled: 503
        assert HC.check(url) is False
    finally:
        server.close()
    assert HC.check(f"http://127.0.0.1:{free_port()}/healthz", timeout=1) is False


def test_tiled_configuration_parses_with_tiled() -> None:
    text = (K8S / "base" / "tiled" / "config.yml").read_text()
    assert tiled_config_problems(text) == []
    assert tiled_status(text, "/healthz") == 200
    assert tiled_status(text, "/api/v1/metrics") == 401  # the API key is needed
