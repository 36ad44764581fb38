"""TLS and SCRAM for the local broker: a private CA, a broker certificate, one SCRAM user.

Everything is made once per state directory with ``openssl`` and kept under
``<home>/kafka/tls`` and ``<home>/kafka/secrets``. The password is generated here,
written only to files of mode 0600 (the password file, the broker's config, the
client settings) and never printed or logged. The client settings are librdkafka's,
as JSON, for ``RUNSTREAM_KAFKA_CONFIG_FILE`` or ``KafkaPublisher(**settings)``.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from runstream.schemas.errors import RunstreamError

USERNAME = "runstream"
MECHANISM = "SCRAM-SHA-512"
#: The client listener's name in the broker's config (and its security protocol).
LISTENER = "SASL_SSL"
CERT_DAYS = 825


class SecurityError(RunstreamError, RuntimeError):
    """The TLS or SCRAM material could not be made."""


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to a file that only its owner can read, created with mode 0600."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)


@dataclass
class BrokerSecurity:
    """The TLS and SCRAM material of one local broker or cluster, under ``kafka_dir``."""

    kafka_dir: Path

    @property
    def tls(self) -> Path:
        return self.kafka_dir / "tls"

    @property
    def ca_cert(self) -> Path:
        return self.tls / "ca.pem"

    @property
    def keystore(self) -> Path:
        """The broker's private key and certificate chain, one PEM file (Kafka's PEM keystore)."""
        return self.tls / "broker-keystore.pem"

    @property
    def password_file(self) -> Path:
        return self.kafka_dir / "secrets" / "scram-password"

    @property
    def client_file(self) -> Path:
        return self.kafka_dir / "client.json"

    def password(self) -> str:
        """The SCRAM user's password, generated on first use."""
        if not self.password_file.exists():
            write_private(self.password_file, secrets.token_hex(24))
        return self.password_file.read_text().strip()

    def ensure(self) -> None:
        """Make the CA, the broker certificate, the password and client.json (once each)."""
        if not (self.ca_cert.exists() and self.keystore.exists()):
            self._make_certificates()
        self.password()
        self.write_client_settings()

    def client_settings(self) -> dict[str, str]:
        """librdkafka's settings for this broker's client listener."""
        return {
            "security.protocol": LISTENER,
            "sasl.mechanism": MECHANISM,
            "sasl.username": USERNAME,
            "sasl.password": self.password(),
            "ssl.ca.location": str(self.ca_cert),
        }

    def write_client_settings(self) -> Path:
        write_private(self.client_file, json.dumps(self.client_settings(), indent=2) + "\n")
        return self.client_file

    def scram_argument(self) -> str:
        """StorageTool's ``--add-scram`` value that creates the user at format time."""
        return f"{MECHANISM}=[name={USERNAME},password={self.password()}]"

    def broker_properties(self) -> dict[str, str]:
        """The client listener's TLS and SCRAM settings (its inter-broker use included)."""
        jaas = (
            "org.apache.kafka.common.security.scram.ScramLoginModule required "
            f'username="{USERNAME}" password="{self.password()}";'
        )
        return {
            "sasl.enabled.mechanisms": MECHANISM,
            "sasl.mechanism.inter.broker.protocol": MECHANISM,
            f"listener.name.{LISTENER.lower()}.{MECHANISM.lower()}.sasl.jaas.config": jaas,
            "ssl.keystore.type": "PEM",
            "ssl.keystore.location": str(self.keystore),
            "ssl.truststore.type": "PEM",
            "ssl.truststore.location": str(self.ca_cert),
            "ssl.client.auth": "none",
        }

    def _make_certificates(self) -> None:
        openssl = shutil.which("openssl")
        if openssl is None:
            raise SecurityError(
                "'openssl' is not on PATH; --secure makes the broker's certificates with it "
                "(Debian: apt-get install openssl)"
            )
        tls = self.tls
        tls.mkdir(parents=True, exist_ok=True)
        os.chmod(tls, 0o700)
        days = str(CERT_DAYS)
        ext = tls / "broker.ext"
        ext.write_text(
            "subjectAltName=DNS:localhost,IP:127.0.0.1\n"
            "extendedKeyUsage=serverAuth,clientAuth\n"
            "basicConstraints=critical,CA:FALSE\n"
        )
        steps = [
            [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", days,
             "-subj", "/CN=runstream local CA", "-keyout", "ca.key", "-out", "ca.pem",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
            [openssl, "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
             "-keyout", "broker.key", "-out", "broker.csr"],
            [openssl, "x509", "-req", "-in", "broker.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
             "-CAcreateserial", "-days", days, "-extfile", ext.name, "-out", "broker.crt"],
        ]  # fmt: skip
        old_umask = os.umask(0o077)
        try:
            for cmd in steps:
                result = subprocess.run(cmd, cwd=tls, capture_output=True, text=True, check=False)
                if result.returncode != 0:
                    raise SecurityError(
                        f"openssl failed making the broker's certificates: {result.stderr[-800:]}"
                    )
        finally:
            os.umask(old_umask)
        key = (tls / "broker.key").read_text()
        chain = (tls / "broker.crt").read_text() + self.ca_cert.read_text()
        write_private(self.keystore, key + chain)
        for leftover in ("broker.csr", "broker.key", "ca.srl", ext.name):
            (tls / leftover).unlink(missing_ok=True)
