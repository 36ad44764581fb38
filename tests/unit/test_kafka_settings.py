"""One Kafka settings model: the variables it reads, the config file, replication defaults."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from runstream.consumers.settings import ConsumerSettings
from runstream.kafka import (
    KafkaConfigError,
    KafkaSettings,
    Replication,
    admin_config,
    read_config_file,
)
from runstream.producer import KafkaPublisher, PublisherConfigError
from runstream.producer.engine.settings import EngineSettings


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch):
    def set_env(**values: str) -> None:
        for name, value in values.items():
            monkeypatch.setenv(name, value)

    return set_env


def test_the_documented_variables_reach_every_service(env, tmp_path: Path) -> None:
    conf = tmp_path / "kafka.json"
    conf.write_text(json.dumps({"security.protocol": "SASL_SSL", "sasl.mechanism": "PLAIN"}))
    env(RUNSTREAM_KAFKA_BOOTSTRAP="a:1,b:2", RUNSTREAM_KAFKA_CONFIG_FILE=str(conf),
        RUNSTREAM_KAFKA_SASL_MECHANISM="SCRAM-SHA-512", RUNSTREAM_REPLICATION_FACTOR="3",
        RUNSTREAM_MIN_INSYNC_REPLICAS="2", RUNSTREAM_HOME=str(tmp_path))  # fmt: skip
    for kafka in (ConsumerSettings().kafka, EngineSettings().publisher.kafka):
        assert kafka.client_config() == {
            "bootstrap.servers": "a:1,b:2",
            "security.protocol": "SASL_SSL",
            "sasl.mechanism": "SCRAM-SHA-512",  # the variable wins over the file
        }
        assert kafka.replication.wanted() == Replication(3, 2)
    assert EngineSettings().publisher.outbox_dir == tmp_path / "engine" / "outbox"


def test_a_password_stays_out_of_reprs(env) -> None:
    env(RUNSTREAM_KAFKA_SASL_PASSWORD="hunter2")  # noqa: S106 (a test value)
    settings = KafkaSettings()
    assert "hunter2" not in repr(settings) and "hunter2" not in str(ConsumerSettings())
    assert settings.client_config()["sasl.password"] == "hunter2"


@pytest.mark.parametrize(
    "text,match",
    [
        ("{not json", "cannot read the Kafka config file"),
        ("[1, 2]", "must hold a JSON object"),
        ('{"sasl.jaas": {"nested": 1}}', "sasl.jaas is a dict"),
    ],
)
def test_a_bad_config_file_is_one_clear_error(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "kafka.json"
    path.write_text(text)
    with pytest.raises(KafkaConfigError, match=match):
        read_config_file(path)
    with pytest.raises(KafkaConfigError, match=match):
        KafkaSettings(config_file=path).client_config()


def test_a_missing_config_file_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(KafkaConfigError, match="cannot read the Kafka config file"):
        read_config_file(tmp_path / "absent.json")


@pytest.mark.parametrize(
    "brokers,wanted,expected",
    [
        (1, Replication(), (1, 1)),
        (2, Replication(), (2, 1)),
        (3, Replication(), (3, 2)),
        (5, Replication(), (3, 2)),
        (5, Replication(5), (5, 4)),
        (3, Replication(3, 3), (3, 3)),
        (3, Replication(None, 1), (3, 1)),
    ],
)
def test_replication_defaults(brokers: int, wanted: Replication, expected) -> None:
    assert wanted.resolve(brokers) == expected


def test_impossible_replication_is_refused(env, tmp_path: Path) -> None:
    with pytest.raises(KafkaConfigError, match="exceeds the replication factor"):
        Replication(2, 3)
    with pytest.raises(PublisherConfigError, match="at least 1"):
        KafkaPublisher("t", "127.0.0.1:1", tmp_path, replication_factor=0)
    env(RUNSTREAM_REPLICATION_FACTOR="1", RUNSTREAM_MIN_INSYNC_REPLICAS="2")
    with pytest.raises(ValidationError, match="exceeds the replication factor"):
        ConsumerSettings()


def test_admin_clients_get_only_what_they_take() -> None:
    logger = object()
    conf = {"bootstrap.servers": "x", "sasl.username": "u", "ssl.ca.location": "/ca",
            "security.protocol": "SSL", "linger.ms": 5, "group.id": "g",
            "logger": logger}  # fmt: skip
    assert admin_config(conf) == {"bootstrap.servers": "x", "sasl.username": "u",
                                  "ssl.ca.location": "/ca", "security.protocol": "SSL",
                                  "logger": logger}  # fmt: skip


@pytest.mark.parametrize("setting", [{"acks": "1"}, {"enable.idempotence": False}])
def test_the_publisher_keeps_acks_all_and_idempotence(tmp_path: Path, setting: dict) -> None:
    with pytest.raises(PublisherConfigError, match="breaks delivery"):
        KafkaPublisher("t", "127.0.0.1:1", tmp_path, **setting)
