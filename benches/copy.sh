#!/usr/bin/env bash
# `cairn copy` between two local repositories against a first backup of
# the same tree, for one or several cairn binaries alternated run by run.
#
# Usage:  benches/copy.sh DATA_DIR CAIRN [CAIRN…]
#
# Environment (defaults in brackets):
#   RUNS        repetitions                                 [3]
#   BENCH_WORK  where the table and logs go                 [${TMPDIR:-/tmp}/cairn-copy]
#   BENCH_SHM   tmpfs directory for the repositories        [/dev/shm/cairn-copy-$$]
#
# Each run, for each binary (the order rotates every run):
#   backup        a first backup of DATA into a fresh repository A;
#   copy          `copy --to B`, B a fresh repository with another password
#                 (and so another key and chunker seed: file contents are
#                 cut again, as for any two repositories);
#   copy_sizes    `copy --to C`, C with other chunk sizes as well.
# Every command runs under /usr/bin/time; rows go to $BENCH_WORK/copy.tsv
# with the 1-minute load average. In the first run, B's snapshot is
# restored and compared with DATA (diff -r), and C is checked with
# `check --read-data`.
set -euo pipefail
DATA=${1:?usage: benches/copy.sh DATA_DIR CAIRN [CAIRN…]}
shift
[ $# -ge 1 ] || { echo "usage: benches/copy.sh DATA_DIR CAIRN [CAIRN…]" >&2; exit 2; }
BINS=("$@")
RUNS=${RUNS:-3}
WORK=${BENCH_WORK:-${TMPDIR:-/tmp}/cairn-copy}
SHM=${BENCH_SHM:-/dev/shm/cairn-copy-$$}
mkdir -p "$WORK" "$SHM"
trap 'rm -rf "$SHM"' EXIT
printf 'source-password\n' > "$SHM/pw-a"
printf 'destination-password\n' > "$SHM/pw-b"
chmod 600 "$SHM/pw-a" "$SHM/pw-b"
OUT=$WORK/copy.tsv
printf 'run\tbinary\tstep\twall_s\tuser_s\tsys_s\tmaxrss_kb\tload1\n' > "$OUT"
tar -C "$DATA" -cf - . | cat > /dev/null # warm the page cache

timed() { # run binary step cmd...
    local run=$1 bin=$2 step=$3
    shift 3
    sync
    local load
    load=$(cut -d' ' -f1 /proc/loadavg)
    /usr/bin/time -f '%e\t%U\t%S\t%M' -o "$WORK/time.txt" "$@" > /dev/null 2> "$WORK/last.log" ||
        { cat "$WORK/last.log" >&2; exit 1; }
    printf '%s\t%s\t%s\t%s\t%s\n' "$run" "$bin" "$step" "$(cat "$WORK/time.txt")" "$load" >> "$OUT"
}

n=${#BINS[@]}
for i in $(seq 1 "$RUNS"); do
    for k in $(seq 0 $((n - 1))); do
        b=$(( (k + i - 1) % n ))
        bin=${BINS[$b]}
        name=$(basename "$bin")
        a=$SHM/a b_=$SHM/b c=$SHM/c
        rm -rf "$a" "$b_" "$c" "$SHM/rst"
        "$bin" --repo "$a" --password-file "$SHM/pw-a" init -q --kdf-memory-kib 19456 > /dev/null
        "$bin" --repo "$b_" --password-file "$SHM/pw-b" init -q --kdf-memory-kib 19456 > /dev/null
        "$bin" --repo "$c" --password-file "$SHM/pw-b" init -q --kdf-memory-kib 19456 \
            --chunk-sizes 262144,524288,4194304 > /dev/null
        timed "$i" "$name" backup "$bin" --repo "$a" --password-file "$SHM/pw-a" -q backup "$DATA"
        timed "$i" "$name" copy "$bin" --repo "$a" --password-file "$SHM/pw-a" -q copy \
            --to "$b_" --to-password-file "$SHM/pw-b"
        timed "$i" "$name" copy_sizes "$bin" --repo "$a" --password-file "$SHM/pw-a" -q copy \
            --to "$c" --to-password-file "$SHM/pw-b"
        if [ "$i" = 1 ]; then
            "$bin" --repo "$b_" --password-file "$SHM/pw-b" -q restore latest --target "$SHM/rst" > /dev/null
            diff -r "$DATA" "$SHM/rst$DATA" > /dev/null
            rm -rf "$SHM/rst"
            "$bin" --repo "$c" --password-file "$SHM/pw-b" -q check --read-data > /dev/null
        fi
        rm -rf "$a" "$b_" "$c"
    done
done
column -t "$OUT"
