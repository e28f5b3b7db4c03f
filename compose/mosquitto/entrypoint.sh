#!/bin/sh
# Entry point of the mosquitto service: write the broker's password file, ACL and TLS
# files from the Compose secrets, then start the broker (the command).
#
# Under /mosquitto/config/ (inside the container, rewritten at every start):
#   passwd   the accounts `controller` (twinctl's ingress) and `orchestrator`, with the
#            passwords of the secrets mqtt_controller_password and
#            mqtt_orchestrator_password, and `health` (the health check) with a random
#            one; plus the accounts of compose/mosquitto/passwd if you made that file
#            (mosquitto_passwd; compose/README.md says how)
#   acl      compose/mosquitto/acl with this deployment's prefix, controller id and
#            group, then compose/mosquitto/acl.local if it exists
#   tls/     the CA, the broker's certificate and its key, from the secrets
# A missing secret, an empty password, a placeholder (change-me, ...) or one shorter
# than 12 characters stops it here, with one line (compose/bin/secret.sh).
set -eu

base=${MOSQUITTO_BASE:-/mosquitto}          # another base only for the tests
bin=${TWINCTL_COMPOSE_BIN:-/twinctl-compose}  # compose/bin
secrets=${SECRETS_DIR:-/run/secrets}          # the Compose secrets
. "$bin/secret.sh"

refuse() {
    echo "twinctl compose: $*" >&2
    exit 1
}

# ----- the names that go into the ACL ---------------------------------------------------
prefix=${TWIN_MQTT_PREFIX:-twin}
cid=${TWIN_CONTROLLER_ID:-}
group=${TWIN_GROUP:-default}
[ -n "$cid" ] || refuse "TWIN_CONTROLLER_ID is not set: set it in compose/.env"
# as twinctl checks them (common/settings.py): no wildcard, no space, nothing sed minds
case $prefix in
    '' | /* | */ | *//* | *[!A-Za-z0-9._/-]*)
        refuse "TWIN_MQTT_PREFIX=$prefix: use topic levels of letters, digits, '.', '_', '-' separated by '/'" ;;
esac
for name in "$cid" "$group"; do
    case $name in
        *[!A-Za-z0-9._-]*) refuse "TWIN_CONTROLLER_ID=$cid, TWIN_GROUP=$group: use letters, digits, '.', '_' or '-'" ;;
    esac
done

# ----- the passwords --------------------------------------------------------------------
controller=$(read_secret "the MQTT password of the account controller" \
    "$secrets/mqtt_controller_password") || exit 1
orchestrator=$(read_secret "the MQTT password of the account orchestrator" \
    "$secrets/mqtt_orchestrator_password") || exit 1
[ "$controller" != "$orchestrator" ] \
    || refuse "the accounts controller and orchestrator have the same MQTT password: give each its own (sh compose/make-secrets.sh)"
health=$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')
[ "${#health}" -eq 32 ] || refuse "no random password for the account health (od, /dev/urandom)"

for f in mqtt_ca mqtt_server_cert mqtt_server_key; do
    f=$secrets/$f
    [ -f "$f" ] || refuse "the broker's TLS file $f is missing: run: sh compose/make-secrets.sh"
    [ -r "$f" ] || refuse "the broker's TLS file $f cannot be read"
done

# ----- write them -----------------------------------------------------------------------
umask 077
conf=$base/config
mkdir -p "$conf/tls"
new=$conf/passwd.new
# plain "user:password" lines, hashed in place by mosquitto_passwd -U (no password on a
# command line)
printf 'controller:%s\norchestrator:%s\nhealth:%s\n' "$controller" "$orchestrator" "$health" >"$new"
mosquitto_passwd -U "$new"
if [ -f "$base/config-src/passwd" ]; then  # your own accounts (hashed already)
    grep -v -E '^(controller|orchestrator|health):' "$base/config-src/passwd" >>"$new" || true
fi
mv "$new" "$conf/passwd"
printf '%s\n' "$health" >"$conf/health_password"

render() {
    sed -e "s|@PREFIX@|$prefix|g" -e "s|@CID@|$cid|g" -e "s|@GROUP@|$group|g" "$1"
}
render "$base/config-src/acl" >"$conf/acl"
if [ -f "$base/config-src/acl.local" ]; then
    { echo; render "$base/config-src/acl.local"; } >>"$conf/acl"
fi

cp "$secrets/mqtt_ca" "$conf/tls/ca.crt"
cp "$secrets/mqtt_server_cert" "$conf/tls/server.crt"
cp "$secrets/mqtt_server_key" "$conf/tls/server.key"
chmod 0644 "$conf/tls/ca.crt" "$conf/tls/server.crt"
chmod 0600 "$conf/passwd" "$conf/acl" "$conf/health_password" "$conf/tls/server.key"
# the broker drops to the user mosquitto; the health check runs as root
chown mosquitto:mosquitto "$conf/passwd" "$conf/acl" "$conf/tls" "$conf/tls/"*
chown -R mosquitto:mosquitto "$base/data"

exec "$@"
