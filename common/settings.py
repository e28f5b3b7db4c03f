"""Settings of a twinctl deployment, declared once in :data:`TABLE` and read from ``TWIN_*``.

Each entry of :data:`TABLE` names one environment variable with its marshmallow
field (type, bounds, choices), its default, its help and whether it is a secret.
From that one table come the parsing and its one-line errors
(:func:`load_settings`, :func:`read`), the environment of child processes
(:meth:`Settings.to_env`) and the README's settings table
(:func:`settings_markdown`; a test fails when the README is stale). A wrong value
raises :class:`SettingsError` naming the variable, the value and what would be
right; the CLI prints that line and exits, never a traceback.

A few settings are read together, because one constrains another: the MQTT URL
with its user, password (or password file) and TLS files; the Redis URL with its
password file and CA; the command secret (or its file) with the signature age.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from marshmallow import fields as mf
from marshmallow import validate

from .endpoints import (
    DEFAULT_MQTT_URL,
    DEFAULT_REDIS_URL,
    MqttEndpoint,
    redact,
    redis_ssl_options,
    with_password,
    without_password,
)
from .errors import SettingsError
from .variables import (
    File,
    Folder,
    Folders,
    Names,
    Setting,
    choice,
    flag,
    name_field,
    text,
    whole,
)

__all__ = ["TABLE", "Setting", "Settings", "SettingsError", "MqttEndpoint", "load_settings",
           "read", "redis_ssl_options", "settings_markdown", "KEY_NAME_RE",
           "with_settings_table"]

PREFIX_RE = re.compile(r"^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*\Z")


def _host_name() -> str:
    host = socket.gethostname().split(".")[0] or "controller"
    return re.sub(r"[^A-Za-z0-9._-]", "-", host)[:64] or "controller"


_S = Setting
TABLE: tuple[Setting, ...] = (
    _S("TWIN_CONTROLLER_ID", name_field(), _host_name, "this controller's unique id",
       "host name", attr="controller_id"),
    _S("TWIN_GROUP", name_field(), "default",
       "group of redundant controllers (MQTT 5 shared subscription)", attr="group"),
    _S("TWIN_MQTT_URL", text(), DEFAULT_MQTT_URL,
       "`mqtts://` for TLS; `mqtt://user:password@host:port`"),
    _S("TWIN_MQTT_USERNAME", text(), None,
       "MQTT user name (instead of `user@` in the URL)", "from the URL"),
    _S("TWIN_MQTT_PASSWORD", text(), None,
       "MQTT password (instead of `:password@` in the URL)", "from the URL", secret=True),
    _S("TWIN_MQTT_PASSWORD_FILE", File(), None,
       "a file holding the MQTT password (a Docker/Kubernetes secret)", "none"),
    _S("TWIN_MQTT_CA_FILE", File(), None,
       "PEM file of the CA that signed the broker's certificate (`mqtts://`)",
       "the system's CAs"),
    _S("TWIN_MQTT_CERT_FILE", File(), None,
       "client certificate (PEM), for a broker that asks for one", "none"),
    _S("TWIN_MQTT_KEY_FILE", File(), None,
       "the client certificate's private key (PEM, unencrypted)", "in the certificate file"),
    _S("TWIN_MQTT_TLS_INSECURE", flag(), False,
       "`1`: the broker's certificate and host name are not checked — tests and labs only"),
    _S("TWIN_MQTT_PREFIX", mf.String(validate=[
        validate.Length(max=128, error="at most 128 characters"),
        validate.Regexp(PREFIX_RE, error="use topic levels of letters, digits, '.', '_', '-' "
                        "separated by '/', without wildcards, e.g. 'twin' or 'plant1/twin'")]),
       "twin", "first topic level(s)", attr="mqtt_prefix"),
    _S("TWIN_MQTT_PROTOCOL", choice("auto", "5", "3.1.1"), "auto",
       "`5`, `3.1.1`, or `auto` (asks the broker)", attr="mqtt_protocol"),
    _S("TWIN_REDIS_URL", text(), DEFAULT_REDIS_URL,
       "Celery broker, outbox, duplicate-id guard; `rediss://` for TLS; "
       "`redis://:password@host`", secret=True),
    _S("TWIN_REDIS_PASSWORD_FILE", File(), None, "a file holding the Redis password", "none"),
    _S("TWIN_REDIS_CA_FILE", File(), None,
       "PEM file of the CA that signed Redis's certificate (`rediss://`)", "the system's CAs"),
    _S("TWIN_MAX_COMMAND_BYTES", whole(64, 256 << 20, 1 << 20), 1 << 20,
       "larger commands get `too_large`", attr="max_command_bytes"),
    _S("TWIN_MAX_RESULT_ROWS", whole(1, 10_000_000, 10_000), 10_000,
       "longer series are streamed as `data`", attr="max_result_rows"),
    _S("TWIN_MAX_RESULT_BYTES", whole(1 << 16, 1 << 40, 64 << 20), 64 << 20,
       "the most one run may return, at about 24 bytes a value (`limit_exceeded` when "
       "the command arrives)", attr="max_result_bytes"),
    _S("TWIN_MAX_MESSAGE_BYTES", whole(1 << 12, 256 << 20, 1 << 20), 1 << 20,
       "the largest reply: a longer series is streamed in `data` chunks of at most this "
       "size (keep it well under the broker's maximum packet size)",
       attr="max_message_bytes"),
    _S("TWIN_INSTANCES", Folder(), None,
       "this controller's instance files; a new folder is seeded from the shipped "
       "`instances/default`", "`~/.local/share/twinctl/{controller}/instances`",
       attr="instances_dir"),
    _S("TWIN_MAX_INSTANCES", whole(1, 1_000_000, 1_000), 1_000,
       "instances in this controller's library (`put_instance` of a new one beyond: "
       "`limit_exceeded`)", attr="max_instances"),
    _S("TWIN_MAX_INSTANCE_BYTES", whole(256, 16 << 20, 64 << 10), 64 << 10,
       "the largest instance `put_instance` takes, as JSON (`limit_exceeded`)",
       attr="max_instance_bytes"),
    _S("TWIN_DUPLICATE_TTL", whole(1, 30 * 86_400, 86_400), 86_400,
       "seconds a request id is remembered", attr="duplicate_ttl"),
    _S("TWIN_SOFT_TIME_LIMIT", whole(1, 30 * 86_400, 600), 600,
       "seconds a job may run (`timeout` error)", attr="soft_time_limit"),
    _S("TWIN_OUTBOX_MAX", whole(100, 100_000_000, 100_000), 100_000,
       "replies kept through a broker outage (oldest `data` dropped first, reported)",
       attr="outbox_max"),
    _S("TWIN_MAX_QUEUED", whole(1, 100_000_000, 1_000), 1_000,
       "waiting jobs above which `run`/`call` are refused with `limit_exceeded`",
       attr="max_queued"),
    _S("TWIN_ALLOW_COMMANDS", Names(metadata={"kind": "command"}), None,
       "commands this deployment answers, comma-separated (e.g. `ping,describe,run,jobs`); "
       "others get `not_permitted`", "all", attr="allow_commands"),
    _S("TWIN_ALLOW_MODELS", Names(metadata={"kind": "model"}), None,
       "models it runs (others: `not_permitted`; `describe` and the status list only these)",
       "all", attr="allow_models"),
    _S("TWIN_ALLOW_FUNCTIONS", Names(metadata={"kind": "function"}), None,
       "functions of the function library it runs (`call` and `post`)", "all",
       attr="allow_functions"),
    _S("TWIN_ALLOW_MODES", Names(metadata={"kind": "mode"}), None,
       "run modes it runs: `static`, `dynamic`, `realtime`", "all", attr="allow_modes"),
    _S("TWIN_MAX_ELEMENTS", whole(1, 1_000_000, 500), 500,
       "elements of one scenario (`limit_exceeded`)", attr="max_elements"),
    _S("TWIN_MAX_STEPS", whole(1, 10**12, 10_000_000), 10_000_000,
       "output rows of a dynamic run, ticks of a real-time run with a `time.stop`, and the "
       "solver steps `solver.max_step` imposes on such a run (`limit_exceeded`)",
       attr="max_steps"),
    _S("TWIN_MAX_REALTIME_S", whole(0, 10 * 365 * 86_400, 86_400), 86_400,
       "seconds of wall-clock time one real-time run may last: a longer `time.stop` is "
       "refused (`limit_exceeded`), an open-ended run is stopped then (`status` `stopped`); "
       "0: no cap", attr="max_realtime_s"),
    _S("TWIN_MODEL_PATH", Folders(), (),
       "folders of `.py` files defining the operator's own models (docs/authoring.md), "
       "loaded by the ingress and every worker", "none", attr="model_path"),
    _S("TWIN_PLUGINS", Names(metadata={"kind": "distribution"}), None,
       "the installed distributions whose `twinctl.models` / `twinctl.functions` entry "
       "points are loaded, comma-separated", "all installed", attr="plugins"),
    _S("TWIN_MAX_CASES", whole(1, 10_000_000, 10_000), 10_000,
       "cases of one sweep (`limit_exceeded`, before any is run)", attr="max_cases"),
    _S("TWIN_MAX_SERIES", whole(1, 10**9, 1_000_000), 1_000_000,
       "points of one input series or function argument array", attr="max_series"),
    _S("TWIN_MAX_JOBS_PER_CLIENT", whole(0, 1_000_000, 0), 0,
       "jobs one orchestrator may have queued or running (0: no limit); it is named by the "
       "MQTT 5 user property `client`, else its response topic", attr="max_jobs_per_client"),
    _S("TWIN_COMMAND_SECRET", text(), None,
       "when set, every command must be signed: HMAC-SHA256 of its payload (see "
       "docs/protocol.md)", "none", secret=True),
    _S("TWIN_COMMAND_SECRET_FILE", text(), None,
       "a file holding that secret (a Docker/Kubernetes secret)", "none"),
    _S("TWIN_COMMAND_KEYS_FILE", text(), None,
       "a file of named keys, one line `name secret` each (`#` comments): every command "
       "must be signed, and a command signed with a named key comes from the orchestrator "
       "of that name (its jobs, limits and steering; docs/protocol.md)", "none"),
    _S("TWIN_ADMIN_CLIENTS", Names(metadata={"kind": "client"}), None,
       "orchestrators (key names of TWIN_COMMAND_KEYS_FILE) that may `put_instance`, "
       "`delete_instance`, and `stop`/`set` other orchestrators' jobs; unset: anyone may "
       "change instances and each orchestrator steers only its own jobs",
       "anyone (instances); the job's own orchestrator (steering)", attr="admin_clients"),
    _S("TWIN_SIGNATURE_MAX_AGE", whole(1, 86_400, 300), 300,
       "seconds a signed command's `ts` may be from the controller's clock",
       attr="signature_max_age"),
    _S("TWIN_LOG_LEVEL", choice("DEBUG", "INFO", "WARNING", "ERROR"), "INFO",
       "`DEBUG`, `INFO`, `WARNING`, `ERROR`", attr="log_level", case="upper"),
    _S("TWIN_LOG_FORMAT", choice("text", "json"), "text",
       "`json`: one JSON object per log line (ingress and workers)", attr="log_format"),
    _S("TWIN_REALTIME_PRIORITY", whole(0, 99, 10), 10,
       "`SCHED_FIFO` priority of a running real-time loop (needs root or `CAP_SYS_NICE`; "
       "0: normal scheduling)", attr="realtime_priority"),
)
"""Every setting, in the order the README lists them."""

_BY_NAME = {s.name: s for s in TABLE}


def read(name: str, env: Mapping[str, str] | None = None) -> Any:
    """One setting by its variable's name, checked (for a process that needs only it)."""
    return _BY_NAME[name].parse(os.environ if env is None else env)


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
    max_result_bytes: int
    max_message_bytes: int
    instances_dir: Path
    max_instances: int
    max_instance_bytes: int
    duplicate_ttl: int
    soft_time_limit: int
    outbox_max: int
    max_queued: int
    # deployment policy (None: everything allowed) and limits; see ingress/policy.py
    allow_commands: tuple[str, ...] | None
    allow_models: tuple[str, ...] | None
    allow_functions: tuple[str, ...] | None
    allow_modes: tuple[str, ...] | None
    max_elements: int
    max_steps: int
    max_realtime_s: int
    max_series: int
    max_cases: int
    model_path: tuple[Path, ...]
    plugins: tuple[str, ...] | None
    max_jobs_per_client: int
    signature_max_age: int
    admin_clients: tuple[str, ...] | None
    log_level: str
    log_format: str
    realtime_priority: int
    # signed commands (ingress/signing.py): on when a secret is set
    command_secret: bytes | None = field(default=None, repr=False)
    command_secret_file: str | None = None
    command_keys: dict[str, bytes] = field(default_factory=dict, repr=False)
    """named keys (name -> secret) of ``command_keys_file``"""
    command_keys_file: str | None = None
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
    def alarms_topic(self) -> str:
        return self.topic("alarms")

    @property
    def redis_url_safe(self) -> str:
        """The Redis URL without its password, safe to log."""
        return redact(self.redis_url)

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
        """The environment variables that reproduce these settings in a child process:
        every setting of the table that fills a field, then the ones read together (a
        secret read from a file goes on as the file's name, not as the secret)."""
        env = {s.name: s.dump(getattr(self, s.attr)) for s in TABLE if s.attr}
        ep = self.mqtt
        from_file = ep.password_file is not None
        env.update({
            "TWIN_MQTT_URL": ep.url,
            # every one set, empty when unused: merged into an environment that has others
            # (e.g. a password in the URL), a password cannot be given twice
            "TWIN_MQTT_USERNAME": ep.username or "",
            "TWIN_MQTT_PASSWORD": "" if from_file else ep.password or "",
            "TWIN_MQTT_PASSWORD_FILE": ep.password_file or "",
            "TWIN_MQTT_CA_FILE": ep.ca_file or "",
            "TWIN_MQTT_CERT_FILE": ep.cert_file or "",
            "TWIN_MQTT_KEY_FILE": ep.key_file or "",
            "TWIN_MQTT_TLS_INSECURE": "1" if ep.tls_insecure else "",
            "TWIN_REDIS_URL": (without_password(self.redis_url) if self.redis_password_file
                               else self.redis_url),
            "TWIN_REDIS_PASSWORD_FILE": self.redis_password_file or "",
            "TWIN_REDIS_CA_FILE": self.redis_ca_file or "",
            "TWIN_COMMAND_SECRET": "",
            "TWIN_COMMAND_SECRET_FILE": self.command_secret_file or "",
            "TWIN_COMMAND_KEYS_FILE": self.command_keys_file or "",
        })
        if self.command_secret is not None and not self.command_secret_file:
            env["TWIN_COMMAND_SECRET"] = self.command_secret.decode("utf-8")
        return env


