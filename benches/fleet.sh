#!/usr/bin/env bash
# The fleet benchmark (issue 14): HOSTS simulated hosts on a three-node
# Garage cluster on loopback (replication factor 3, one zone per node), each
# with its own `cairn evidence enroll` key, state directory and cache, and
# three policies (web, db, mail), back up DAYS days (one backup per policy
# per day, dated with `--time`) concurrently into two repositories (even
# hosts into fleet-a, odd hosts into fleet-b; each host talks to the S3 port
# of node host%3). Half-way, the admin revokes one host's key with
# `cairn evidence revoke` (that host carries on, as a compromised host
# would), and another host stops backing up for good.
#
# Drills cannot be back-dated: a drill has no `--time`, its record and its
# RPO are the real clock's, and the RPO it checks is the age of the
# policy's newest snapshot. So the weekly drills (simulated days 7, 14, 21,
# 28) run after the last day's backups, each restoring that week's
# snapshot (`--snapshot ID`); run during the simulated month, each would
# fail its RPO against a snapshot dated weeks before the real clock.
#
# Records are stamped with the real clock too (`--time` dates the snapshot
# only), so silence is judged in the run's real time: the report is made
# with --silent-after half the real time since the silent host stopped.
#
# Then, as the auditor (no password, no state database: the keys file the
# hosts' enrolment lines make, with the read keys), `cairn report --repo A
# --repo B --keys FILE` (JSON and HTML) and `cairn status` are timed with
# /usr/bin/time; the script fails unless the report names the silent host
# and the revoked host's records after its revocation, and the admin's key
# as an administrator's.
#
# Repositories are made with the tests' low KDF cost (--kdf-memory-kib
# 19456): every one of the ~4,000 commands derives the key once, and at the
# default cost key derivation, not the fleet, would be measured.
#
# Usage: benches/fleet.sh [CAIRN_BINARY]
#   env: HOSTS=40 DAYS=30 JOBS=8 (hosts' commands in flight) GARAGE=garage
#        KEEP=1 keeps the work directory (the reports) and stops Garage
set -euo pipefail
cairn=$(realpath "${1:-target/release/cairn}")
hosts=${HOSTS:-40}
days=${DAYS:-30}
jobs=${JOBS:-8}
garage=${GARAGE:-garage}
half=$((days / 2))
revoked=h07
silent=h12
[ "$hosts" -ge 13 ] || { echo "HOSTS must be at least 13 (h07 is revoked, h12 goes silent)" >&2; exit 2; }
work=$(mktemp -d "${TMPDIR:-/tmp}/cairn-fleet-bench.XXXXXX")
gpids=()
cleanup() {
    for p in "${gpids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if [ -n "${KEEP:-}" ]; then echo "kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
log() { echo "[$(date -u +%T)] $*" >&2; }
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# --- Three Garage nodes, replication factor 3 -----------------------------
secret=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
s3ports=()
for i in 0 1 2; do
    d="$work/garage$i"; mkdir -p "$d"
    s3=$(port); rpc=$(port); admin=$(port)
    s3ports+=("$s3")
    cat > "$d/garage.toml" <<TOML
metadata_dir = "$d/meta"
data_dir = "$d/data"
db_engine = "sqlite"
replication_factor = 3
rpc_bind_addr = "127.0.0.1:$rpc"
rpc_public_addr = "127.0.0.1:$rpc"
rpc_secret = "$secret"
[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:$s3"
[admin]
api_bind_addr = "127.0.0.1:$admin"
TOML
    RUST_LOG=warn "$garage" -c "$d/garage.toml" server > "$d/garage.log" 2>&1 &
    gpids+=($!)
done
G() { local n=$1; shift; "$garage" -c "$work/garage$n/garage.toml" "$@"; }
ids=()
for i in 0 1 2; do
    until id=$(G "$i" node id -q 2>/dev/null); do sleep 0.2; done
    ids+=("$id")
done
for i in 1 2; do until G 0 node connect "${ids[$i]}" >/dev/null 2>&1; do sleep 0.2; done; done
for i in 0 1 2; do
    until G 0 layout assign -z "dc$((i + 1))" -c 10G "${ids[$i]%%@*}" >/dev/null 2>&1; do sleep 0.2; done
done
G 0 layout apply --version 1 >/dev/null
until G 0 bucket create fleet >/dev/null 2>&1; do sleep 0.2; done
key=$(G 0 key create fleet)
export AWS_ACCESS_KEY_ID=$(echo "$key" | awk '/Key ID:/ {print $3}')
export AWS_SECRET_ACCESS_KEY=$(echo "$key" | awk '/Secret key:/ {print $3}')
export AWS_REGION=garage
G 0 bucket allow --read --write --owner fleet --key "$AWS_ACCESS_KEY_ID" >/dev/null
for p in "${s3ports[@]}"; do until (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; do sleep 0.2; done; done
log "load at the start: $(uptime)"
log "garage: 3 nodes, replication factor 3, S3 ports ${s3ports[*]}"

# --- Repositories, admin, hosts -------------------------------------------
export CAIRN_BENCH_PW=fleet-bench-password
repos=("s3://fleet/fleet-a" "s3://fleet/fleet-b")
export S3PORTS="${s3ports[*]}" REPOS="${repos[*]}"
# cairn as the admin or as a host: its own state, cache and S3 node.
as() { # who repo command...
    local who=$1 repo=$2; shift 2
    local n=0 ports
    read -ra ports <<< "$S3PORTS"
    [[ $who == h* ]] && n=$((10#${who#h} % 3))
    env -u CAIRN_PASSWORD_FILE -u CAIRN_PASSWORD_COMMAND CAIRN_PASSWORD="$CAIRN_BENCH_PW" CAIRN_REPO="$repo" \
        CAIRN_STATE_DIR="$work/$who/state" CAIRN_CACHE_DIR="$work/$who/cache" \
        CAIRN_S3_ENDPOINT="http://127.0.0.1:${ports[$n]}" "$cairn" "$@"
}
keys="$work/auditor-keys"
: > "$keys"
for r in "${repos[@]}"; do
    as admin "$r" init -q --kdf-memory-kib 19456 --chunk-sizes 16384,65536,262144 > /dev/null
    as admin "$r" evidence enroll --host admin -q > /dev/null
    echo "@reader $(as admin "$r" evidence reader-key 2> /dev/null)" >> "$keys"
done
as admin "${repos[0]}" evidence enroll --host admin --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["keys_line"])' >> "$keys"
host_repo() { local r; read -ra r <<< "$REPOS"; echo "${r[$((10#${1#h} % 2))]}"; }
python3 - "$work" "$hosts" <<'PY'
import os, random, sys
work, hosts = sys.argv[1], int(sys.argv[2])
for h in range(hosts):
    for p in ("web", "db", "mail"):
        d = f"{work}/h{h:02d}/src/{p}"
        os.makedirs(d, exist_ok=True)
        rnd = random.Random(f"{h}-{p}")
        with open(f"{d}/base", "wb") as f:
            f.write(rnd.randbytes(8192))
PY
for h in $(seq -f 'h%02g' 0 $((hosts - 1))); do
    mkdir -p "$work/$h/policies"
    for p in web db mail; do
        cat > "$work/$h/policies/$p.toml" <<TOML
name = "$p"
[source]
paths = ["$work/$h/src/$p"]
[repository]
url = "$(host_repo "$h")"
password_env = "CAIRN_BENCH_PW"
[objectives]
rpo = "26h"
rto = "1h"
TOML
    done
    # The line the host hands the auditor, through a channel other than the repository.
    as "$h" "$(host_repo "$h")" evidence enroll --host "$h" --json \
        | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["keys_line"]); print(d["enrollment"]["key_id"], file=open(sys.argv[1], "w"))' \
        "$work/$h/key_id" >> "$keys"
done
log "$hosts hosts enrolled into ${repos[*]}"

# --- DAYS days of backups, every host's day concurrently ------------------
t0=$(date -u -d '-2 hours' +%s)
host_day() { # host day: one backup per policy, dated on that simulated day
    local h=$1 d=$2 p i=0
    for p in web db mail; do
        local t
        t=$(date -u -d "@$((t0 - (days - d) * 86400 + 10#${h#h} * 60 + i * 10))" +%FT%TZ)
        as "$h" "$(host_repo "$h")" backup --policy "$p" --policies "$work/$h/policies" --host "$h" \
            --time "$t" --json -q > "$work/$h/backup-$p-$d.json"
        i=$((i + 1))
    done
}
export -f as host_repo host_day
export work cairn days t0 CAIRN_BENCH_PW
start=$(date +%s)
for d in $(seq 1 "$days"); do
    # Each day changes a seeded 2 KiB of every source.
    python3 - "$work" "$hosts" "$d" <<'PY'
import random, sys
work, hosts, day = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for h in range(hosts):
    for p in ("web", "db", "mail"):
        with open(f"{work}/h{h:02d}/src/{p}/day-{day:02d}", "wb") as f:
            f.write(random.Random(f"{h}-{p}-{day}").randbytes(2048))
PY
    active=$(seq -f 'h%02g' 0 $((hosts - 1)))
    [ "$d" -gt "$half" ] && active=$(echo "$active" | grep -vx "$silent")
    # shellcheck disable=SC2016
    echo "$active" | xargs -P "$jobs" -n 1 bash -c 'host_day "$1" '"$d" _ \
        || { log "day $d failed"; exit 1; }
    if [ "$d" -eq "$half" ]; then
        silent_stopped=$(date +%s)
        as admin "$(host_repo $revoked)" evidence revoke "$(cat "$work/$revoked/key_id")" \
            --reason "bench: $revoked compromised on day $half" -q > /dev/null
        log "day $d: revoked $revoked's key; $silent stops here"
    fi
    log "day $d of $days done"
done
backups_s=$(($(date +%s) - start))

# --- Weekly drills, at the real time (see the top) -----------------------
host_drills() {
    local h=$1 w p id
    for w in $(seq 7 7 "$days"); do
        for p in web db mail; do
            id=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["short_id"])' "$work/$h/backup-$p-$w.json")
            as "$h" "$(host_repo "$h")" drill --policy "$p" --policies "$work/$h/policies" --snapshot "$id" \
                --seed 14 -q > /dev/null
        done
    done
}
export -f host_drills
start=$(date +%s)
seq -f 'h%02g' 0 $((hosts - 1)) | grep -vx "$silent" | xargs -P "$jobs" -n 1 bash -c 'host_drills "$1"' _ \
    || { log "drills failed"; exit 1; }
drills_s=$(($(date +%s) - start))
log "backups ${backups_s}s, drills ${drills_s}s"

# --- The auditor: one report, one screen ----------------------------------
log "load before the report: $(uptime)"
silent_after=$((($(date +%s) - silent_stopped) / 2))s
auditor() {
    env -u CAIRN_PASSWORD -u CAIRN_REPO CAIRN_STATE_DIR="$work/auditor/state" CAIRN_CACHE_DIR="$work/auditor/cache" \
        CAIRN_S3_ENDPOINT="http://127.0.0.1:${s3ports[0]}" \
        /usr/bin/time -f '%e s %M kB' -o "$work/time-$1" "$cairn" --stats --repo "${repos[0]}" --repo "${repos[1]}" \
        "${@:2}" --keys "$keys" --silent-after "$silent_after" 2> "$work/stderr-$1" \
        || { cat "$work/stderr-$1" >&2; return 1; }
}
auditor report-json report --format json > "$work/report.json"
auditor report-html report --out "$work/report.html"
auditor status status --json > "$work/status.json"
fail() { echo "FAIL: $*" >&2; exit 1; }
python3 - "$work" "$hosts" "$silent" "$revoked" "$days" <<'PY' || fail "the report does not say what happened"
import json, sys
work, hosts, silent, revoked, days = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5])
r = json.load(open(f"{work}/report.json"))
names = [h["host"] for h in r["hosts"]]
assert len([n for n in names if n.startswith("h")]) == hosts, names
# Silent: the host that stopped; the revoked host too, since none of its
# records after the revocation counts. The admin's key, which signed only
# the revocation and backs up nothing, is an administrator's, no host.
expected_silent = sorted([silent, revoked])
assert r["evidence"]["silent_hosts"] == expected_silent, r["evidence"]["silent_hosts"]
assert r["evidence"]["admin_keys"] == ["admin"], r["evidence"]["admin_keys"]
assert "admin" not in names, names
after = [u for u in r["evidence"]["not_counted"] if u["reason"] == "revoked"]
assert after and all(u["host"] == revoked for u in after), after
# Every backup and drill of the revoked host after the revocation is named.
weeks = len(range(7, days + 1, 7))
assert len(after) == 3 * (days - days // 2) + 3 * weeks, (len(after), days, weeks)
s = json.load(open(f"{work}/status.json"))
assert s["silent"] == expected_silent, s["silent"]
assert s["admins"] == ["admin"], s["admins"]
print(f"report: {len(names)} hosts, silent {r['evidence']['silent_hosts']}, status silent {s['silent']}, "
      f"{len(after)} records of {revoked} after its revocation, status {r['status']}")
PY
grep -q "<span class=\"tag\">silent</span>" "$work/report.html" || fail "the HTML report marks no silent host"
grep -q "$silent" "$work/report.html" || fail "the HTML report does not name $silent"
grep -q "signed after the key was revoked" "$work/report.html" || fail "the HTML report names no revoked record"
echo "html: $(stat -c %s "$work/report.html") bytes"
for m in report-json report-html status; do
    echo "$m: $(cat "$work/time-$m"), $(grep -h '"requests"' "$work/stderr-$m" | tail -1)"
done
