"""Settings: defaults that work on one machine, one clear line for a wrong value."""

from __future__ import annotations

import subprocess
import sys

import pytest

from instances import SHIPPED_INSTANCES as DEFAULT_INSTANCES
from twinctl.settings import MqttEndpoint, SettingsError, load_settings


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
