#!/usr/bin/env bash
# Installs podman for building and smoke-testing the container image, and
# configures it for these machines: runc as the runtime (crun is not usable
# here) and file and process limits that fit inside the machine's own.
set -euo pipefail
if ! command -v podman >/dev/null || ! command -v runc >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman runc >/dev/null
fi
mkdir -p /etc/containers
conf=/etc/containers/containers.conf
if [ -e "$conf" ] && ! grep -qs 'runtime = "runc"' "$conf"; then
  echo "install-podman.sh: $conf exists without runtime = \"runc\"; add to it the settings below by hand" >&2
  exit 1
fi
if [ ! -e "$conf" ]; then
  cat >"$conf" <<'CONF'

[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]

[engine]
runtime = "runc"
CONF
fi
podman --version
