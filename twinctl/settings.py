"""Settings of a twinctl deployment, read once from environment variables.

Every setting has a default that works on one machine. A wrong value raises
:class:`SettingsError` whose message is one line naming the variable, the value
and what would be right; the CLI prints that line and exits, never a traceback.

| variable | default | meaning |
|---|---|---|
| ``TWIN_CONTROLLER_ID`` | host name | this controller's unique id (``[A-Za-z0-9._-]``) |
| ``TWIN_GROUP`` | ``default`` | group of redundant controllers |
| ``TWIN_MQTT_URL`` | ``mqtt://127.0.0.1:1883`` | broker; ``mqtts://``: TLS; ``user:pw@``: auth |
| ``TWIN_MQTT_PREFIX`` | ``twin`` | first topic level |
| ``TWIN_MQTT_PROTOCOL`` | ``auto`` | ``5``, ``3.1.1`` or ``auto`` (MQTT 5, else 3.1.1) |
| ``TWIN_REDIS_URL`` | ``redis://127.0.0.1:6379/0`` | Celery broker, outbox, duplicate guard |
| ``TWIN_MAX_COMMAND_BYTES`` | ``1048576`` | larger commands get ``too_large`` |
| ``TWIN_MAX_RESULT_ROWS`` | ``10000`` | longer series are streamed as ``data`` |
| ``TWIN_INSTANCES`` | ``$XDG_DATA_HOME/twinctl/{cid}/instances`` | instance files (seeded) |
| ``TWIN_DUPLICATE_TTL`` | ``86400`` | seconds a request id is remembered |
| ``TWIN_OUTBOX_MAX`` | ``100000`` | replies kept for a broker outage (oldest data dropped) |
| ``TWIN_MAX_QUEUED`` | ``1000`` | jobs waiting above which ``run``/``call`` are refused |
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

__all__ = ["MqttEndpoint", "Settings", "SettingsError", "load_settings"]

NAME_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
PREFIX_RE = re.compile(r"^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$")
DEFAULT_MQTT_URL = "mqtt://127.0.0.1:1883"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


class SettingsError(ValueError):
    """A setting has a value that cannot work; the message is one line."""


@dataclass(frozen=True)
class MqttEndpoint:
    """Where and how to reach the MQTT broker (parsed from ``TWIN_MQTT_URL``)."""

    host: str
    port: int
    tls: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    @classmethod
    def parse(cls, url: str) -> MqttEndpoint:
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts"):
            raise SettingsError(
                f"TWIN_MQTT_URL={_redact(url)!s}: scheme must be mqtt:// or mqtts://, "
                f"e.g. {DEFAULT_MQTT_URL}"
            )
        if not parts.hostname:
            raise SettingsError(f"TWIN_MQTT_URL={_redact(url)}: no host, e.g. {DEFAULT_MQTT_URL}")
        try:
            port = parts.port
        except ValueError:
            raise SettingsError(
                f"TWIN_MQTT_URL={_redact(url)}: the port must be a number 1-65535"
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


@dataclass(frozen=True)
class Settings:
    """All settings of one controller; build it with :func:`load_settings`."""

    controller_id: str
    group: str
    mqtt: MqttEndpoint
    mqtt_prefix: str
    mqtt_protocol: str
    redis_url: str = field(repr=False)
    max_command_bytes: int
    max_result_rows: int
    instances_dir: Path
    duplicate_ttl: int
    outbox_max: int = 100_000
    max_queued: int = 1_000
    mqtt_configured: bool = False
    redis_configured: bool = False

    def topic(self, *levels: str) -> str:
        """``{prefix}/{cid}/<levels…>``."""
        return "/".join((self.mqtt_prefix, self.controller_id, *levels))

    @property
    def cmd_topic(self) -> str:
        return self.topic("cmd")

    @property
    def group_cmd_topic(self) -> str:
        return f"{self.mqtt_prefix}/group/{self.group}/cmd"

    def reply_topic(self, request_id: str) -> str:
        return self.topic("reply", request_id)

    @property
    def redis_url_safe(self) -> str:
        """The Redis URL without its password, safe to log."""
        return _redact(self.redis_url)

    def to_env(self) -> dict[str, str]:
        """The environment variables that reproduce these settings in a child process."""
        mqtt_url = _mqtt_url_with_credentials(self.mqtt)
        return {
            "TWIN_CONTROLLER_ID": self.controller_id,
            "TWIN_GROUP": self.group,
            "TWIN_MQTT_URL": mqtt_url,
            "TWIN_MQTT_PREFIX": self.mqtt_prefix,
            "TWIN_MQTT_PROTOCOL": self.mqtt_protocol,
            "TWIN_REDIS_URL": self.redis_url,
            "TWIN_MAX_COMMAND_BYTES": str(self.max_command_bytes),
            "TWIN_MAX_RESULT_ROWS": str(self.max_result_rows),
            "TWIN_INSTANCES": str(self.instances_dir),
            "TWIN_DUPLICATE_TTL": str(self.duplicate_ttl),
            "TWIN_OUTBOX_MAX": str(self.outbox_max),
            "TWIN_MAX_QUEUED": str(self.max_queued),
        }


def _mqtt_url_with_credentials(ep: MqttEndpoint) -> str:
    from urllib.parse import quote

    cred = ""
    if ep.username:
        cred = quote(ep.username, safe="")
        if ep.password:
            cred += ":" + quote(ep.password, safe="")
        cred += "@"
    return f"{'mqtts' if ep.tls else 'mqtt'}://{cred}{ep.host}:{ep.port}"


def _redact(url: str) -> str:
    return re.sub(r"(//[^:/@]*:)[^@/]*@", r"\1***@", url)


def _int(env: Mapping[str, str], name: str, default: int, lo: int, hi: int) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        raise SettingsError(f"{name}={raw!r}: must be a whole number, e.g. {default}") from None
    if not lo <= value <= hi:
        raise SettingsError(f"{name}={value}: must be between {lo} and {hi}")
    return value


def _name(env: Mapping[str, str], name: str, default: str) -> str:
    value = env.get(name, "").strip() or default
    if not NAME_RE.match(value):
        raise SettingsError(
            f"{name}={value!r}: use 1-64 characters of letters, digits, '.', '_' or '-'"
        )
    return value


def _default_controller_id() -> str:
    host = socket.gethostname().split(".")[0] or "controller"
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "-", host)[:64]
    return cleaned or "controller"


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read and check every setting; raise :class:`SettingsError` on the first bad one."""
    env = os.environ if env is None else env
    mqtt_url = env.get("TWIN_MQTT_URL", "").strip()
    redis_url = env.get("TWIN_REDIS_URL", "").strip()
    mqtt = MqttEndpoint.parse(mqtt_url or DEFAULT_MQTT_URL)
    redis_effective = redis_url or DEFAULT_REDIS_URL
    scheme = urlsplit(redis_effective).scheme
    if scheme not in ("redis", "rediss", "unix"):
        raise SettingsError(
            f"TWIN_REDIS_URL={_redact(redis_effective)}: scheme must be redis://, rediss:// "
            f"or unix://, e.g. {DEFAULT_REDIS_URL}"
        )
    prefix = env.get("TWIN_MQTT_PREFIX", "").strip() or "twin"
    if not PREFIX_RE.match(prefix) or len(prefix) > 128:
        raise SettingsError(
            f"TWIN_MQTT_PREFIX={prefix!r}: use topic levels of letters, digits, '.', '_', '-' "
            "separated by '/', without wildcards, e.g. 'twin' or 'plant1/twin'"
        )
    protocol = env.get("TWIN_MQTT_PROTOCOL", "").strip() or "auto"
    if protocol not in ("auto", "5", "3.1.1"):
        raise SettingsError(f"TWIN_MQTT_PROTOCOL={protocol!r}: must be 'auto', '5' or '3.1.1'")
    controller_id = _name(env, "TWIN_CONTROLLER_ID", _default_controller_id())
    instances_raw = env.get("TWIN_INSTANCES", "").strip()
    if instances_raw:
        instances_dir = Path(instances_raw).expanduser()
        if instances_dir.exists() and not instances_dir.is_dir():
            raise SettingsError(f"TWIN_INSTANCES={instances_raw!r}: not a folder")
    else:
        data_home = env.get("XDG_DATA_HOME", "").strip() or str(
            Path(env.get("HOME", "") or Path.home()) / ".local" / "share")
        instances_dir = Path(data_home) / "twinctl" / controller_id / "instances"
    return Settings(
        controller_id=controller_id,
        group=_name(env, "TWIN_GROUP", "default"),
        mqtt=mqtt,
        mqtt_prefix=prefix,
        mqtt_protocol=protocol,
        redis_url=redis_effective,
        max_command_bytes=_int(env, "TWIN_MAX_COMMAND_BYTES", 1 << 20, 64, 256 << 20),
        max_result_rows=_int(env, "TWIN_MAX_RESULT_ROWS", 10_000, 1, 10_000_000),
        instances_dir=instances_dir,
        duplicate_ttl=_int(env, "TWIN_DUPLICATE_TTL", 86_400, 1, 30 * 86_400),
        outbox_max=_int(env, "TWIN_OUTBOX_MAX", 100_000, 100, 100_000_000),
        max_queued=_int(env, "TWIN_MAX_QUEUED", 1_000, 1, 100_000_000),
        mqtt_configured=bool(mqtt_url),
        redis_configured=bool(redis_url),
    )