# ----- settings read together ------------------------------------------------------------

def _mqtt_endpoint(env: Mapping[str, str]) -> MqttEndpoint:
    """``TWIN_MQTT_URL`` with the TLS files and credentials of the other TWIN_MQTT_* variables."""
    ep = MqttEndpoint.parse(read("TWIN_MQTT_URL", env))
    user = read("TWIN_MQTT_USERNAME", env)
    if user and ep.username and user != ep.username:
        raise SettingsError(f"TWIN_MQTT_USERNAME={user!r} and the user {ep.username!r} in "
                            "TWIN_MQTT_URL differ: give the user name once")
    env_password = read("TWIN_MQTT_PASSWORD", env)
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
                 ca_file=read("TWIN_MQTT_CA_FILE", env),
                 cert_file=read("TWIN_MQTT_CERT_FILE", env),
                 key_file=read("TWIN_MQTT_KEY_FILE", env),
                 tls_insecure=read("TWIN_MQTT_TLS_INSECURE", env))
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


def _secret_file(env: Mapping[str, str], name: str) -> tuple[str | None, str | None]:
    """(file, its content without the final line break) of a password file, or (None, None)."""
    path = read(name, env)
    if path is None:
        return None, None
    try:
        secret = Path(path).read_text("utf-8").rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingsError(f"{name}={path}: cannot be read "
                            f"({getattr(exc, 'strerror', None) or exc})") from None
    if not secret:
        raise SettingsError(f"{name}={path}: the file is empty")
    return path, secret


