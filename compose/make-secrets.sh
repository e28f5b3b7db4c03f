#!/bin/sh
# Make the secrets of compose/docker-compose.yml: random passwords and the broker's
# TLS certificate, signed by a CA of its own. From the repository root:
#
#   sh compose/make-secrets.sh                 # into compose/secrets/
#   sh compose/make-secrets.sh /some/dir       # elsewhere (TWIN_SECRETS_DIR in compose/.env)
#   MQTT_TLS_NAMES=broker.example.com,10.0.0.5 sh compose/make-secrets.sh
#
# A file that exists is kept (delete it, then run this again, to replace it; after
# replacing the CA, give the new ca.crt to every orchestrator). Needs openssl and od.
#
#   redis_password               Redis (requirepass); the twinctl services     0644
#   mqtt_controller_password     MQTT account controller: twinctl's ingress    0644
#   mqtt_orchestrator_password   MQTT account orchestrator: yours              0600
#   flower_password              Flower's login (user FLOWER_USER, admin)      0644
#   ca.crt, ca.key               the CA: ca.crt for every MQTT client          0644, 0600
#   server.crt, server.key       the broker's certificate and key (port 8883)  0644, 0600
#
# The folder is 0700, so no other user of this host reads any of it. Inside it, the
# files that a container reads as a user other than root (twinctl's services run as
# the user twin) are 0644: Compose mounts secret files as they are on the host, with
# their owner and mode. The broker's certificate names mosquitto (the ingress connects
# so), localhost, 127.0.0.1, this host's name and MQTT_TLS_NAMES (DNS names or IP
# addresses, separated by commas): an orchestrator connects by one of them.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
dir=${1:-$here/secrets}
days=${MQTT_TLS_DAYS:-825}

command -v openssl >/dev/null 2>&1 || { echo "make-secrets.sh: openssl is needed" >&2; exit 1; }

umask 077
mkdir -p "$dir"
chmod 0700 "$dir"

made=""
password() {  # $1: file, $2: mode
    if [ -s "$dir/$1" ]; then
        return
    fi
    # 32 random bytes as 64 hex digits: safe in a URL, a config line and --basic-auth
    openssl rand -hex 32 >"$dir/$1"
    chmod "$2" "$dir/$1"
    made="$made $1"
}

password redis_password 0644
password mqtt_controller_password 0644
password mqtt_orchestrator_password 0600
password flower_password 0644

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

if [ ! -s "$dir/ca.crt" ] || [ ! -s "$dir/ca.key" ]; then
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$dir/ca.key" 2>/dev/null
    cat >"$tmp/ca.cnf" <<'CNF'
[req]
distinguished_name = dn
x509_extensions = ca
prompt = no
[dn]
CN = twinctl compose CA
[ca]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
CNF
    openssl req -x509 -new -key "$dir/ca.key" -out "$dir/ca.crt" -days 3650 \
        -config "$tmp/ca.cnf" -sha256
    chmod 0600 "$dir/ca.key"
    chmod 0644 "$dir/ca.crt"
    rm -f "$dir/server.crt"  # a new CA: a new server certificate signed by it
    made="$made ca.crt ca.key"
fi

if [ ! -s "$dir/server.crt" ] || [ ! -s "$dir/server.key" ]; then
    names="DNS:mosquitto,DNS:localhost,IP:127.0.0.1,IP:::1"
    host=$(hostname 2>/dev/null || true)
    case $host in
        '' | localhost | *[!A-Za-z0-9.-]*) ;;
        *) names="$names,DNS:$host" ;;
    esac
    old_ifs=$IFS
    IFS=,
    set -f  # *.example.com is a name, not a pattern
    for name in ${MQTT_TLS_NAMES:-}; do
        case $name in
            '') ;;
            *[!0-9.]*) case $name in
                           *:*) names="$names,IP:$name" ;;     # IPv6
                           *[!A-Za-z0-9.*-]*)
                               echo "make-secrets.sh: MQTT_TLS_NAMES: '$name' is no host name" >&2
                               exit 1 ;;
                           *) names="$names,DNS:$name" ;;
                       esac ;;
            *) names="$names,IP:$name" ;;                      # IPv4
        esac
    done
    IFS=$old_ifs
    set +f
    cat >"$tmp/server.cnf" <<CNF
[req]
distinguished_name = dn
prompt = no
[dn]
CN = mosquitto
[server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = $names
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid, issuer
CNF
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$dir/server.key" 2>/dev/null
    openssl req -new -key "$dir/server.key" -out "$tmp/server.csr" -config "$tmp/server.cnf"
    openssl x509 -req -in "$tmp/server.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" \
        -set_serial "0x$(openssl rand -hex 16)" -days "$days" -sha256 \
        -extfile "$tmp/server.cnf" -extensions server -out "$dir/server.crt" 2>/dev/null
    chmod 0600 "$dir/server.key"
    chmod 0644 "$dir/server.crt"
    made="$made server.crt server.key"
fi

if [ -n "$made" ]; then
    echo "make-secrets.sh: made$made in $dir"
else
    echo "make-secrets.sh: $dir has every secret already (kept)"
fi
