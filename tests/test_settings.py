"""Settings: defaults that work on one machine, one clear line for a wrong value."""

from __future__ import annotations

import json
import ssl
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from common.settings import MqttEndpoint, Settings, SettingsError, load_settings
from instances import SHIPPED_INSTANCES as DEFAULT_INSTANCES


def test_defaults_work_on_one_machine() -> None:
    s = load_settings({})
    assert s.mqtt.url == "mqtt://127.0.0.1:1883"
    assert s.redis_url == "redis://127.0.0.1:6379/0"
    assert s.mqtt_prefix == "twin"
    assert s.max_command_bytes == 1 << 20
    assert s.instances_dir.parts[-3:] == ("twinctl", s.controller_id, "instances")
    assert DEFAULT_INSTANCES.is_dir()  # the shipped set that seeds it
    assert s.controller_id  # the host name
    assert not s.mqtt_configured and not s.redis_configured
    assert s.cmd_topic == f"twin/{s.controller_id}/cmd"
    assert s.reply_topic("job-1") == f"twin/{s.controller_id}/reply/job-1"


def test_mqtt_url_with_tls_and_credentials() -> None:
    ep = MqttEndpoint.parse("mqtts://op%40plant:s3cr%3At@broker.local")
    assert (ep.host, ep.port, ep.tls, ep.username, ep.password) == (
        "broker.local", 8883, True, "op@plant", "s3cr:t")
    assert "s3cr" not in repr(ep) and "s3cr" not in ep.url


def test_settings_round_trip_through_the_environment() -> None:
    env = {"TWIN_CONTROLLER_ID": "c-1", "TWIN_MQTT_URL": "mqtt://u:p@10.0.0.5:1884",
           "TWIN_REDIS_URL": "redis://:pw@127.0.0.1:6380/3", "TWIN_MQTT_PREFIX": "plant/twin"}
    s = load_settings(env)
    assert load_settings(s.to_env()) == s
    assert "pw" not in s.redis_url_safe


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({"TWIN_MQTT_URL": "http://x"}, "TWIN_MQTT_URL"),
        ({"TWIN_MQTT_URL": "mqtt://host:99999"}, "port"),
        ({"TWIN_REDIS_URL": "postgres://x"}, "TWIN_REDIS_URL"),
        ({"TWIN_MAX_COMMAND_BYTES": "lots"}, "whole number"),
        ({"TWIN_MAX_COMMAND_BYTES": "1"}, "between"),
        ({"TWIN_CONTROLLER_ID": "has space"}, "TWIN_CONTROLLER_ID"),
        ({"TWIN_MQTT_PREFIX": "twin/#"}, "wildcards"),
        ({"TWIN_MQTT_PROTOCOL": "4"}, "TWIN_MQTT_PROTOCOL"),
        ({"TWIN_INSTANCES": __file__}, "not a folder"),
    ],
)
def test_a_wrong_value_is_one_clear_line(env: dict[str, str], words: str) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(env)
    assert words in str(info.value)
    assert "\n" not in str(info.value)


