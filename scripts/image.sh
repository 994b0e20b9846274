#!/usr/bin/env bash
# Builds trainhook's container image: a static binary (scripts/build-static.sh)
# in a FROM scratch image (Dockerfile). Needs Go, gcc and podman (or docker:
# ENGINE=docker).
#
#   scripts/image.sh [TAG]      # default TAG: localhost/trainhook:<version>, also tagged :latest
#
# GOARCH=arm64 builds an arm64 image (cross-compiled; see build-static.sh).
# BINARY=path uses a binary release.sh built instead of building one.
set -euo pipefail
cd "$(dirname "$0")/.."

engine=${ENGINE:-podman}
arch=${GOARCH:-$(go env GOARCH)}
version=${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}
commit=${COMMIT:-$(git rev-parse HEAD 2>/dev/null || echo unknown)}
created=${DATE:-$(TZ=UTC git log -1 --date=format-local:%Y-%m-%dT%H:%M:%SZ --format=%cd 2>/dev/null || date -u +%Y-%m-%dT%H:%M:%SZ)}
tag=${1:-localhost/trainhook:$version}
certs=${CA_CERTS:-/etc/ssl/certs/ca-certificates.crt}
[ -r "$certs" ] || {
  echo "image.sh: no CA certificates at $certs (Debian: apt-get install ca-certificates; or set CA_CERTS)" >&2
  exit 1
}

ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
root=$ctx/rootfs
mkdir -p "$root/usr/local/bin" "$root/etc/ssl/certs" "$root/tmp" "$ctx/data"
if [ -n "${BINARY:-}" ]; then
  install -m 0755 "$BINARY" "$root/usr/local/bin/trainhook"
else
  VERSION=$version COMMIT=$commit DATE=$created scripts/build-static.sh "$arch" "$root/usr/local/bin/trainhook"
fi
cp "$certs" "$root/etc/ssl/certs/ca-certificates.crt"
chmod 0644 "$root/etc/ssl/certs/ca-certificates.crt"
chmod 1777 "$root/tmp"
chmod 0700 "$ctx/data" # the Dockerfile gives it to the server's user
cp Dockerfile "$ctx/Dockerfile"

format=()
[ "$engine" = podman ] && format=(--format docker) # keeps HEALTHCHECK
"$engine" build "${format[@]}" --platform "linux/$arch" \
  --build-arg VERSION="$version" --build-arg REVISION="$commit" --build-arg CREATED="$created" \
  -t "$tag" -t "${tag%:*}:latest" "$ctx"
echo "image: $tag"
