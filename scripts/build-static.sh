#!/usr/bin/env bash
# Builds one statically linked trainhook binary, with the version, commit and
# date stamped in (trainhook version prints them).
#
#   scripts/build-static.sh GOARCH OUTPUT
#
# GOARCH is amd64 or arm64 (linux). SQLite needs cgo, so the binary is linked
# by the C toolchain with -static: glibc's static libc, netgo and osusergo so
# that name resolution and user lookups need no shared NSS modules, and
# sqlite_omit_load_extension because a static binary cannot dlopen.
# Cross-building arm64 on amd64 needs Debian's gcc-aarch64-linux-gnu.
#
# VERSION (default: git describe), COMMIT (default: git rev-parse HEAD) and
# DATE (default: the commit's time, so that a rebuild of one commit is the
# same binary) override what is stamped.
set -euo pipefail
cd "$(dirname "$0")/.."

arch=${1:?usage: build-static.sh amd64|arm64 OUTPUT}
out=${2:?usage: build-static.sh amd64|arm64 OUTPUT}

version=${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}
commit=${COMMIT:-$(git rev-parse HEAD 2>/dev/null || echo unknown)}
date=${DATE:-$(TZ=UTC git log -1 --date=format-local:%Y-%m-%dT%H:%M:%SZ --format=%cd 2>/dev/null || date -u +%Y-%m-%dT%H:%M:%SZ)}

host=$(go env GOHOSTARCH)
cc=${CC:-}
case "$arch" in
  amd64) [ "$host" = amd64 ] || cc=${cc:-x86_64-linux-gnu-gcc} ;;
  arm64) [ "$host" = arm64 ] || cc=${cc:-aarch64-linux-gnu-gcc} ;;
  *) echo "build-static.sh: GOARCH must be amd64 or arm64, got $arch" >&2; exit 2 ;;
esac
cc=${cc:-gcc}
command -v "$cc" >/dev/null || {
  echo "build-static.sh: the C compiler $cc is missing; on Debian: apt-get install gcc-aarch64-linux-gnu (arm64) or gcc (amd64)" >&2
  exit 1
}

mkdir -p "$(dirname "$out")"
CGO_ENABLED=1 GOOS=linux GOARCH="$arch" CC="$cc" go build \
  -trimpath \
  -tags 'netgo osusergo sqlite_omit_load_extension' \
  -ldflags "-s -w -linkmode external -extldflags '-static' -X main.version=$version -X main.commit=$commit -X main.date=$date" \
  -o "$out" ./cmd/trainhook
echo "built $out ($version, linux/$arch)"