def test_the_cli_prints_one_line_not_a_traceback() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "twinctl", "ingress"],
        env={"TWIN_MQTT_URL": "http://nowhere", "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().count("\n") == 0
    assert "TWIN_MQTT_URL" in proc.stderr


# ----- TLS and passwords -----------------------------------------------------------------

def round_trip(s: Settings, **merged_into: str) -> Settings:
    """The settings a child process reads from ``s.to_env()`` (merged into ``merged_into``);
    whether a URL was configured or defaulted aside."""
    again = load_settings({**merged_into, **s.to_env()})
    return replace(again, mqtt_configured=s.mqtt_configured, redis_configured=s.redis_configured)


@pytest.fixture(scope="module")
def cert_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A self-signed certificate and its key (PEM), made with the openssl CLI."""
    folder = tmp_path_factory.mktemp("cert")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1", "-subj", "/CN=t",
                    "-keyout", str(folder / "k.pem"), "-out", str(folder / "c.pem")],
                   check=True, capture_output=True, timeout=30)
    return str(folder / "c.pem"), str(folder / "k.pem")


def test_mqtt_tls_checks_certificates_and_host_names(cert_pair: tuple[str, str]) -> None:
    cert, key = cert_pair
    s = load_settings({"TWIN_MQTT_URL": "mqtts://broker.local", "TWIN_MQTT_CA_FILE": cert,
                       "TWIN_MQTT_CERT_FILE": cert, "TWIN_MQTT_KEY_FILE": key})
    assert (s.mqtt.ca_file, s.mqtt.cert_file, s.mqtt.key_file) == (cert, cert, key)
    ctx = s.mqtt.tls_context()
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    assert ctx.minimum_version >= ssl.TLSVersion.TLSv1_2
    assert ctx.get_ca_certs()[0]["subject"] == ((("commonName", "t"),),)  # only the file's CA
    default = load_settings({"TWIN_MQTT_URL": "mqtts://b"}).mqtt.tls_context()  # system CAs
    assert default.verify_mode == ssl.CERT_REQUIRED and default.check_hostname
    insecure = load_settings({"TWIN_MQTT_URL": "mqtts://b", "TWIN_MQTT_TLS_INSECURE": "1"})
    assert insecure.mqtt.tls_context().verify_mode == ssl.CERT_NONE
    assert round_trip(s) == s


def test_mqtt_credentials_from_variables_or_a_password_file(tmp_path: Path) -> None:
    secret = tmp_path / "mqtt-password"
    secret.write_text("s3cr:t pw\n")  # a file as `echo` writes it: the line break is not in it
    s = load_settings({"TWIN_MQTT_URL": "mqtt://b:1884", "TWIN_MQTT_USERNAME": "op",
                       "TWIN_MQTT_PASSWORD_FILE": str(secret)})
    assert (s.mqtt.username, s.mqtt.password, s.mqtt.password_file) == (
        "op", "s3cr:t pw", str(secret))
    env = s.to_env()
    assert "s3cr" not in "".join(env.values())  # children get the file, not the secret
    assert round_trip(s) == s
    s2 = load_settings({"TWIN_MQTT_USERNAME": "op", "TWIN_MQTT_PASSWORD": "pw2"})
    assert (s2.mqtt.username, s2.mqtt.password) == ("op", "pw2")
    assert round_trip(s2) == s2
    # merged into an environment that gives the password another way: still given once
    assert round_trip(s2, TWIN_MQTT_PASSWORD_FILE=str(secret)) == s2


def test_redis_password_file_and_tls(tmp_path: Path, cert_pair: tuple[str, str]) -> None:
    secret = tmp_path / "redis-password"
    secret.write_text("r/p@ss\n")
    s = load_settings({"TWIN_REDIS_URL": "rediss://redis.local:6380/2",
                       "TWIN_REDIS_PASSWORD_FILE": str(secret),
                       "TWIN_REDIS_CA_FILE": cert_pair[0]})
    assert s.redis_url == "rediss://:r%2Fp%40ss@redis.local:6380/2"
    assert "p%40ss" not in s.redis_url_safe and "redis.local:6380/2" in s.redis_url_safe
    assert s.redis_options == {"ssl_cert_reqs": ssl.CERT_REQUIRED, "ssl_check_hostname": True,
                               "ssl_ca_certs": cert_pair[0]}
    env = s.to_env()
    assert env["TWIN_REDIS_URL"] == "rediss://redis.local:6380/2"
    assert round_trip(s) == s
    plain = load_settings({"TWIN_REDIS_URL": "redis://u@h/0",
                           "TWIN_REDIS_PASSWORD_FILE": str(secret)})
    assert plain.redis_url == "redis://u:r%2Fp%40ss@h/0" and plain.redis_ssl is None
    assert round_trip(plain) == plain


def test_the_celery_config_gets_the_redis_password_and_tls(tmp_path: Path) -> None:
    secret = tmp_path / "redis-password"
    secret.write_text("pw-from-file")
    code = ("import json, tasks.celeryconfig as c; print(json.dumps([c.broker_url, "
            "c.result_backend, c.broker_use_ssl, c.redis_backend_use_ssl]))")
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
        env={"PATH": "/usr/bin:/bin", "TWIN_REDIS_URL": "rediss://r:6380/0",
             "TWIN_REDIS_PASSWORD_FILE": str(secret)})
    assert out.returncode == 0, out.stderr
    url, backend, broker_ssl, backend_ssl = json.loads(out.stdout)
    assert url == backend == "rediss://:pw-from-file@r:6380/0"
    assert broker_ssl == backend_ssl == {"ssl_cert_reqs": int(ssl.CERT_REQUIRED),
                                         "ssl_check_hostname": True}


def test_no_secret_in_repr(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("file-secret-1")
    s = load_settings({"TWIN_MQTT_URL": "mqtts://op:url-secret-2@b",
                       "TWIN_REDIS_URL": "redis://h/0", "TWIN_REDIS_PASSWORD_FILE": str(secret)})
    for shown in (repr(s), str(s), repr(s.mqtt), s.mqtt.url, s.redis_url_safe):
        assert "file-secret-1" not in shown and "url-secret-2" not in shown


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({"TWIN_MQTT_URL": "mqtts://h", "TWIN_MQTT_CA_FILE": "/nonexistent/ca.pem"},
         "TWIN_MQTT_CA_FILE=/nonexistent/ca.pem: no such file"),
        ({"TWIN_MQTT_URL": "mqtts://h", "TWIN_MQTT_CA_FILE": __file__},
         "TWIN_MQTT_CA_FILE"),
        ({"TWIN_MQTT_URL": "mqtts://h", "TWIN_MQTT_CERT_FILE": __file__},
         "TWIN_MQTT_CERT_FILE"),
        ({"TWIN_MQTT_URL": "mqtts://h", "TWIN_MQTT_KEY_FILE": __file__}, "without"),
        ({"TWIN_MQTT_CA_FILE": __file__}, "use mqtts://"),
        ({"TWIN_MQTT_URL": "mqtts://h", "TWIN_MQTT_TLS_INSECURE": "maybe"},
         "TWIN_MQTT_TLS_INSECURE"),
        ({"TWIN_MQTT_URL": "mqtt://u:pw@h", "TWIN_MQTT_PASSWORD": "x"}, "give it once"),
        ({"TWIN_MQTT_URL": "mqtt://u@h", "TWIN_MQTT_USERNAME": "v"}, "differ"),
        ({"TWIN_MQTT_PASSWORD": "x"}, "needs a user name"),
        ({"TWIN_MQTT_USERNAME": "u", "TWIN_MQTT_PASSWORD_FILE": "/nonexistent/pw"},
         "TWIN_MQTT_PASSWORD_FILE=/nonexistent/pw: no such file"),
        ({"TWIN_REDIS_URL": "redis://:pw@h", "TWIN_REDIS_PASSWORD_FILE": __file__},
         "give it once"),
        ({"TWIN_REDIS_CA_FILE": __file__}, "use rediss://"),
    ],
)
def test_a_wrong_tls_or_password_setting_is_one_clear_line(env: dict[str, str],
                                                          words: str) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(env)
    assert words in str(info.value)
    assert "\n" not in str(info.value)


def test_a_password_for_the_default_address_is_a_configured_server(tmp_path: Path) -> None:
    """`twinctl up` must not start an embedded server without the password instead."""
    secret = tmp_path / "pw"
    secret.write_text("x")
    assert load_settings({"TWIN_REDIS_PASSWORD_FILE": str(secret)}).redis_configured
    assert load_settings({"TWIN_MQTT_USERNAME": "u",
                          "TWIN_MQTT_PASSWORD_FILE": str(secret)}).mqtt_configured
    assert not load_settings({}).mqtt_configured
