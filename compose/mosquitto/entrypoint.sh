#!/bin/sh
# Entry point of the mosquitto service: write the password file, then start the broker.
#
# The file /mosquitto/config/passwd (inside the container, rewritten at every start)
# holds the account MQTT_USER / MQTT_PASSWORD from compose/.env, which twinctl's
# services use. Accounts of your own (an orchestrator's, say) go into
# compose/mosquitto/passwd, made with mosquitto_passwd (compose/README.md says how);
# when that file exists it is the starting point and the twinctl account is added to it.
set -eu

: "${MQTT_USER:?set MQTT_USER in compose/.env}"
: "${MQTT_PASSWORD:?set MQTT_PASSWORD in compose/.env}"

base=${MOSQUITTO_BASE:-/mosquitto}   # another base only for tests/test_compose_image.py
pwfile=$base/config/passwd
umask 077
if [ -f "$base/config-src/passwd" ]; then
    cp "$base/config-src/passwd" "$pwfile"
    mosquitto_passwd -b "$pwfile" "$MQTT_USER" "$MQTT_PASSWORD"
else
    mosquitto_passwd -c -b "$pwfile" "$MQTT_USER" "$MQTT_PASSWORD"
fi
chmod 0600 "$pwfile"
chown mosquitto:mosquitto "$pwfile"
chown -R mosquitto:mosquitto "$base/data"

exec "$@"