def _redis(env: Mapping[str, str]) -> tuple[str, str | None, str | None]:
    """(URL with the password, CA file, password file) from the TWIN_REDIS_* variables."""
    url = str(read("TWIN_REDIS_URL", env)).strip()
    parts = urlsplit(url)
    scheme = parts.scheme
    if scheme not in ("redis", "rediss", "unix"):
        raise SettingsError(
            f"TWIN_REDIS_URL={redact(url)}: scheme must be redis://, rediss:// "
            f"or unix://, e.g. {DEFAULT_REDIS_URL}")
    password_file, password = _secret_file(env, "TWIN_REDIS_PASSWORD_FILE")
    if password is not None:
        if parts.password:
            raise SettingsError("the Redis password is given by TWIN_REDIS_URL (:password@) and "
                                "TWIN_REDIS_PASSWORD_FILE: give it once")
        url = with_password(url, password)
    ca_file = read("TWIN_REDIS_CA_FILE", env)
    if ca_file and scheme != "rediss":
        raise SettingsError(f"TWIN_REDIS_CA_FILE is set but TWIN_REDIS_URL={redact(url)} has "
                            "no TLS: use rediss://")
    return url, ca_file, password_file


def _command_secret(env: Mapping[str, str]) -> dict[str, Any]:
    """``command_secret`` (and its file) of TWIN_COMMAND_SECRET or TWIN_COMMAND_SECRET_FILE."""
    secret = (read("TWIN_COMMAND_SECRET", env) or "").strip()
    path = read("TWIN_COMMAND_SECRET_FILE", env)
    if not secret and not path:
        return {}
    if secret and path:
        raise SettingsError("TWIN_COMMAND_SECRET and TWIN_COMMAND_SECRET_FILE are both set: "
                            "set one of them")
    out: dict[str, Any] = {}
    if path:
        try:
            secret = Path(path).expanduser().read_text("utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise SettingsError(f"TWIN_COMMAND_SECRET_FILE={path!r}: cannot be read "
                                f"({getattr(exc, 'strerror', None) or exc})") from None
        out["command_secret_file"] = path
    if len(secret) < 16:
        which = "TWIN_COMMAND_SECRET_FILE" if path else "TWIN_COMMAND_SECRET"
        raise SettingsError(f"{which}: the secret must have at least 16 characters, "
                            "e.g. from `openssl rand -hex 32`")
    out["command_secret"] = secret.encode("utf-8")
    return out


