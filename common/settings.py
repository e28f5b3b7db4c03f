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
| ``TWIN_MQTT_CA_FILE`` | the system's CAs | PEM CA file that signed the broker's certificate |
| ``TWIN_MQTT_CERT_FILE``, ``TWIN_MQTT_KEY_FILE`` | none | client certificate and key (PEM) |
| ``TWIN_MQTT_TLS_INSECURE`` | ``0`` | ``1``: no certificate checks (tests and labs only) |
| ``TWIN_MQTT_USERNAME`` | from the URL | MQTT user (instead of ``user@`` in the URL) |
| ``TWIN_MQTT_PASSWORD`` | from the URL | MQTT password (instead of ``:pw@`` in the URL) |
| ``TWIN_MQTT_PASSWORD_FILE`` | none | file holding the MQTT password (a Docker/Kubernetes secret) |
| ``TWIN_REDIS_URL`` | ``redis://127.0.0.1:6379/0`` | Celery broker, outbox, duplicate guard |
| ``TWIN_REDIS_PASSWORD_FILE`` | none | file holding the Redis password |
| ``TWIN_REDIS_CA_FILE`` | the system's CAs | PEM CA file for ``rediss://`` |
| ``TWIN_MAX_COMMAND_BYTES`` | ``1048576`` | larger commands get ``too_large`` |
| ``TWIN_MAX_RESULT_ROWS`` | ``10000`` | longer series are streamed as ``data`` |
| ``TWIN_INSTANCES`` | ``$XDG_DATA_HOME/twinctl/{cid}/instances`` | instance files (seeded) |
| ``TWIN_DUPLICATE_TTL`` | ``86400`` | seconds a request id is remembered |
| ``TWIN_OUTBOX_MAX`` | ``100000`` | replies kept for a broker outage (oldest data dropped) |
| ``TWIN_MAX_QUEUED`` | ``1000`` | jobs waiting above which ``run``/``call`` are refused |
| ``TWIN_ALLOW_COMMANDS`` / ``_MODELS`` / ``_FUNCTIONS`` / ``_MODES`` | all | the policy |
| ``TWIN_MAX_ELEMENTS`` / ``_STEPS`` / ``_SERIES`` | 500 / 1e7 / 1e6 | limits of one command |
| ``TWIN_MAX_JOBS_PER_CLIENT`` | ``0`` (none) | jobs one orchestrator may have queued or running |
| ``TWIN_SOFT_TIME_LIMIT`` | ``600`` | seconds a job may run (``timeout``); killed 30 s later |
| ``TWIN_COMMAND_SECRET`` / ``_FILE`` | none | commands must be signed (HMAC-SHA256) |
| ``TWIN_SIGNATURE_MAX_AGE`` | ``300`` | seconds a signed command's ``ts`` may be off |
"""

from __future__ import annotations

import os
import re
import socket
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

__all__ = ["MqttEndpoint", "Settings", "SettingsError", "load_settings", "redis_connection",
           "redis_ssl_options"]

NAME_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}\Z")
PREFIX_RE = re.compile(r"^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*\Z")
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
    # deployment policy (None: everything allowed) and limits; see ingress/policy.py
    allow_commands: tuple[str, ...] | None = None
    allow_models: tuple[str, ...] | None = None
    allow_functions: tuple[str, ...] | None = None
    allow_modes: tuple[str, ...] | None = None
    max_elements: int = 500
    max_steps: int = 10_000_000
    max_series: int = 1_000_000
    max_jobs_per_client: int = 0
    soft_time_limit: int = 600
    # signed commands (ingress/signing.py): on when a secret is set
    command_secret: bytes | None = field(default=None, repr=False)
    command_secret_file: str | None = None
    signature_max_age: int = 300
    redis_ca_file: str | None = None
    """PEM CA file for ``rediss://`` (added to the system's CAs)"""
    redis_password_file: str | None = None
    """the file the Redis password in ``redis_url`` was read from"""
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

    @property
    def redis_ssl(self) -> dict[str, Any] | None:
        """For ``rediss://``: the TLS options (Celery's ``broker_use_ssl`` and
        ``redis_backend_use_ssl``, and redis-py's keyword arguments); None otherwise."""
        return redis_ssl_options(self.redis_url, self.redis_ca_file)

    @property
    def redis_options(self) -> dict[str, Any]:
        """Keyword arguments for ``redis.Redis.from_url(settings.redis_url, ...)``."""
        return dict(self.redis_ssl or {})

    def to_env(self) -> dict[str, str]:
        """The environment variables that reproduce these settings in a child process."""
        return {
            "TWIN_CONTROLLER_ID": self.controller_id,
            "TWIN_GROUP": self.group,
            "TWIN_MQTT_URL": self.mqtt.url,
            **_mqtt_env(self.mqtt),
            "TWIN_MQTT_PREFIX": self.mqtt_prefix,
            "TWIN_MQTT_PROTOCOL": self.mqtt_protocol,
            # a password from a file goes on as the file's name, not as the secret
            "TWIN_REDIS_URL": (_without_password(self.redis_url) if self.redis_password_file
                               else self.redis_url),
            "TWIN_REDIS_PASSWORD_FILE": self.redis_password_file or "",
            "TWIN_REDIS_CA_FILE": self.redis_ca_file or "",
            "TWIN_MAX_COMMAND_BYTES": str(self.max_command_bytes),
            "TWIN_MAX_RESULT_ROWS": str(self.max_result_rows),
            "TWIN_INSTANCES": str(self.instances_dir),
            "TWIN_DUPLICATE_TTL": str(self.duplicate_ttl),
            "TWIN_OUTBOX_MAX": str(self.outbox_max),
            "TWIN_MAX_QUEUED": str(self.max_queued),
            **_policy_env(self),
        }


