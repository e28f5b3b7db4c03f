"""Where the MQTT broker and Redis are, and how to reach them safely.

:class:`MqttEndpoint` is ``TWIN_MQTT_URL`` with its credentials and TLS files
(:mod:`common.settings` builds it); the Redis helpers put a password into a URL,
take it out for logs, and give the TLS options of ``rediss://``.
"""

from __future__ import annotations

import re
import ssl
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from .errors import SettingsError

__all__ = ["MqttEndpoint", "redis_ssl_options", "redact", "with_password", "without_password",
           "DEFAULT_MQTT_URL", "DEFAULT_REDIS_URL"]

DEFAULT_MQTT_URL = "mqtt://127.0.0.1:1883"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


@dataclass(frozen=True)
class MqttEndpoint:
    """Where and how to reach the MQTT broker (parsed from ``TWIN_MQTT_URL``)."""

    host: str
    port: int
    tls: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_file: str | None = None
    """PEM file of the CA(s) that signed the broker's certificate; None: the system's CAs"""
    cert_file: str | None = None
    """our client certificate (PEM), for a broker that asks for one"""
    key_file: str | None = None
    """its private key (PEM, not encrypted); None: in ``cert_file``"""
    tls_insecure: bool = False
    """no check of the broker's certificate and host name: tests and labs only"""
    password_file: str | None = None
    """the file ``password`` was read from (child processes get the file, not the secret)"""

    @classmethod
    def parse(cls, url: str) -> MqttEndpoint:
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts"):
            raise SettingsError(
                f"TWIN_MQTT_URL={redact(url)!s}: scheme must be mqtt:// or mqtts://, "
                f"e.g. {DEFAULT_MQTT_URL}"
            )
        if not parts.hostname:
            raise SettingsError(f"TWIN_MQTT_URL={redact(url)}: no host, e.g. {DEFAULT_MQTT_URL}")
        try:
            port = parts.port
        except ValueError:
            raise SettingsError(
                f"TWIN_MQTT_URL={redact(url)}: the port must be a number 1-65535"
            ) from None
        tls = parts.scheme == "mqtts"
        return cls(
            host=parts.hostname,
            port=port or (8883 if tls else 1883),
            tls=tls,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
        )

    @property
    def url(self) -> str:
        """The URL without credentials, safe to log."""
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"

    def tls_context(self) -> ssl.SSLContext:
        """The client TLS context of ``mqtts://``: TLS 1.2 or newer; the broker's certificate
        checked against ``ca_file`` (else the system's CAs) and against the host name; our
        client certificate if there is one. A file that cannot be used raises
        :class:`SettingsError` (one line)."""
        try:
            ctx = ssl.create_default_context(cafile=self.ca_file)
        except (ssl.SSLError, OSError) as exc:
            raise SettingsError(f"TWIN_MQTT_CA_FILE={self.ca_file}: not a usable PEM CA file "
                                f"({_why(exc)})") from None
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        if self.cert_file:
            try:
                ctx.load_cert_chain(self.cert_file, self.key_file, password=_no_key_password)
            except (ssl.SSLError, OSError) as exc:
                raise SettingsError(
                    f"TWIN_MQTT_CERT_FILE={self.cert_file}, TWIN_MQTT_KEY_FILE="
                    f"{self.key_file or '(none: the key in the certificate file)'}: not a usable "
                    f"PEM certificate and unencrypted key that belong together ({_why(exc)})"
                ) from None
        if self.tls_insecure:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return ctx




def _no_key_password() -> bytes:
    """Called only for an encrypted private key (instead of a prompt on the terminal)."""
    raise ssl.SSLError("the private key is encrypted: give an unencrypted one")


def _why(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return str(exc.reason).lower().replace("_", " ")
    return getattr(exc, "strerror", None) or str(exc)


def without_password(url: str) -> str:
    return re.sub(r"(//[^:/@]*):[^@/]*@", r"\1@", url).replace("//@", "//")


def with_password(url: str, password: str) -> str:
    """``url`` with ``password`` in it (after the user name, if there is one)."""
    scheme, rest = url.split("://", 1)
    user, at, host = rest.partition("@")
    if not at:
        user, host = "", rest
    return f"{scheme}://{user}:{quote(password, safe='')}@{host}"


def redis_ssl_options(url: str, ca_file: str | None) -> dict[str, Any] | None:
    """For a ``rediss://`` URL: certificate and host name checked (TLS 1.2 or newer is
    Python's default), the CA file if given; as redis-py's ``ssl_*`` keyword arguments,
    which are also the keys of Celery's ``broker_use_ssl`` and ``redis_backend_use_ssl``.
    None for ``redis://`` and ``unix://``."""
    if urlsplit(url).scheme != "rediss":
        return None
    options: dict[str, Any] = {"ssl_cert_reqs": ssl.CERT_REQUIRED, "ssl_check_hostname": True}
    if ca_file:
        options["ssl_ca_certs"] = ca_file
    return options




def redact(url: str) -> str:
    return re.sub(r"(//[^:/@]*:)[^@/]*@", r"\1***@", url)


