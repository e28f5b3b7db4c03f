#!/usr/bin/env bash
# Install what the tests start or drive, when it is missing (Debian/Ubuntu packages):
# the redis-server and mosquitto binaries (the tests start their own instances on free
# ports and never use the machine's shared services), and Chromium, with which
# tests/test_flower.py renders Flower's tasks page and keeps a screenshot.
set -euo pipefail
missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || missing+=(mosquitto)
# tests/tls_harness.py makes its CA and certificates with it (mosquitto_passwd comes with mosquitto)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
# the fonts give the screenshot readable text; Chromium's other recommends (desktop
# integration, sandbox helpers) are not needed for --headless
[ -x /usr/bin/chromium ] || missing+=(chromium fonts-liberation)
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "installing ${missing[*]} from Debian's packages" >&2
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