_ALLOW = {"TWIN_ALLOW_COMMANDS": ("allow_commands", "command"),
          "TWIN_ALLOW_MODELS": ("allow_models", "model"),
          "TWIN_ALLOW_FUNCTIONS": ("allow_functions", "function"),
          "TWIN_ALLOW_MODES": ("allow_modes", "mode")}


def _allowed(env: Mapping[str, str], name: str, kind: str) -> tuple[str, ...] | None:
    """A comma-separated list of names; unset or blank: None (all). Whether each name
    exists is checked by the ingress's policy (:meth:`ingress.policy.Policy.from_settings`),
    which knows the commands, models, functions and modes."""
    raw = env.get(name, "").strip()
    if not raw:
        return None
    names = tuple(dict.fromkeys(n.strip() for n in raw.split(",") if n.strip()))
    if not names:
        raise SettingsError(f"{name}={raw!r}: give {kind} names separated by commas")
    return names


def _policy(env: Mapping[str, str]) -> dict[str, Any]:
    """The deployment policy, limits and command signing (TWIN_ALLOW_*, TWIN_MAX_*, …)."""
    out: dict[str, Any] = {attr: _allowed(env, name, kind)
                           for name, (attr, kind) in _ALLOW.items()}
    out.update(
        max_elements=_int(env, "TWIN_MAX_ELEMENTS", 500, 1, 1_000_000),
        max_steps=_int(env, "TWIN_MAX_STEPS", 10_000_000, 1, 10**12),
        max_series=_int(env, "TWIN_MAX_SERIES", 1_000_000, 1, 10**9),
        max_jobs_per_client=_int(env, "TWIN_MAX_JOBS_PER_CLIENT", 0, 0, 1_000_000),
        soft_time_limit=_int(env, "TWIN_SOFT_TIME_LIMIT", 600, 1, 30 * 86_400),
        signature_max_age=_int(env, "TWIN_SIGNATURE_MAX_AGE", 300, 1, 86_400),
    )
    secret, path = env.get("TWIN_COMMAND_SECRET", ""), env.get("TWIN_COMMAND_SECRET_FILE", "")
    if secret.strip() and path.strip():
        raise SettingsError("TWIN_COMMAND_SECRET and TWIN_COMMAND_SECRET_FILE are both set: "
                            "set one of them")
    if path.strip():
        try:
            secret = Path(path.strip()).expanduser().read_text("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise SettingsError(f"TWIN_COMMAND_SECRET_FILE={path.strip()!r}: cannot be read "
                                f"({getattr(exc, 'strerror', None) or exc})") from None
        out["command_secret_file"] = path.strip()
    if secret.strip() or path.strip():
        which = "TWIN_COMMAND_SECRET_FILE" if path.strip() else "TWIN_COMMAND_SECRET"
        if len(secret.strip()) < 16:
            raise SettingsError(f"{which}: the secret must have at least 16 characters, "
                                "e.g. from `openssl rand -hex 32`")
        out["command_secret"] = secret.strip().encode("utf-8")
        ttl = _int(env, "TWIN_DUPLICATE_TTL", 86_400, 1, 30 * 86_400)
        if out["signature_max_age"] > ttl:
            raise SettingsError(
                f"TWIN_SIGNATURE_MAX_AGE={out['signature_max_age']}: must not exceed "
                f"TWIN_DUPLICATE_TTL ({ttl} s), which keeps a replayed command out")
    return out


