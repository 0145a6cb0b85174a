#!/usr/bin/env bash
# cairn and restic against the same single-node Garage on loopback.
# Backup, unchanged backup and restore (to tmpfs) of a data directory,
# medians of RUNS runs; S3 requests are counted on Garage's side
# (api_s3_request_counter on its metrics endpoint), the same way for both.
# Usage: benches/s3.sh DATA_DIR [CAIRN_BINARY]   (env: RUNS=3, GARAGE=garage)
set -euo pipefail
data=$(realpath "${1:?usage: benches/s3.sh DATA_DIR [CAIRN_BINARY]}")
cairn=$(realpath "${2:-target/release/cairn}")
runs=${RUNS:-3}
garage=${GARAGE:-garage}
work=$(mktemp -d "${TMPDIR:-/tmp}/cairn-s3-bench.XXXXXX")
shm=$(mktemp -d /dev/shm/cairn-s3-bench.XXXXXX)
trap 'kill $gpid 2>/dev/null || true; rm -rf "$work" "$shm"' EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
s3=$(port); rpc=$(port); admin=$(port)
cat > "$work/garage.toml" <<TOML
metadata_dir = "$work/meta"
data_dir = "$work/data"
db_engine = "sqlite"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:$rpc"
rpc_public_addr = "127.0.0.1:$rpc"
rpc_secret = "$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"
[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:$s3"
[admin]
api_bind_addr = "127.0.0.1:$admin"
TOML
G() { "$garage" -c "$work/garage.toml" "$@"; }
"$garage" -c "$work/garage.toml" server > "$work/garage.log" 2>&1 & gpid=$!  # not via G: a function would background a subshell
until G node id -q >/dev/null 2>&1; do sleep 0.2; done
G layout assign -z dc1 -c 100G "$(G node id -q | cut -d@ -f1)" >/dev/null
G layout apply --version 1 >/dev/null
G bucket create bench >/dev/null
key=$(G key create bench)
export AWS_ACCESS_KEY_ID=$(echo "$key" | awk '/Key ID:/ {print $3}')
export AWS_SECRET_ACCESS_KEY=$(echo "$key" | awk '/Secret key:/ {print $3}')
export AWS_REGION=garage AWS_DEFAULT_REGION=garage
G bucket allow --read --write --owner bench --key "$AWS_ACCESS_KEY_ID" >/dev/null
export CAIRN_PASSWORD=bench RESTIC_PASSWORD=bench CAIRN_CACHE_DIR="$work/cairn-cache"
export CAIRN_S3_ENDPOINT="http://127.0.0.1:$s3"
requests() { curl -s "http://127.0.0.1:$admin/metrics" | awk '/^api_s3_request_counter/ {s+=$2} END {print s+0}'; }
bytes=$(du -sb "$data" | cut -f1)
# Warm the page cache (GNU tar reads no contents when writing to /dev/null).
tar -C "$data" -cf - . | cat > /dev/null
results="$work/results.tsv"
measure() { # tool phase command...
    local tool=$1 phase=$2; shift 2
    local r0; r0=$(requests)
    local t0; t0=$(date +%s.%N)
    "$@" > /dev/null 2> "$work/last.err" || { cat "$work/last.err" >&2; exit 1; }
    local t1; t1=$(date +%s.%N)
    echo -e "$tool\t$phase\t$(echo "$t1 - $t0" | bc)\t$(( $(requests) - r0 ))" >> "$results"
}
for run in $(seq 1 "$runs"); do
    p="r$run"
    measure cairn init "$cairn" -r "s3://bench/cairn-$p" init
    measure cairn backup1 "$cairn" -r "s3://bench/cairn-$p" backup "$data"
    measure cairn backup2 "$cairn" -r "s3://bench/cairn-$p" backup "$data"
    rm -rf "$shm/t"; measure cairn restore "$cairn" -r "s3://bench/cairn-$p" restore latest --target "$shm/t"
    rm -rf "$shm/t" "$CAIRN_CACHE_DIR"
    export RESTIC_REPOSITORY="s3:http://127.0.0.1:$s3/bench/restic-$p"
    measure restic init restic init
    measure restic backup1 restic backup "$data"
    measure restic backup2 restic backup "$data"
    rm -rf "$shm/t"; measure restic restore restic restore latest --target "$shm/t"
    rm -rf "$shm/t" ~/.cache/restic
done
python3 - "$results" "$bytes" <<'PY'
import sys, statistics as st, collections
rows = [l.split("\t") for l in open(sys.argv[1]).read().split("\n") if l]
gb = int(sys.argv[2]) / 1e9
d = collections.defaultdict(list)
for tool, phase, secs, reqs in rows:
    d[(tool, phase)].append((float(secs), int(reqs)))
print(f"data: {gb:.2f} GB; medians of {len(d[('cairn','backup1')])} runs\n")
print("| phase | cairn s | restic s | cairn MB/s | restic MB/s | cairn/restic throughput | cairn requests | restic requests |")
print("|---|---:|---:|---:|---:|---:|---:|---:|")
for ph in ["backup1", "backup2", "restore"]:
    c = st.median(x[0] for x in d[("cairn", ph)]); r = st.median(x[0] for x in d[("restic", ph)])
    cq = st.median(x[1] for x in d[("cairn", ph)]); rq = st.median(x[1] for x in d[("restic", ph)])
    print(f"| {ph} | {c:.2f} | {r:.2f} | {gb*1000/c:.0f} | {gb*1000/r:.0f} | {r/c:.2f}x | {cq:.0f} | {rq:.0f} |")
for tool in ["cairn", "restic"]:
    q = st.median(x[1] for x in d[(tool, "backup1")])
    print(f"\n{tool}: {q/gb:.0f} S3 requests per GB stored (first backup)")
PY
