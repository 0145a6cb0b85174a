#!/usr/bin/env bash
# Runs the whole test suite: unit tests, integration tests that drive the
# real `cairn` binary against local repositories, and the S3 tests against
# real Garage servers (single node and a three-node cluster) that the tests
# start themselves on loopback. Garage 2.5.0 is installed when missing, and
# so are moto's S3 server (pip; the AWS double of the Object Lock and role
# tests, tests/immutable.rs), Chromium (the HTML compliance report is
# rendered in it headless) and fuse3 (`cairn mount` is tested through the
# kernel's FUSE).
# The suite is built with the test-only `failpoints` feature, so that the
# crash tests can kill cairn at named points.
set -euo pipefail
cd "$(dirname "$0")/.."

export PATH="$HOME/.cargo/bin:$PATH"
want="2.5.0"
garage_bin="${CAIRN_GARAGE_BIN:-$(command -v garage || true)}"
if [ -z "$garage_bin" ] || ! "$garage_bin" --version 2>/dev/null | grep -q "$want"; then
    echo "installing Garage $want (cargo install; takes a while on a small machine)" >&2
    # Without LTO the build is several times faster; the tests do not need it.
    CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 \
        cargo install garage --locked --version "$want"
    export CAIRN_GARAGE_BIN="$HOME/.cargo/bin/garage"
fi

python="${CAIRN_PYTHON:-python3}"
if ! "$python" -c 'import moto.server, moto.s3, moto.iam' 2>/dev/null; then
    echo "installing moto's S3 server (pip install 'moto[server]')" >&2
    "$python" -m pip install --quiet 'moto[server]>=5.1,<6'
fi

if [ -z "${CAIRN_CHROMIUM:-}" ] && ! command -v chromium >/dev/null && ! command -v chromium-browser >/dev/null; then
    echo "installing Chromium (apt-get; for the HTML report test)" >&2
    sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    $sudo apt-get update -qq && $sudo apt-get install -y -qq chromium
fi

# `cairn mount` is tested through the kernel's FUSE: fusermount3 comes from
# fuse3. /dev/fuse cannot be installed; without it the mount tests fail and say so.
if ! command -v fusermount3 >/dev/null; then
    echo "installing fuse3 (apt-get; for the mount tests)" >&2
    sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    $sudo apt-get update -qq && $sudo apt-get install -y -qq fuse3
fi
[ -e /dev/fuse ] || echo "warning: /dev/fuse is missing: the mount tests will fail (modprobe fuse; --device /dev/fuse in a container)" >&2

# The fuzz targets (tests/fuzz) run a short pass that is the same every
# time: seed 1, 2,000 inputs per target. Longer runs: docs/RELIABILITY.md.
export CAIRN_FUZZ_SEED=1 CAIRN_FUZZ_ITERS=2000
unset CAIRN_FUZZ_SECS

# The torture harness (tests/torture.rs locally, tests/torture_garage.rs on
# Garage) runs its short seeded slice: seed 1, the rounds and trials each
# file defaults to. The full run and its figures: docs/RELIABILITY.md.
export CAIRN_TORTURE_SEED=1
unset CAIRN_TORTURE_KILLS CAIRN_TORTURE_CORRUPTIONS

# The crash tests kill cairn at named failpoints (src/failpoint.rs), which
# exist only with the test-only `failpoints` feature; without it they fail.
cargo test --all-targets --features failpoints "$@"
