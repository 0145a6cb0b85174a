#!/usr/bin/env bash
# cairn and restic against one single-node Garage on loopback, through
# benches/latency_proxy.rs, which adds a round-trip time to the proxied
# connections only (the host's loopback keeps its speed: no netem on lo).
#
# For each RTT and each S3 concurrency N: cairn's first backup, unchanged
# backup and restore (to tmpfs) with --s3-concurrency N, and restic's with
# -o s3.connections=N; restic also at its default. Every cell uses a fresh
# repository and a fresh cache. "direct" as an RTT measures cairn and
# restic without the proxy, to show what the proxy costs at 0 ms.
# Requests are counted on Garage's side (api_s3_request_counter).
# At the end, the metadata cache: `snapshots` run twice at the largest RTT,
# with cairn's --stats (requests by operation) for each.
#
# Usage: benches/s3_latency.sh CAIRN_BINARY DATA_PATH...
#   env: RTTS="direct 0 20 50"  CONCS="2 4 8 16 32 64"  RESTIC_CONCS=$CONCS
#        DIRECT_CONCS="8" (the settings measured without the proxy)
#        WINDOW=4194304 (bytes in flight per connection and direction)
#        GARAGE=garage
#        CAIRN_BASE=another cairn binary, measured beside CAIRN_BINARY in
#                   each cell ("base" in the tables; before/after in one run)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cairn=$(realpath "${1:?usage: benches/s3_latency.sh CAIRN_BINARY DATA_PATH...}")
shift
[ $# -gt 0 ] || { echo "usage: benches/s3_latency.sh CAIRN_BINARY DATA_PATH..." >&2; exit 2; }
data=()
for p in "$@"; do data+=("$(realpath "$p")"); done
rtts=${RTTS:-direct 0 20 50}
concs=${CONCS:-2 4 8 16 32 64}
restic_concs=${RESTIC_CONCS-$concs}
window=${WINDOW:-4194304}
garage=${GARAGE:-garage}
base=${CAIRN_BASE:+$(realpath "$CAIRN_BASE")}
work=$(mktemp -d "${TMPDIR:-/tmp}/cairn-s3-latency.XXXXXX")
shm=$(mktemp -d /dev/shm/cairn-s3-latency.XXXXXX)
gpid= ppid=
trap 'kill $gpid $ppid 2>/dev/null || true; rm -rf "$work" "$shm"' EXIT
rustc -O --edition 2021 -o "$work/latency_proxy" "$here/latency_proxy.rs"
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
"$garage" -c "$work/garage.toml" server > "$work/garage.log" 2>&1 & gpid=$!
until G node id -q >/dev/null 2>&1; do sleep 0.2; done
G layout assign -z dc1 -c 100G "$(G node id -q | cut -d@ -f1)" >/dev/null
G layout apply --version 1 >/dev/null
G bucket create bench >/dev/null
key=$(G key create bench)
export AWS_ACCESS_KEY_ID=$(echo "$key" | awk '/Key ID:/ {print $3}')
export AWS_SECRET_ACCESS_KEY=$(echo "$key" | awk '/Secret key:/ {print $3}')
export AWS_REGION=garage AWS_DEFAULT_REGION=garage
G bucket allow --read --write --owner bench --key "$AWS_ACCESS_KEY_ID" >/dev/null
export CAIRN_PASSWORD=bench RESTIC_PASSWORD=bench
requests() { curl -s "http://127.0.0.1:$admin/metrics" | awk '/^api_s3_request_counter/ {s+=$2} END {print s+0}'; }
bytes=$(du -scb "${data[@]}" | tail -1 | cut -f1)
files=$(find "${data[@]}" -type f | wc -l)
tar -cf - "${data[@]}" 2>/dev/null | cat > /dev/null # warm the page cache
results="$work/results.tsv"
measure() { # tool rtt conc phase command...
    local tool=$1 rtt=$2 conc=$3 phase=$4; shift 4
    local r0; r0=$(requests)
    /usr/bin/time -f '%e %M' -o "$work/time" "$@" > /dev/null 2> "$work/last.err" \
        || { cat "$work/last.err" "$work/time" >&2; exit 1; }
    read -r secs rss < <(tail -1 "$work/time")
    echo -e "$tool\t$rtt\t$conc\t$phase\t$secs\t$rss\t$(( $(requests) - r0 ))" >> "$results"
}
start_proxy() { # rtt
    if [ "$1" = direct ]; then endpoint="http://127.0.0.1:$s3"; return; fi
    coproc PROXY { exec "$work/latency_proxy" "127.0.0.1:$s3" "$1" "$window"; }
    ppid=$PROXY_PID
    # The proxy stands for the network: at the script's niceness on a busy
    # machine, its wake-ups come late and it becomes the bottleneck. It
    # uses little CPU; its threads inherit the main thread's niceness.
    renice -n 0 -p "$ppid" > /dev/null 2>&1 || true
    local p; read -r p <&"${PROXY[0]}"
    endpoint="http://127.0.0.1:$p"
}
stop_proxy() { [ -z "$ppid" ] || { kill "$ppid"; wait "$ppid" 2>/dev/null || true; ppid=; }; }
cairn_cell() { # rtt conc [tool binary]
    local tool=${3:-cairn} bin=${4:-$cairn}
    local repo="s3://bench/$tool-$1-$2"
    export CAIRN_S3_ENDPOINT=$endpoint CAIRN_CACHE_DIR="$work/cairn-cache"
    local c=("$bin" -r "$repo" --s3-concurrency "$2")
    "${c[@]}" init > /dev/null
    measure "$tool" "$1" "$2" backup1 "${c[@]}" backup "${data[@]}"
    measure "$tool" "$1" "$2" backup2 "${c[@]}" backup "${data[@]}"
    measure "$tool" "$1" "$2" restore "${c[@]}" restore latest --target "$shm/t"
    rm -rf "$shm/t" "$CAIRN_CACHE_DIR"
}
restic_cell() { # rtt conc|default
    export RESTIC_REPOSITORY="s3:$endpoint/bench/restic-$1-$2" RESTIC_CACHE_DIR="$work/restic-cache"
    local r=(restic)
    [ "$2" = default ] || r+=(-o "s3.connections=$2")
    "${r[@]}" init > /dev/null
    measure restic "$1" "$2" backup1 "${r[@]}" backup "${data[@]}"
    measure restic "$1" "$2" backup2 "${r[@]}" backup "${data[@]}"
    measure restic "$1" "$2" restore "${r[@]}" restore latest --target "$shm/t"
    rm -rf "$shm/t" "$RESTIC_CACHE_DIR"
}
echo "load before: $(uptime)"
for rtt in $rtts; do
    start_proxy "$rtt"
    if [ "$rtt" != direct ]; then
        t0=$(date +%s.%N); curl -s -o /dev/null "$endpoint/"; t1=$(date +%s.%N)
        echo "rtt $rtt ms: one request on a new connection took $(echo "($t1 - $t0) * 1000" | bc | cut -d. -f1) ms (expected about 2 x RTT)"
    fi
    cc=$concs rc=$restic_concs
    # Without the proxy, only the default setting: it shows the proxy's cost.
    [ "$rtt" = direct ] && cc=${DIRECT_CONCS:-8} rc=${DIRECT_CONCS:-8}
    for conc in $cc; do
        [ -z "$base" ] || cairn_cell "$rtt" "$conc" base "$base"
        cairn_cell "$rtt" "$conc"
    done
    restic_cell "$rtt" default
    for conc in $rc; do restic_cell "$rtt" "$conc"; done
    stop_proxy
done
echo "load after: $(uptime)"

# The metadata cache on a listing-heavy start: the second command's requests.
last=${rtts##* }
start_proxy "$last"
export CAIRN_S3_ENDPOINT=$endpoint CAIRN_CACHE_DIR="$work/cairn-cache"
repo=s3://bench/cairn-cache-check
"$cairn" -r "$repo" init > /dev/null
for i in 1 2 3; do "$cairn" -r "$repo" backup "${data[@]}" > /dev/null 2>&1; done
rm -rf "$CAIRN_CACHE_DIR"
echo
echo "metadata cache at rtt $last ms, 3 snapshots; requests by operation (cairn --stats):"
cache_run() { # label cairn-arguments...
    local label=$1; shift
    local t0; t0=$(date +%s.%N)
    "$cairn" -r "$repo" --stats "$@" > /dev/null 2> "$work/stats"
    local t1; t1=$(date +%s.%N)
    echo "$label: $(echo "$t1 - $t0" | bc) s: $(grep '"requests"' "$work/stats" | tail -1)"
}
cache_run "snapshots, empty cache" snapshots
cache_run "snapshots, second run" snapshots
cache_run "unchanged backup, cache warm" backup "${data[@]}"
cache_run "unchanged backup, --no-cache" --no-cache backup "${data[@]}"
stop_proxy

python3 - "$results" "$bytes" "$files" <<'PY'
import sys, collections
rows = [l.split("\t") for l in open(sys.argv[1]).read().split("\n") if l]
mb, files = int(sys.argv[2]) / 1e6, int(sys.argv[3])
d = {}
for tool, rtt, conc, phase, secs, rss, reqs in rows:
    d[(tool, rtt, conc, phase)] = (float(secs), int(rss) / 1024, int(reqs))
print(f"\ndata: {mb:.0f} MB in {files} files; one run per cell\n")
phases = ["backup1", "backup2", "restore"]
rtts = list(dict.fromkeys(r[1] for r in rows))
for tool in [t for t in ["base", "cairn", "restic"] if any(r[0] == t for r in rows)]:
    concs = sorted({r[2] for r in rows if r[0] == tool}, key=lambda c: -1 if c == "default" else int(c))
    print(f"\n{tool}: seconds (MB/s), peak RSS MB, requests\n")
    print("| RTT ms | N | " + " | ".join(f"{p} s (MB/s)" for p in phases) + " | "
          + " | ".join(f"{p} RSS MB" for p in phases) + " | backup1 requests |")
    print("|---|---:|" + "---:|" * (2 * len(phases) + 1))
    for rtt in rtts:
        for conc in concs:
            if (tool, rtt, conc, "backup1") not in d:
                continue
            c = [d[(tool, rtt, conc, p)] for p in phases]
            print(f"| {rtt} | {conc} | " + " | ".join(f"{x[0]:.2f} ({mb / x[0]:.0f})" for x in c)
                  + " | " + " | ".join(f"{x[1]:.0f}" for x in c) + f" | {c[0][2]} |")
    base = "0" if "0" in rtts else rtts[0]
    print(f"\n{tool}: time at each RTT over the time at RTT {base}, same N\n")
    print("| N | " + " | ".join(f"{p} {r}" for r in rtts if r != base for p in phases) + " |")
    print("|---:|" + "---:|" * (len(phases) * (len(rtts) - 1)))
    for conc in concs:
        if (tool, base, conc, "backup1") not in d:
            continue
        cells = []
        for r in rtts:
            if r == base:
                continue
            for p in phases:
                a, b = d.get((tool, r, conc, p)), d[(tool, base, conc, p)]
                cells.append(f"{a[0] / b[0]:.2f}" if a else "-")
        print(f"| {conc} | " + " | ".join(cells) + " |")
PY
