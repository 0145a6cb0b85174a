#!/usr/bin/env bash
# First run against the embedded default: a local repository in a
# temporary directory. Builds cairn, creates a repository, backs up this
# project's source tree, lists the snapshot, restores it and verifies it.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --quiet
cairn="${CARGO_TARGET_DIR:-target}/release/cairn"
work=$(mktemp -d "${TMPDIR:-/tmp}/cairn-first-run.XXXXXX")
trap 'rm -rf "$work"' EXIT

export CAIRN_REPO="$work/repo"
export CAIRN_PASSWORD="first-run-$(date +%s)"

echo "== init: a local repository at $CAIRN_REPO"
"$cairn" init
echo "== backup: $(pwd)/src"
"$cairn" backup src
echo "== backup again (unchanged: nothing is read)"
"$cairn" backup src
echo "== snapshots"
"$cairn" snapshots
echo "== restore latest into $work/restore, verifying every file"
"$cairn" restore latest --target "$work/restore" --verify
diff -r src "$work/restore$(pwd)/src"
echo "== check --read-data"
"$cairn" check --read-data
echo "first run OK: backup, restore and verification all succeeded"
