#!/usr/bin/env bash
# A big repository: BLOBS small blobs (default 10 million, 256 bytes on
# average) written directly as packs by benches/synth_repo.rs, then
# `check`, a small `backup` into it, `prune --dry-run` and `prune` after
# forgetting one of its two snapshots, each timed with
# `/usr/bin/time -f '%e %M'`, with the peak RSS per blob.
#
# Usage: benches/bigrepo.sh [CAIRN_BINARY] [BLOBS]   (WORK=/tmp/... for the repository)
# Build the binary from the same source: the generator links the library.
# CAIRN_BASE=another cairn binary (an older build) also runs check, the
# small backup and prune --dry-run on the same repository, each right
# before the same step of CAIRN_BINARY (its small backup comes first, so
# CAIRN_BINARY's finds its files unchanged).
set -euo pipefail
cairn=$(realpath "${1:-target/release/cairn}")
blobs=${2:-10000000}
work=${WORK:-$(mktemp -d "${TMPDIR:-/tmp}/cairn-bigrepo.XXXXXX")}
repo="$work/repo"
small="$work/small"
export CAIRN_PASSWORD=bench CAIRN_STATE_DIR="$work/state"
trap 'rm -rf "$repo" "$small" "$work/state"' EXIT
rm -rf "$repo" "$small" "$work/state"
mkdir -p "$small"
for i in $(seq 1 100); do head -c $((i * 997)) /dev/urandom > "$small/f$i"; done

/usr/bin/time -f '%e %M' -o "$work/time" cargo bench -q --bench synth_repo -- "$repo" "$blobs" | tee "$work/synth.log"
echo "generated in $(cut -d' ' -f1 < "$work/time") s; $(du -sb "$repo" | cut -f1) bytes"
# The generator writes no evidence: start the chain, as for a repository
# made before cairn kept evidence, so that `check` judges the data.
"$cairn" -r "$repo" -q evidence adopt

measure() { # NAME CMD...
    local name=$1; shift
    sync
    if ! /usr/bin/time -f '%e %M' -o "$work/time" "$@" > "$work/$name.log" 2> "$work/$name.err"; then
        cat "$work/$name.err" >&2
        exit 1
    fi
    read -r wall rss < <(tail -n 1 "$work/time")
    awk -v n="$name" -v w="$wall" -v r="$rss" -v b="$blobs" \
        'BEGIN{printf "%-16s %8.2f s  peak RSS %8.1f MB  %5.1f bytes/blob\n", n, w, r/1024, r*1024/b}'
}

base=${CAIRN_BASE:+$(realpath "$CAIRN_BASE")}
[ -n "$base" ] && measure base-check "$base" -r "$repo" check
measure check "$cairn" -r "$repo" check
[ -n "$base" ] && measure base-backup-small "$base" -r "$repo" backup "$small"
measure backup-small "$cairn" -r "$repo" backup "$small"
# forget the older synthetic snapshot, the one that holds every directory
"$cairn" -r "$repo" -q forget --host synthetic --keep-last 1 > /dev/null
[ -n "$base" ] && measure base-prune-dry-run "$base" -r "$repo" --json prune --dry-run
measure prune-dry-run "$cairn" -r "$repo" --json prune --dry-run
measure prune "$cairn" -r "$repo" --json prune
measure check-after "$cairn" -r "$repo" check
python3 -c "import json,sys; p=json.load(open(sys.argv[1]))['plan']; print('prune plan:', {k: p[k] for k in ('index_blobs','used_blobs','index_memory_bytes','memory_bytes')}, 'bytes/blob: %.1f' % (p['memory_bytes']/p['index_blobs']))" "$work/prune.log"
