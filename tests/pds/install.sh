#!/usr/bin/env bash
# Installs the npm packages of the local PDS used by tests/test_pds_e2e.py into a cache under the data dir
# (building better-sqlite3 takes minutes, so it is done once). Without node/npm it does nothing: the test
# then skips.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
data_dir="${PLYR_APPVIEW_DATA_DIR:-$root/.plyr-appview}"
case "$data_dir" in /*) ;; *) data_dir="$root/$data_dir" ;; esac
dest="$data_dir/pds-node"

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "tests/pds/install.sh: node or npm missing; the PDS end-to-end test will be skipped" >&2
  exit 0
fi
mkdir -p "$dest"
if [ -f "$dest/.installed" ] && cmp -s "$here/package.json" "$dest/package.json"; then
  exit 0
fi
cp "$here/package.json" "$dest/package.json"
rm -f "$dest/.installed"
(cd "$dest" && npm install --no-audit --no-fund --loglevel=error --omit=dev)
touch "$dest/.installed"
