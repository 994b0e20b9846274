#!/usr/bin/env bash
# Builds the release binaries: static linux/amd64 and linux/arm64 trainhook
# binaries with the version, commit and date stamped in, and SHA256SUMS.
#
#   scripts/release.sh [OUTDIR]     # default OUTDIR: dist/
#
# Needs Go, gcc and, on amd64, Debian's gcc-aarch64-linux-gnu for the arm64
# cgo cross-build (SQLite is C). VERSION, COMMIT and DATE override what is
# stamped (see scripts/build-static.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

out=${1:-dist}
export VERSION=${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}
export COMMIT=${COMMIT:-$(git rev-parse HEAD 2>/dev/null || echo unknown)}
export DATE=${DATE:-$(TZ=UTC git log -1 --date=format-local:%Y-%m-%dT%H:%M:%SZ --format=%cd 2>/dev/null || date -u +%Y-%m-%dT%H:%M:%SZ)}

mkdir -p "$out"
rm -f "$out"/trainhook_*_linux_* "$out/SHA256SUMS"
for arch in ${ARCHES:-amd64 arm64}; do
  scripts/build-static.sh "$arch" "$out/trainhook_${VERSION}_linux_${arch}"
done
(cd "$out" && sha256sum trainhook_*_linux_* >SHA256SUMS)
echo "release $VERSION in $out:"
cat "$out/SHA256SUMS"
