#!/usr/bin/env bash
# Installs Debian's chromium for the dashboard's browser tests
# (internal/web/e2e). Browsers cannot be downloaded any other way here, so
# this uses the distribution package. It does nothing when chromium is there.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
  /usr/bin/chromium --version 2>/dev/null || true
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
/usr/bin/chromium --version