def _policy_env(s: Settings) -> dict[str, str]:
    env = {name: ",".join(getattr(s, attr)) for name, (attr, _) in _ALLOW.items()
           if getattr(s, attr) is not None}
    env.update({
        "TWIN_MAX_ELEMENTS": str(s.max_elements), "TWIN_MAX_STEPS": str(s.max_steps),
        "TWIN_MAX_SERIES": str(s.max_series),
        "TWIN_MAX_JOBS_PER_CLIENT": str(s.max_jobs_per_client),
        "TWIN_SOFT_TIME_LIMIT": str(s.soft_time_limit),
        "TWIN_SIGNATURE_MAX_AGE": str(s.signature_max_age),
    })
    if s.command_secret_file:
        env["TWIN_COMMAND_SECRET_FILE"] = s.command_secret_file
    elif s.command_secret is not None:
        env["TWIN_COMMAND_SECRET"] = s.command_secret.decode("utf-8")
    return env


def _mqtt_env(ep: MqttEndpoint) -> dict[str, str]:
    """The TLS and credential variables of ``ep`` (the URL itself goes without credentials);
    every one is set, empty when unused, so that merging them into an environment that
    has others (e.g. a password in the URL) cannot give a password twice."""
    from_file = ep.password_file is not None
    return {
        "TWIN_MQTT_USERNAME": ep.username or "",
        "TWIN_MQTT_PASSWORD": "" if from_file else ep.password or "",
        "TWIN_MQTT_PASSWORD_FILE": ep.password_file or "",
        "TWIN_MQTT_CA_FILE": ep.ca_file or "",
        "TWIN_MQTT_CERT_FILE": ep.cert_file or "",
        "TWIN_MQTT_KEY_FILE": ep.key_file or "",
        "TWIN_MQTT_TLS_INSECURE": "1" if ep.tls_insecure else "",
    }


def _no_key_password() -> bytes:
    """Called only for an encrypted private key (instead of a prompt on the terminal)."""
    raise ssl.SSLError("the private key is encrypted: give an unencrypted one")


