#!/usr/bin/env bash
# Two cairn binaries side by side on one tree, alternated run by run, so
# that a change can be shown not to slow backup or restore down.
#
# Usage:  benches/ab.sh OLD_CAIRN NEW_CAIRN DATA_DIR
#
# Environment (defaults in brackets):
#   RUNS        repetitions                                   [3]
#   BENCH_WORK  work directory on the disk under test          [${TMPDIR:-/tmp}/cairn-ab]
#   BENCH_SHM   tmpfs directory for repositories and restores  [/dev/shm/cairn-ab-$$]
#
# Each run, for each binary (the order swaps every run): a first backup of
# DATA into a fresh repository on tmpfs, a restore of it to tmpfs, and a
# restore to BENCH_WORK (disk) followed by a timed `sync`. Every command runs
# under /usr/bin/time; rows go to $BENCH_WORK/ab.tsv with the 1-minute load
# average, so noise from other work is visible. The first restore of each
# binary is compared with DATA (diff -r).
set -euo pipefail
OLD=${1:?usage: benches/ab.sh OLD_CAIRN NEW_CAIRN DATA_DIR}
NEW=${2:?usage: benches/ab.sh OLD_CAIRN NEW_CAIRN DATA_DIR}
DATA=${3:?usage: benches/ab.sh OLD_CAIRN NEW_CAIRN DATA_DIR}
RUNS=${RUNS:-3}
WORK=${BENCH_WORK:-${TMPDIR:-/tmp}/cairn-ab}
SHM=${BENCH_SHM:-/dev/shm/cairn-ab-$$}
export CAIRN_PASSWORD=ab-bench
mkdir -p "$WORK/disk" "$SHM"
trap 'rm -rf "$SHM"' EXIT
OUT=$WORK/ab.tsv
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

for i in $(seq 1 "$RUNS"); do
    if [ $((i % 2)) -eq 1 ]; then order="old new"; else order="new old"; fi
    for b in $order; do
        bin=$OLD
        [ "$b" = new ] && bin=$NEW
        repo=$SHM/repo-$b
        rm -rf "$repo" "$SHM/rst-$b"
        "$bin" --repo "$repo" init -q --kdf-memory-kib 19456 > /dev/null
        timed "$i" "$b" backup "$bin" --repo "$repo" -q backup "$DATA"
        timed "$i" "$b" restore_shm "$bin" --repo "$repo" -q restore latest --target "$SHM/rst-$b"
        if [ "$i" = 1 ]; then diff -r "$DATA" "$SHM/rst-$b$DATA" > /dev/null; fi
        rm -rf "$SHM/rst-$b"
        # Disk targets are kept until the end (see the ext4 note in compare.sh).
        timed "$i" "$b" restore_disk "$bin" --repo "$repo" -q restore latest --target "$WORK/disk/$b-$i"
        timed "$i" "$b" sync sync
        rm -rf "$repo"
    done
done
rm -rf "$WORK/disk"
column -t "$OUT"
