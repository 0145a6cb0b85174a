#!/usr/bin/env bash
# Runs the whole test suite: unit tests, and integration tests that drive
# the real `cairn` binary against local repositories.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --all-targets "$@"
