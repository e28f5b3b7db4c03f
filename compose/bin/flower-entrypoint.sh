#!/bin/sh
# Entry point of the flower service: Flower's login from the Compose secret
# flower_password (user FLOWER_USER, default admin), then the command (celery -A
# tasks.app flower ...). Flower reads FLOWER_BASIC_AUTH as its --basic-auth option.
# Redis: Flower is a Celery client of tasks.app, whose settings take the password from
# TWIN_REDIS_PASSWORD_FILE (tasks/celeryconfig.py).
# A missing secret, an empty password, a placeholder (change-me, ...) or one shorter
# than 12 characters stops it here, with one line (compose/bin/secret.sh).
set -eu

bin=${TWINCTL_COMPOSE_BIN:-/twinctl-compose}  # compose/bin
secrets=${SECRETS_DIR:-/run/secrets}          # the Compose secrets
. "$bin/secret.sh"

user=${FLOWER_USER:-admin}
case $user in
    '' | *[!A-Za-z0-9._-]*)
        echo "twinctl compose: FLOWER_USER=$user: use letters, digits, '.', '_' or '-'" >&2
        exit 1 ;;
esac
password=$(read_secret "Flower's password" "$secrets/flower_password") || exit 1
case $password in
    *,*) echo "twinctl compose: Flower's password ($secrets/flower_password) has a comma, which --basic-auth cannot take" >&2
         exit 1 ;;
esac
FLOWER_BASIC_AUTH="$user:$password"
export FLOWER_BASIC_AUTH
exec "$@"