def _why(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return str(exc.reason).lower().replace("_", " ")
    return getattr(exc, "strerror", None) or str(exc)


def _without_password(url: str) -> str:
    return re.sub(r"(//[^:/@]*):[^@/]*@", r"\1@", url).replace("//@", "//")


def _with_password(url: str, password: str) -> str:
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


def _file(env: Mapping[str, str], name: str) -> str | None:
    """A file named by ``name`` that must exist and be readable; unset or blank: None."""
    raw = env.get(name, "").strip()
    if not raw:
        return None
    path = Path(raw).expanduser()
    if not path.is_file():
        raise SettingsError(f"{name}={raw}: no such file")
    if not os.access(path, os.R_OK):
        raise SettingsError(f"{name}={raw}: cannot be read (permissions)")
    return str(path)


def _secret_file(env: Mapping[str, str], name: str) -> tuple[str | None, str | None]:
    """(file, its content without the final line break) of a password file, or (None, None)."""
    path = _file(env, name)
    if path is None:
        return None, None
    try:
        secret = Path(path).read_text("utf-8").rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingsError(f"{name}={path}: cannot be read ({_why(exc)})") from None
    if not secret:
        raise SettingsError(f"{name}={path}: the file is empty")
    return path, secret


def _flag(env: Mapping[str, str], name: str) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw in ("", "0", "false", "no", "off"):
        return False
    if raw in ("1", "true", "yes", "on"):
        return True
    raise SettingsError(f"{name}={raw!r}: must be 1 or 0")


def _mqtt_endpoint(env: Mapping[str, str], url: str) -> MqttEndpoint:
    """``TWIN_MQTT_URL`` with the TLS files and credentials of the other TWIN_MQTT_* variables."""
    ep = MqttEndpoint.parse(url)
    user = env.get("TWIN_MQTT_USERNAME", "").strip() or None
    if user and ep.username and user != ep.username:
        raise SettingsError(f"TWIN_MQTT_USERNAME={user!r} and the user {ep.username!r} in "
                            "TWIN_MQTT_URL differ: give the user name once")
    env_password = env.get("TWIN_MQTT_PASSWORD", "").rstrip("\r\n") or None
    password_file, file_password = _secret_file(env, "TWIN_MQTT_PASSWORD_FILE")
    given = [what for what, value in (("TWIN_MQTT_URL (user:password@)", ep.password),
                                      ("TWIN_MQTT_PASSWORD", env_password),
                                      ("TWIN_MQTT_PASSWORD_FILE", password_file)) if value]
    if len(given) > 1:
        raise SettingsError(f"the MQTT password is given by {' and '.join(given)}: give it once")
    user = user or ep.username
    password = ep.password or env_password or file_password
    if password and not user:
        raise SettingsError(f"{given[0]}: a password needs a user name (TWIN_MQTT_USERNAME, or "
                            "user:password@ in TWIN_MQTT_URL)")
    ep = replace(ep, username=user, password=password, password_file=password_file,
                 ca_file=_file(env, "TWIN_MQTT_CA_FILE"),
                 cert_file=_file(env, "TWIN_MQTT_CERT_FILE"),
                 key_file=_file(env, "TWIN_MQTT_KEY_FILE"),
                 tls_insecure=_flag(env, "TWIN_MQTT_TLS_INSECURE"))
    if ep.key_file and not ep.cert_file:
        raise SettingsError("TWIN_MQTT_KEY_FILE is set without TWIN_MQTT_CERT_FILE: give the "
                            "client certificate too")
    if not ep.tls:
        used = [n for n, v in (("TWIN_MQTT_CA_FILE", ep.ca_file),
                               ("TWIN_MQTT_CERT_FILE", ep.cert_file),
                               ("TWIN_MQTT_TLS_INSECURE", ep.tls_insecure)) if v]
        if used:
            raise SettingsError(f"{used[0]} is set but TWIN_MQTT_URL={ep.url} has no TLS: "
                                "use mqtts://")
    else:
        ep.tls_context()  # a CA file, certificate or key that cannot be used: one line now
    return ep


def redis_connection(env: Mapping[str, str] | None = None) -> tuple[str, dict[str, Any] | None]:
    """The Redis URL to connect with (a password from ``TWIN_REDIS_PASSWORD_FILE`` put in
    it) and the TLS options for ``rediss://`` (see :func:`redis_ssl_options`): what the
    Celery configuration needs, without the rest of the settings."""
    url, ca_file, _ = _redis(os.environ if env is None else env)
    return url, redis_ssl_options(url, ca_file)


def _redis(env: Mapping[str, str]) -> tuple[str, str | None, str | None]:
    """(URL with the password, CA file, password file) from the TWIN_REDIS_* variables."""
    url = env.get("TWIN_REDIS_URL", "").strip() or DEFAULT_REDIS_URL
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise SettingsError(
            f"TWIN_REDIS_URL={_redact(url)}: scheme must be redis://, rediss:// "
            f"or unix://, e.g. {DEFAULT_REDIS_URL}"
        )
    password_file, password = _secret_file(env, "TWIN_REDIS_PASSWORD_FILE")
    if password is not None:
        if parts.password:
            raise SettingsError("the Redis password is given by TWIN_REDIS_URL (:password@) and "
                                "TWIN_REDIS_PASSWORD_FILE: give it once")
        url = _with_password(url, password)
    ca_file = _file(env, "TWIN_REDIS_CA_FILE")
    if ca_file and parts.scheme != "rediss":
        raise SettingsError(f"TWIN_REDIS_CA_FILE is set but TWIN_REDIS_URL={_redact(url)} has "
                            "no TLS: use rediss://")
    return url, ca_file, password_file


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
    mqtt = _mqtt_endpoint(env, mqtt_url or DEFAULT_MQTT_URL)
    redis_effective, redis_ca_file, redis_password_file = _redis(env)
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
        **_policy(env),
        redis_ca_file=redis_ca_file,
        redis_password_file=redis_password_file,
        # credentials or TLS files for a default address also mean "this server, not an
        # embedded one" (`twinctl up` starts embedded servers without either)
        mqtt_configured=bool(mqtt_url) or any(_mqtt_env(mqtt).values()),
        redis_configured=bool(redis_url) or bool(redis_password_file or redis_ca_file),
    )
