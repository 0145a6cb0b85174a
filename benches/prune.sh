#!/usr/bin/env bash
# Prune at scale: a repository of more than a million chunks (synthetic
# random data cut into 256-byte average chunks), three snapshots, two of
# them forgotten, then `prune --dry-run` and `prune`, timed with
# /usr/bin/time -v. Usage: benches/prune.sh [CAIRN_BINARY] [WORK_DIR]
set -euo pipefail
cairn=${1:-target/release/cairn}
work=${2:-$(mktemp -d "${TMPDIR:-/tmp}/cairn-prune-bench.XXXXXX")}
export CAIRN_PASSWORD=bench
repo="$work/repo"; src="$work/src"
rm -rf "$repo" "$src"; mkdir -p "$src"
for i in $(seq 1 256); do head -c 1048576 /dev/urandom > "$src/f$i"; done
"$cairn" -r "$repo" init --chunk-sizes 64,256,1024 -q >/dev/null
"$cairn" -r "$repo" backup "$src" -q >/dev/null
for i in $(seq 257 330); do head -c 1048576 /dev/urandom > "$src/f$i"; done
"$cairn" -r "$repo" backup "$src" -q >/dev/null
for i in $(seq 1 128); do rm "$src/f$i"; done
"$cairn" -r "$repo" backup "$src" -q >/dev/null
# Forget all but the newest snapshot.
ls -t "$repo/snapshots" | tail -n +2 | while read -r s; do rm "$repo/snapshots/$s"; done
echo "packs: $(find "$repo/data" -type f | wc -l), $(du -sb "$repo/data" | cut -f1) bytes"
/usr/bin/time -v "$cairn" -r "$repo" prune --dry-run --json > "$work/dry.json" 2> "$work/dry.time"
/usr/bin/time -v "$cairn" -r "$repo" prune --json > "$work/prune.json" 2> "$work/prune.time"
python3 - "$work" <<'PY'
import json, re, sys
w = sys.argv[1]
def t(f):
    s = open(f"{w}/{f}").read()
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", s).group(1)
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", s).group(1))
    return wall, rss // 1024
p = json.load(open(f"{w}/dry.json"))["plan"]
r = json.load(open(f"{w}/prune.json"))["report"]
print(f"blobs indexed: {p['index_blobs']}, used: {p['used_blobs']}")
print(f"in-memory index: {p['index_memory_bytes']} bytes = {p['index_memory_bytes']/p['index_blobs']:.1f} bytes/blob")
print("prune --dry-run: wall %s, peak RSS %d MiB" % t("dry.time"))
print("prune:           wall %s, peak RSS %d MiB" % t("prune.time"))
print(f"report: {r}")
PY
"$cairn" -r "$repo" check -q && echo "check: ok"
