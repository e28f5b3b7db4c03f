# Sourced by the entry points of compose/ (mosquitto, redis, flower): read a password
# from a secret file, and refuse, with one line on stderr, one that is no password.
#
#   pw=$(read_secret "the Redis password" /run/secrets/redis_password) || exit 1
#
# Refused: a missing or unreadable file, an empty password, a placeholder (anything
# with change-me, changeme or change_me in it, or password, secret, admin, in any
# case), fewer than 12 characters, anything but printable ASCII (a line break inside,
# a control character). The final line breaks of the file are not part of the
# password, as for twinctl's TWIN_*_PASSWORD_FILE. `sh compose/make-secrets.sh`
# makes good ones. POSIX sh: dash (redis, twinctl images) and busybox (mosquitto).

MIN_SECRET_CHARS=12

secret_refused() {  # $1: what, $2: the file, $3: why
    echo "twinctl compose: $1 ($2) $3" >&2
    exit 1
}

read_secret() {  # $1: what (for the message), $2: the file; prints the password
    _what=$1
    _file=$2
    _hint="run: sh compose/make-secrets.sh"
    [ -n "$_file" ] || secret_refused "$_what" "no file" "is not set: $_hint"
    [ -e "$_file" ] || secret_refused "$_what" "$_file" "is missing: $_hint"
    [ -f "$_file" ] || secret_refused "$_what" "$_file" "is not a file: $_hint"
    [ -r "$_file" ] || secret_refused "$_what" "$_file" \
        "cannot be read by user $(id -un 2>/dev/null || id -u) (its mode: see compose/README.md)"
    _value=$(cat "$_file") || secret_refused "$_what" "$_file" "cannot be read"
    _value=${_value%"$(printf '\r')"}  # a CRLF file: its last CR goes with the line break
    [ -n "$_value" ] || secret_refused "$_what" "$_file" "is empty: $_hint"
    if [ "$(printf '%s' "$_value" | tr -d '\040-\176'; echo .)" != . ]; then
        secret_refused "$_what" "$_file" \
            "holds a line break, a control character or non-ASCII: one line of printable ASCII"
    fi
    case $(printf '%s' "$_value" | tr 'A-Z' 'a-z') in
        *change-me* | *changeme* | *change_me* | password | secret | admin)
            secret_refused "$_what" "$_file" "is a placeholder (like change-me), not a password: $_hint" ;;
    esac
    if [ "${#_value}" -lt "$MIN_SECRET_CHARS" ]; then
        secret_refused "$_what" "$_file" \
            "is too short: ${#_value} characters, at least $MIN_SECRET_CHARS: $_hint"
    fi
    printf '%s' "$_value"
}
