#!/bin/sh
# Entry point of the redis service: Redis with the password of the Compose secret
# redis_password, then the command (redis-server - --appendonly yes ...).
#
# The password reaches redis-server on its standard input, as a config line
# (`redis-server -` reads its config from there), never on a command line that `ps`
# shows. A missing secret, an empty password, a placeholder (change-me, ...) or one
# shorter than 12 characters stops it here, with one line (compose/bin/secret.sh).
# In the redis image the command then goes through its docker-entrypoint.sh, which
# drops to the user redis.
set -eu

bin=${TWINCTL_COMPOSE_BIN:-/twinctl-compose}  # compose/bin
secrets=${SECRETS_DIR:-/run/secrets}          # the Compose secrets
. "$bin/secret.sh"

password=$(read_secret "the Redis password" "$secrets/redis_password") || exit 1
# a quoted config string: \ and " escaped
quoted=$(printf '%s' "$password" | sed 's/[\\"]/\\&/g')

if command -v docker-entrypoint.sh >/dev/null 2>&1; then
    set -- docker-entrypoint.sh "$@"
fi
exec "$@" <<CONF
requirepass "$quoted"
CONF
