#!/usr/bin/env bash
# Builds the C programs the agents run, after tsc (npm run build calls it; so does
# scripts/setup.sh, through npm run build): vcstor-nfs-fuse, the user-space NFSv3 client
# that mounts an export as a directory through FUSE (host-storage/fuse-nfs/), into
# dist/bin/, where the fuse-nfs driver looks for it. Without gcc, pkg-config or the
# libnfs/libfuse3 headers it says so and builds nothing: the driver then reports itself
# unavailable in GetInfo, as for any missing program.
set -euo pipefail
cd "$(dirname "$0")/.."

src=host-storage/fuse-nfs/vcstor-nfs-fuse.c
out=dist/bin/vcstor-nfs-fuse
if ! command -v gcc >/dev/null || ! command -v pkg-config >/dev/null || ! pkg-config --exists fuse3 libnfs; then
  echo "build-native: not building $out: it needs gcc, pkg-config, libnfs-dev and libfuse3-dev (scripts/setup.sh installs them)" >&2
  exit 0
fi
mkdir -p "$(dirname "$out")"
# shellcheck disable=SC2046 # pkg-config's flags are words
gcc -O2 -g -Wall -Wextra -o "$out.tmp" "$src" $(pkg-config --cflags --libs fuse3 libnfs)
mv "$out.tmp" "$out"
