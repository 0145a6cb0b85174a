#!/usr/bin/env bash
# cairn and restic against the same single-node Garage on loopback.
# Backup, unchanged backup and restore (to tmpfs) of a data directory,
# medians of RUNS runs; S3 requests are counted on Garage's side
# (api_s3_request_counter on its metrics endpoint), the same way for both.
# With BASELINE=OTHER_CAIRN_BINARY, that build is measured too, in the same
# runs (as "baseline"), so a change is compared with the build before it
# under the same load.
# Usage: benches/s3.sh DATA_DIR [CAIRN_BINARY]   (env: RUNS=3, GARAGE=garage, BASELINE=)
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
cairn_runs() { # name binary run
    local name=$1 bin=$2 p="$1-r$3"
    measure "$name" init "$bin" -r "s3://bench/$p" init
    measure "$name" backup1 "$bin" -r "s3://bench/$p" backup "$data"
    measure "$name" backup2 "$bin" -r "s3://bench/$p" backup "$data"
    rm -rf "$shm/t"; measure "$name" restore "$bin" -r "s3://bench/$p" restore latest --target "$shm/t"
    rm -rf "$shm/t" "$CAIRN_CACHE_DIR"
}
tools="cairn restic"
[ -n "${BASELINE:-}" ] && tools="cairn baseline restic"
for run in $(seq 1 "$runs"); do
    p="r$run"
    cairn_runs cairn "$cairn" "$run"
    [ -n "${BASELINE:-}" ] && cairn_runs baseline "$(realpath "$BASELINE")" "$run"
    export RESTIC_REPOSITORY="s3:http://127.0.0.1:$s3/bench/restic-$p"
    measure restic init restic init
    measure restic backup1 restic backup "$data"
    measure restic backup2 restic backup "$data"
    rm -rf "$shm/t"; measure restic restore restic restore latest --target "$shm/t"
    rm -rf "$shm/t" ~/.cache/restic
done
python3 - "$results" "$bytes" $tools <<'PY'
import sys, statistics as st, collections
rows = [l.split("\t") for l in open(sys.argv[1]).read().split("\n") if l]
gb = int(sys.argv[2]) / 1e9
tools = sys.argv[3:]
d = collections.defaultdict(list)
for tool, phase, secs, reqs in rows:
    d[(tool, phase)].append((float(secs), int(reqs)))
print(f"data: {gb:.2f} GB; medians of {len(d[('cairn','backup1')])} runs\n")
print("| phase | " + " | ".join(f"{t} s" for t in tools) + " | " + " | ".join(f"{t} MB/s" for t in tools)
      + " | cairn/restic throughput | " + " | ".join(f"{t} requests" for t in tools) + " |")
print("|---|" + "---:|" * (3 * len(tools) + 1))
for ph in ["backup1", "backup2", "restore"]:
    secs = {t: st.median(x[0] for x in d[(t, ph)]) for t in tools}
    reqs = {t: st.median(x[1] for x in d[(t, ph)]) for t in tools}
    print(f"| {ph} | " + " | ".join(f"{secs[t]:.2f}" for t in tools) + " | "
          + " | ".join(f"{gb*1000/secs[t]:.0f}" for t in tools)
          + f" | {secs['restic']/secs['cairn']:.2f}x | " + " | ".join(f"{reqs[t]:.0f}" for t in tools) + " |")
if "baseline" in tools:
    for ph in ["backup1", "backup2", "restore"]:
        c = st.median(x[0] for x in d[("cairn", ph)]); b = st.median(x[0] for x in d[("baseline", ph)])
        print(f"\n{ph}: cairn takes {100*(c/b-1):+.1f}% of the baseline's time", end="")
    print()
for tool in tools:
    q = st.median(x[1] for x in d[(tool, "backup1")])
    print(f"\n{tool}: {q/gb:.0f} S3 requests per GB stored (first backup)")
PY
