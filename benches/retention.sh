#!/usr/bin/env bash
# The Object Lock retention step on a repository of N objects (default
# 100,000), on moto's S3 server (tests/moto/aws_rules.py) (a test double of AWS: the time says how
# cairn batches and overlaps requests, not how fast AWS is).
#
# A repository is made with `cairn init --immutable 30d`, then N small
# objects are stored under data/ with the retention cairn gives a new
# object (compliance, now + 30 days + the 14-day margin). Measured:
#   1. `retention extend --dry-run` right away: a listing, nothing due;
#   2. `retention extend --at now+10d`: every object is due (its lock ends
#      within 30 + 7 days of then), so each gets one PutObjectRetention;
#   3. the same again: the pass is in the log, nothing is due.
# Requests are cairn's own count (listing pages, retention puts, the log);
# moto's log counts the HTTP requests it served, the same way for all.
# Usage: benches/retention.sh [CAIRN_BINARY]   (env: N=100000, CONCURRENCY=32)
set -euo pipefail
cairn=$(realpath "${1:-target/release/cairn}")
n=${N:-100000}
conc=${CONCURRENCY:-32}
work=$(mktemp -d "${TMPDIR:-/tmp}/cairn-retention-bench.XXXXXX")
trap 'kill $mpid 2>/dev/null || true; rm -rf "$work"' EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
# moto with the AWS rules it lacks (tests/moto/aws_rules.py); IAM is not enforced here.
python3 "$(dirname "$0")/../tests/moto/aws_rules.py" -H 127.0.0.1 -p "$port" > "$work/moto.log" 2>&1 & mpid=$!
until python3 -c "import socket; socket.create_connection(('127.0.0.1', $port))" 2>/dev/null; do sleep 0.2; done
export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench AWS_REGION=us-east-1
export CAIRN_S3_ENDPOINT="http://127.0.0.1:$port" CAIRN_REPO=s3://bench/repo CAIRN_PASSWORD=bench
export CAIRN_CACHE_DIR="$work/cache"
python3 - "$port" <<'PY'
import boto3, sys
s3 = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{sys.argv[1]}", region_name="us-east-1")
s3.create_bucket(Bucket="bench", ObjectLockEnabledForBucket=True)
PY
"$cairn" init --immutable 30d > /dev/null
echo "populating $n objects" >&2
python3 - "$port" "$n" <<'PY'
import boto3, botocore, datetime, hashlib, sys
from concurrent.futures import ThreadPoolExecutor
port, n = sys.argv[1], int(sys.argv[2])
s3 = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                  config=botocore.config.Config(max_pool_connections=32))
until = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0) + datetime.timedelta(days=44)
def put(i):
    h = hashlib.blake2b(str(i).encode(), digest_size=32).hexdigest()
    s3.put_object(Bucket="bench", Key=f"repo/data/{h[:2]}/{h}", Body=b"pack", ObjectLockMode="COMPLIANCE",
                  ObjectLockRetainUntilDate=until)
with ThreadPoolExecutor(32) as ex:
    list(ex.map(put, range(n)))
PY
served() { grep -c '" 20[04] -' "$work/moto.log" || true; }
measure() { # name args...
    local name=$1; shift
    local r0; r0=$(served)
    local t0; t0=$(date +%s.%N)
    local out; out=$("$cairn" --s3-concurrency "$conc" retention extend --json "$@")
    local t1; t1=$(date +%s.%N)
    local r1; r1=$(served)
    python3 - "$name" "$(echo "$t1 - $t0" | bc)" "$((r1 - r0))" "$out" <<'PY'
import json, sys
name, secs, served, out = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), json.loads(sys.argv[4])
r = out["report"]
print(f"| {name} | {r['objects']} | {r['extended']} | {secs:.1f} | {r['requests']} | {served} | {r['extended']/secs:.0f} |")
PY
}
echo "| pass | objects | extended | seconds | cairn requests | moto requests served | extended/s |"
echo "|---|---:|---:|---:|---:|---:|---:|"
measure "dry run, right after writing" --dry-run
later=$(date -u -d '+10 days' +%Y-%m-%dT%H:%M:%SZ)
measure "10 days on: everything due" --at "$later"
measure "same time again: nothing due" --at "$later"
