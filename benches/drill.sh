#!/usr/bin/env bash
# A full restore drill versus copying and hashing the same tree.
#
# Usage:  benches/drill.sh [DATA_DIR]
#
# Compares, with hyperfine, on the same data set:
#   drill      cairn drill --policy bench --full --target TARGET/drill
#              (open, select, restore, verify every file against the
#              snapshot, remove the scratch copy, write the three reports,
#              record the drill), from a local repository
#   cp+b3sum   cp -a DATA TARGET/copy, then b3sum of every file of the copy
#              (find -print0 | xargs -0 b3sum); the copy is removed in the
#              untimed --prepare step
# Target: the drill takes less than 2x the cp+b3sum time.
#
# Environment (defaults in brackets):
#   BENCH_DATA   tree to back up; the first argument wins  [$BENCH_WORK/linux]
#                When the default is used and it does not exist yet, the
#                newest /usr/src/linux-source-*.tar.xz is unpacked there.
#   CAIRN_BIN    cairn binary                               [target/release/cairn]
#   BENCH_WORK   repository, state, policy, results         [${TMPDIR:-/tmp}/cairn-drill-bench]
#   TARGET_DIR   where restores and copies go               [/dev/shm/cairn-drill-bench-$$]
#                (tmpfs by default: on ext4, creating files right after a
#                large tree was deleted is slow for minutes, which would
#                punish whichever command runs after the other's cleanup;
#                see docs/BENCHMARKS.md)
#   RUNS         measured runs per command                  [5]
#   THREADS      cairn --threads                            [nproc]
#
# Needs: hyperfine, b3sum (apt-get install hyperfine b3sum), GNU time.
# Output: $BENCH_WORK/results/{hyperfine.json,hyperfine.md,env.txt,phases.tsv,report.json}

set -euo pipefail

BENCH_WORK=${BENCH_WORK:-${TMPDIR:-/tmp}/cairn-drill-bench}
BENCH_DATA=${1:-${BENCH_DATA:-$BENCH_WORK/linux}}
CAIRN_BIN=${CAIRN_BIN:-target/release/cairn}
TARGET_DIR=${TARGET_DIR:-/dev/shm/cairn-drill-bench-$$}
RUNS=${RUNS:-5}
THREADS=${THREADS:-$(nproc)}

die() { echo "drill.sh: $*" >&2; exit 1; }
say() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

command -v hyperfine >/dev/null || die "hyperfine is missing (apt-get install hyperfine)"
command -v b3sum >/dev/null || die "b3sum is missing (apt-get install b3sum)"
[ -x "$CAIRN_BIN" ] || die "no cairn binary at $CAIRN_BIN: build it with cargo build --release, or set CAIRN_BIN"
CAIRN_BIN=$(realpath "$CAIRN_BIN")

