#!/usr/bin/env bash
# Install Debian's headless-capable Chromium (/usr/bin/chromium) when it is missing:
# tests/test_flower.py renders Flower's tasks page with it and keeps a screenshot.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
  exit 0
fi
echo "installing chromium from Debian's packages" >&2
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# the recommended fonts give the screenshot readable text; the rest of the recommends
# (desktop integration, sandbox helpers) are not needed for --headless
$SUDO apt-get install -y -qq --no-install-recommends chromium fonts-liberation >/dev/null