KEY_NAME_RE = r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}"
"""A command key's name (TWIN_COMMAND_KEYS_FILE): it names the orchestrator holding it."""
_KEY_NAME = re.compile(KEY_NAME_RE + r"\Z")


def _command_keys(env: Mapping[str, str], admins: tuple[str, ...] | None) -> dict[str, Any]:
    """``command_keys`` (and their file) of TWIN_COMMAND_KEYS_FILE: one ``name secret`` a
    line; and the check that TWIN_ADMIN_CLIENTS names such keys."""
    path = read("TWIN_COMMAND_KEYS_FILE", env)
    if not path:
        if admins:
            raise SettingsError(
                "TWIN_ADMIN_CLIENTS names orchestrators, which only named keys prove: set "
                "TWIN_COMMAND_KEYS_FILE with a key for each of them")
        return {}
    try:
        text = Path(path).expanduser().read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingsError(f"TWIN_COMMAND_KEYS_FILE={path!r}: cannot be read "
                            f"({getattr(exc, 'strerror', None) or exc})") from None
    keys: dict[str, bytes] = {}
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, _, secret = line.partition(" ")
        secret = secret.strip()
        where = f"TWIN_COMMAND_KEYS_FILE={path!r}, line {n}"
        if not _KEY_NAME.match(name):
            raise SettingsError(f"{where}: {name[:40]!r} is not a key name (letters, digits, "
                                "'.', '_', '-', at most 64; then one space and the secret)")
        if len(secret) < 16:
            raise SettingsError(f"{where}: the secret of key {name!r} must have at least 16 "
                                "characters, e.g. from `openssl rand -hex 32`")
        if name in keys:
            raise SettingsError(f"{where}: key {name!r} is given twice")
        keys[name] = secret.encode("utf-8")
    if not keys:
        raise SettingsError(f"TWIN_COMMAND_KEYS_FILE={path!r}: the file has no keys")
    unknown = [a for a in admins or () if a not in keys]
    if unknown:
        raise SettingsError(f"TWIN_ADMIN_CLIENTS: {unknown[0]!r} has no key in "
                            f"TWIN_COMMAND_KEYS_FILE (keys: {', '.join(keys)})")
    return {"command_keys": keys, "command_keys_file": path}


