#!/usr/bin/env bash
# Many small files: first and unchanged backups, and a restore to tmpfs, of
# trees of N files of 40-200 bytes (benches/small_files.py: 100 files per
# directory), cairn and restic side by side in one run, each timed with
# `/usr/bin/time -f '%e %M'` (wall seconds, peak RSS in kB), and
# `find TREE -printf '%s %T@ %C@ %i\n'` for the cost of the stat calls alone.
#
# Usage: benches/manyfiles.sh [CAIRN_BINARY]
#   SIZES="250000 500000 1000000"  trees on tmpfs (TREE_DIR, default /dev/shm)
#   DISK_SIZES="3000000"           trees on disk (under WORK)
#   WORK=/tmp/...                  repositories, logs and results.tsv
#   TOOLS="cairn restic"           add `base` to run CAIRN_BASE, another cairn
#                                  binary (an older build), on the same trees
#   RESTORE=1                      also time a restore to tmpfs (0: skip it)
# Every tree and repository is deleted after use.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cairn=$(realpath "${1:-target/release/cairn}")
sizes=${SIZES-250000 500000 1000000}
disk_sizes=${DISK_SIZES-}
tools=${TOOLS:-cairn restic}
base=${CAIRN_BASE:+$(realpath "$CAIRN_BASE")}
restore=${RESTORE:-1}
work=${WORK:-$(mktemp -d "${TMPDIR:-/tmp}/cairn-manyfiles.XXXXXX")}
shm=${TREE_DIR:-/dev/shm}/cairn-manyfiles.$$
mkdir -p "$work" "$shm"
export CAIRN_PASSWORD=bench RESTIC_PASSWORD=bench RESTIC_CACHE_DIR="$work/restic-cache"
results="$work/results.tsv"
printf 'files\ttool\tphase\twall_s\tmaxrss_kb\n' > "$results"
cleanup() { rm -rf "$shm" "$work"/repo-* "$work"/tree-* "$RESTIC_CACHE_DIR"; }
trap cleanup EXIT

measure() { # FILES TOOL PHASE CMD...
    local n=$1 tool=$2 phase=$3; shift 3
    sync
    if ! /usr/bin/time -f '%e %M' -o "$work/time" "$@" > "$work/log" 2>&1; then
        cat "$work/log" >&2
        echo "$tool $phase failed" >&2
        exit 1
    fi
    read -r wall rss < <(tail -n 1 "$work/time")
    printf '%s\t%s\t%s\t%s\t%s\n' "$n" "$tool" "$phase" "$wall" "$rss" >> "$results"
    echo "$n files: $tool $phase: ${wall} s, ${rss} kB"
}

run_size() { # FILES DIR
    local n=$1 tree=$2/tree-$1
    rm -rf "$tree"
    python3 "$here/small_files.py" "$n" "$tree"
    find "$tree" -printf '%s %T@ %C@ %i\n' > /dev/null # warm the dentry and inode caches
    measure "$n" find stat bash -c 'find "$1" -printf "%s %T@ %C@ %i\n" > /dev/null' _ "$tree"
    for tool in $tools; do
        local repo="$work/repo-$tool"
        rm -rf "$repo" "$RESTIC_CACHE_DIR"
        local target="$shm/restore-$tool"
        case $tool in
            cairn | base)
                local bin=$cairn
                [ "$tool" = base ] && bin=${base:?CAIRN_BASE is not set}
                "$bin" -r "$repo" init -q --kdf-memory-kib 19456 > /dev/null
                measure "$n" "$tool" first "$bin" -r "$repo" --json backup "$tree"
                measure "$n" "$tool" unchanged "$bin" -r "$repo" --json backup "$tree"
                if [ "$restore" = 1 ]; then
                    measure "$n" "$tool" restore "$bin" -r "$repo" -q restore latest --target "$target"
                fi
                # The index of one blob per file: its memory in check and prune.
                measure "$n" "$tool" check "$bin" -r "$repo" check
                measure "$n" "$tool" prune-dry-run "$bin" -r "$repo" --json prune --dry-run
                ;;
            restic)
                restic -r "$repo" init > /dev/null
                measure "$n" restic first restic -r "$repo" backup "$tree"
                measure "$n" restic unchanged restic -r "$repo" backup "$tree"
                if [ "$restore" = 1 ]; then
                    measure "$n" restic restore restic -r "$repo" restore latest --target "$target"
                fi
                ;;
        esac
        rm -rf "$repo" "$RESTIC_CACHE_DIR" "$target"
    done
    rm -rf "$tree"
}

echo "cairn: $("$cairn" --version)${base:+, base: $("$base" --version)}, restic: $(restic version | head -n 1)"
for n in $sizes; do run_size "$n" "$shm"; done
for n in $disk_sizes; do run_size "$n" "$work"; done

# Summary: times, peak RSS, ratios, and the RSS slope per file between the
# smallest and the largest tree.
python3 - "$results" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
get = lambda n, t, p: next((r for r in rows if r["files"] == n and r["tool"] == t and r["phase"] == p), None)
sizes = sorted({r["files"] for r in rows}, key=int)
cell = lambda r: (r["wall_s"], "%.1f" % (int(r["maxrss_kb"]) / 1024)) if r else ("-", "-")
print("| files | phase | cairn s | cairn MB | base s | base MB | restic s | restic MB | cairn/restic time | find s |")
print("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
for n in sizes:
    f = get(n, "find", "stat")
    for p in ("first", "unchanged", "restore", "check", "prune-dry-run"):
        c, b, r = get(n, "cairn", p), get(n, "base", p), get(n, "restic", p)
        if not c:
            continue
        ratio = "%.2f" % (float(c["wall_s"]) / float(r["wall_s"])) if r else "-"
        print("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            f"{int(n):,}", p, *cell(c), *cell(b), *cell(r), ratio, f["wall_s"] if f else "-"))
if len(sizes) > 1:
    a, b = sizes[0], sizes[-1]
    for t in ("cairn", "base", "restic"):
        for p in ("first", "unchanged", "restore"):
            x, y = get(a, t, p), get(b, t, p)
            if x and y:
                slope = (int(y["maxrss_kb"]) - int(x["maxrss_kb"])) * 1024 / (int(b) - int(a))
                print(f"{t} {p}: peak RSS slope {int(a):,} -> {int(b):,} files: {slope:.1f} bytes/file")
PY
echo "results: $results"
