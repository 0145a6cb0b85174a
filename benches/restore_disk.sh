#!/usr/bin/env bash
# Restore of many small files to disk: cairn, restic and `tar x` of the same
# tree onto the same file system, alternated run by run.
#
# Usage: benches/restore_disk.sh CAIRN [CAIRN_BASE]
#
# Environment (defaults in brackets):
#   N           files in the tree (benches/small_files.py: 40-200 bytes
#               each, 100 to a directory)                       [200000]
#   RUNS        repetitions; the order of the tools rotates     [3]
#   WORK        directory on the disk under test: restore targets,
#               results                                          [${TMPDIR:-/tmp}/cairn-restore-disk]
#   SHM         tmpfs directory: the tree, its tar archive and the
#               repositories, so that reading them costs little [/dev/shm/cairn-restore-disk-$$]
#   TOOLS       which to run: cairn, base (CAIRN_BASE), restic, tar
#                                                               ["cairn base restic tar"]
#   THREADS     cairn's --threads                              [number of cores]
#
# Each restore runs under /usr/bin/time, followed by a timed `sync` (the
# write-back it left); rows go to $WORK/restore-disk.tsv with the 1-minute
# load average before the run, so that other work on the machine shows.
# The first restore of each tool is compared with the tree (diff -r).
# Restore targets are kept until the end: on ext4, creating files right
# after a large tree was deleted is many times slower (see compare.sh), so
# deleting one restore before the next would measure that instead. That
# takes one copy of the tree per tool and run on the disk (a 200,000-file
# tree is about 1 GB there, in 4 KiB blocks).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cairn=$(realpath "${1:?usage: benches/restore_disk.sh CAIRN [CAIRN_BASE]}")
base=${2:+$(realpath "$2")}
n=${N:-200000}
runs=${RUNS:-3}
work=${WORK:-${TMPDIR:-/tmp}/cairn-restore-disk}
shm=${SHM:-/dev/shm/cairn-restore-disk-$$}
tools=${TOOLS:-cairn base restic tar}
threads=${THREADS:-$(nproc)}
[ -n "$base" ] || tools=${tools/base/}
export CAIRN_PASSWORD=bench RESTIC_PASSWORD=bench RESTIC_CACHE_DIR="$shm/restic-cache"
mkdir -p "$work/targets" "$shm"
trap 'rm -rf "$shm"' EXIT
out=$work/restore-disk.tsv
printf 'run\ttool\tstep\twall_s\tuser_s\tsys_s\tmaxrss_kb\tload1\n' > "$out"

tree=$shm/tree
python3 "$here/small_files.py" "$n" "$tree"
tar -C "$tree" -cf "$shm/tree.tar" .
"$cairn" -r "$shm/repo-cairn" init -q --kdf-memory-kib 19456 > /dev/null
"$cairn" -r "$shm/repo-cairn" -q backup "$tree" > /dev/null
restic -q -r "$shm/repo-restic" init > /dev/null
restic -q -r "$shm/repo-restic" backup "$tree" > /dev/null

timed() { # run tool step cmd...
    local run=$1 tool=$2 step=$3
    shift 3
    local load
    load=$(cut -d' ' -f1 /proc/loadavg)
    /usr/bin/time -f '%e\t%U\t%S\t%M' -o "$work/time.txt" "$@" > "$work/last.log" 2>&1 ||
        { cat "$work/last.log" >&2; exit 1; }
    printf '%s\t%s\t%s\t%s\t%s\n' "$run" "$tool" "$step" "$(cat "$work/time.txt")" "$load" >> "$out"
}

set -- $tools
count=$#
for run in $(seq 1 "$runs"); do
    # Rotate the order: each tool goes first in turn.
    order=()
    for k in $(seq 0 $((count - 1))); do
        i=$(((k + run - 1) % count + 1))
        order+=("${!i}")
    done
    for tool in "${order[@]}"; do
        t=$work/targets/$tool-$run
        sync
        case $tool in
            cairn) timed "$run" cairn restore "$cairn" -r "$shm/repo-cairn" --threads "$threads" -q restore latest --target "$t" ;;
            base) timed "$run" base restore "$base" -r "$shm/repo-cairn" --threads "$threads" -q restore latest --target "$t" ;;
            restic) timed "$run" restic restore restic -q -r "$shm/repo-restic" restore latest --target "$t" ;;
            tar) mkdir -p "$t$tree" && timed "$run" tar restore tar -C "$t$tree" -xf "$shm/tree.tar" ;;
        esac
        timed "$run" "$tool" sync sync
        if [ "$run" = 1 ]; then diff -r "$tree" "$t$tree" > /dev/null; fi
    done
done
rm -rf "$work/targets"
column -t "$out"