mkdir -p "$BENCH_WORK"
BENCH_WORK=$(realpath "$BENCH_WORK")
if [ ! -d "$BENCH_DATA" ]; then
    [ "$BENCH_DATA" = "$BENCH_WORK/linux" ] || die "no data directory $BENCH_DATA"
    tarball=$(ls /usr/src/linux-source-*.tar.xz 2>/dev/null | sort -V | tail -n 1 || true)
    [ -n "$tarball" ] || die "no data directory given and no /usr/src/linux-source-*.tar.xz to unpack"
    say "unpacking $tarball into $BENCH_DATA"
    mkdir -p "$BENCH_WORK/unpack.$$"
    tar -C "$BENCH_WORK/unpack.$$" -xJf "$tarball"
    mv "$BENCH_WORK/unpack.$$"/* "$BENCH_DATA"
    rmdir "$BENCH_WORK/unpack.$$"
fi
DATA=$(realpath "$BENCH_DATA")

REPO="$BENCH_WORK/repo"
STATE="$BENCH_WORK/state"
POLICIES="$BENCH_WORK/policies"
RES="$BENCH_WORK/results"
rm -rf "$REPO" "$STATE" "$POLICIES" "$RES"
mkdir -p "$POLICIES" "$RES" "$TARGET_DIR"
TARGET_DIR=$(realpath "$TARGET_DIR")
trap 'rm -rf "$TARGET_DIR" "$REPO"' EXIT

export CAIRN_PASSWORD=cairn-bench
cat > "$POLICIES/bench.toml" <<EOF
name = "bench"
[source]
paths = ["$DATA"]
[repository]
url = "$REPO"
password_env = "CAIRN_PASSWORD"
EOF

data_bytes=$(du -sb "$DATA" | cut -f1)
data_files=$(find "$DATA" -type f | wc -l)
{
    echo "date: $(date -Is)"
    echo "data: $DATA"
    echo "data_bytes: $data_bytes"
    echo "data_files: $data_files"
    echo "target_dir: $TARGET_DIR ($(stat -f -c %T "$TARGET_DIR"))"
    echo "runs: $RUNS"
    echo "threads: $THREADS"
    echo "nproc: $(nproc)"
    echo "kernel: $(uname -r)"
    echo "--- lscpu"; lscpu | head -n 20
    echo "--- free -b"; free -b
    echo "--- versions"
    echo "cairn: $("$CAIRN_BIN" --version 2>&1)"
    echo "b3sum: $(b3sum --version 2>&1)"
    echo "cp: $(cp --version | head -n 1)"
    echo "hyperfine: $(hyperfine --version)"
} > "$RES/env.txt"

say "data: $DATA ($data_bytes bytes, $data_files files); targets in $TARGET_DIR"
"$CAIRN_BIN" -r "$REPO" init > "$RES/init.log" 2>&1
say "backing up"
"$CAIRN_BIN" --threads "$THREADS" backup --policy bench --policies "$POLICIES" > "$RES/backup.log" 2>&1
say "warming the page cache (data and repository)"
tar -C "$DATA" -cf - . | cat > /dev/null
tar -C "$REPO" -cf - . | cat > /dev/null

drill_cmd="$CAIRN_BIN --threads $THREADS -q drill --policy bench --policies $POLICIES --state $STATE --full --seed 1 --target $TARGET_DIR/drill"
copy_cmd="cp -a '$DATA' '$TARGET_DIR/copy' && find '$TARGET_DIR/copy' -type f -print0 | xargs -0 b3sum > /dev/null"

hyperfine --runs "$RUNS" --warmup 1 \
    --prepare "rm -rf '$TARGET_DIR/copy' '$TARGET_DIR/drill'; sync" \
    --export-json "$RES/hyperfine.json" --export-markdown "$RES/hyperfine.md" \
    -n drill "$drill_cmd" \
    -n "cp+b3sum" "$copy_cmd"

# The phases of the last drill, from its report.
last=$(ls -d "$STATE"/reports/*/ | sort | tail -n 1)
cp "$last/report.json" "$RES/report.json"
python3 - "$RES/report.json" > "$RES/phases.tsv" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
print("phase\tduration_s\tin_rto")
for p in r["phases"]:
    print(f'{p["name"]}\t{p["duration_s"]:.3f}\t{p["in_rto"]}')
print(f'rto_measured\t{r["rto"]["measured_s"]:.3f}\t')
print(f'first_byte\t{r["first_byte_s"]:.3f}\t')
print(f'verdict\t{r["verdict"]["result"]}\t')
print(f'files_checked\t{r["integrity"]["files_checked"]}\t')
print(f'bytes_checked\t{r["integrity"]["bytes_checked"]}\t')
EOF

ratio=$(python3 -c '
import json, sys
r = {x["command"]: x for x in json.load(open(sys.argv[1]))["results"]}
print("%.2f" % (r["drill"]["median"] / r["cp+b3sum"]["median"]))' "$RES/hyperfine.json")
cat "$RES/hyperfine.md"
echo
column -t -s $'\t' "$RES/phases.tsv"
echo
echo "drill / (cp+b3sum), medians: $ratio (target: < 2)"