def _signing(env: Mapping[str, str], duplicate_ttl: int, max_age: int,
             admins: tuple[str, ...] | None) -> dict[str, Any]:
    """The signing keys, with the check that a replay cannot outlive the duplicate guard."""
    out = {**_command_secret(env), **_command_keys(env, admins)}
    if out and max_age > duplicate_ttl:
        raise SettingsError(
            f"TWIN_SIGNATURE_MAX_AGE={max_age}: must not exceed "
            f"TWIN_DUPLICATE_TTL ({duplicate_ttl} s), which keeps a replayed command out")
    return out


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read and check every setting; raise :class:`SettingsError` on the first bad one."""
    env = os.environ if env is None else env
    mqtt = _mqtt_endpoint(env)
    redis_url, redis_ca_file, redis_password_file = _redis(env)
    values = {s.attr: read(s.name, env) for s in TABLE if s.attr}
    if values["instances_dir"] is None:
        data_home = env.get("XDG_DATA_HOME", "").strip() or str(
            Path(env.get("HOME", "") or Path.home()) / ".local" / "share")
        values["instances_dir"] = (Path(data_home) / "twinctl" / values["controller_id"]
                                   / "instances")
    return Settings(
        mqtt=mqtt, redis_url=redis_url, redis_ca_file=redis_ca_file,
        redis_password_file=redis_password_file, **values,
        **_signing(env, values["duplicate_ttl"], values["signature_max_age"],
                   values["admin_clients"]),
        # credentials or TLS files for a default address also mean "this server, not an
        # embedded one" (`twinctl up` starts embedded servers without either)
        mqtt_configured=bool(env.get("TWIN_MQTT_URL", "").strip()) or bool(
            mqtt.username or mqtt.password or mqtt.ca_file or mqtt.cert_file
            or mqtt.tls_insecure),
        redis_configured=bool(env.get("TWIN_REDIS_URL", "").strip()) or bool(
            redis_password_file or redis_ca_file),
    )


README_BEGIN = ("<!-- settings: generated from common/settings.py by `twinctl docs`; "
                "edit the table there -->\n")
README_END = "<!-- /settings -->\n"


def settings_markdown() -> str:
    """The README's settings table, from :data:`TABLE`."""
    rows = ["| variable | default | |", "|---|---|---|"]
    for s in TABLE:
        shown = s.shown_default if s.shown_default is not None else f"`{s.dump(s.default)}`"
        rows.append(f"| `{s.name}` | {shown} | {s.help} |")
    return "\n".join(rows) + "\n"


def with_settings_table(readme: str) -> str:
    """``readme`` with its generated settings table (between the markers) made current."""
    start = readme.index(README_BEGIN) + len(README_BEGIN)
    end = readme.index(README_END, start)
    return readme[:start] + settings_markdown() + readme[end:]


assert {s.attr for s in TABLE if s.attr} <= {f.name for f in fields(Settings)}
