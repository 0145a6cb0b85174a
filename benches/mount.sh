#!/usr/bin/env bash
# Reading one large file through `cairn mount` versus restoring it.
#
# Usage:  benches/mount.sh [CAIRN]
#
# One incompressible file (SIZE_MIB, 1 GiB by default) is backed up to a
# local repository; then, alternately, run by run:
#   restore   cairn restore latest --target SHM/restore-N (tmpfs)
#   cat       cat MOUNT/latest/…/file > /dev/null
#   dd        dd if=MOUNT/latest/…/file of=/dev/null bs=1M
# Every read through the mount gets a fresh mount (the kernel keeps the
# pages of a file read once, and cairn its cache of decrypted chunks), and
# every restore a fresh target. The mount is up, and the file looked up,
# before the clock starts; the index loads in the background as it mounts.
# The target: the mount reads at no less than half of restore's throughput.
#
# Environment (defaults in brackets):
#   CAIRN      cairn binary; the first argument wins        [target/release/cairn]
#   SIZE_MIB   size of the file                             [1024]
#   RUNS       rounds of restore, cat and dd                [5]
#   SHM        tmpfs directory for the file, the repository,
#              the restores and the mount point             [/dev/shm/cairn-mount-bench-$$]
#   OUT        results (TSV: run, step, wall, then cairn's
#              user and sys CPU and peak RSS (for cat and dd,
#              the mount process's), MB/s, 1-minute load)  [${TMPDIR:-/tmp}/cairn-mount-bench.tsv]
#   CACHE_MIB  cairn mount --cache-mib                      [cairn's default]
#
# Needs fusermount3 (Debian: fuse3), /dev/fuse and GNU time. Everything
# under SHM goes on exit, and the mount is unmounted (fusermount3 -u) even
# when the script is interrupted.
set -euo pipefail

cairn=$(realpath "${1:-${CAIRN:-target/release/cairn}}")
size_mib=${SIZE_MIB:-1024}
runs=${RUNS:-5}
shm=${SHM:-/dev/shm/cairn-mount-bench-$$}
out=${OUT:-${TMPDIR:-/tmp}/cairn-mount-bench.tsv}
cache=${CACHE_MIB:+--cache-mib $CACHE_MIB}

die() { echo "mount.sh: $*" >&2; exit 1; }
[ -x "$cairn" ] || die "no cairn binary at $cairn (cargo build --release, or pass one)"
command -v fusermount3 > /dev/null || die "fusermount3 is missing (apt-get install fuse3)"
[ -e /dev/fuse ] || die "/dev/fuse does not exist"

export CAIRN_REPO=$shm/repo CAIRN_PASSWORD=bench
mnt=$shm/mnt
mount_pid=
unmount() {
    if [ -n "$mount_pid" ]; then
        fusermount3 -u "$mnt" 2> /dev/null || fusermount3 -uz "$mnt" 2> /dev/null || true
        wait "$mount_pid" 2> /dev/null || true
        mount_pid=
    fi
}
cleanup() {
    unmount
    rm -rf "$shm"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$shm/data" "$mnt"
file=$shm/data/big
head -c "$((size_mib << 20))" /dev/urandom > "$file"
"$cairn" init -q --kdf-memory-kib 19456 > /dev/null
"$cairn" -q backup "$shm/data" > /dev/null
bytes=$(stat -c %s "$file")
inside=latest${file}

mount_fresh() {
    "$cairn" -q mount $cache "$mnt" &
    mount_pid=$!
    # The mount is ready when the snapshot's directory can be looked into.
    for _ in $(seq 1 600); do
        if mountpoint -q "$mnt" && [ -e "$mnt/$inside" ]; then return 0; fi
        kill -0 "$mount_pid" 2> /dev/null || die "cairn mount exited"
        sleep 0.05
    done
    die "the mount did not come up"
}

printf 'run\tstep\twall_s\tuser_s\tsys_s\tmaxrss_kb\tMB_per_s\tload1\n' > "$out"
timed() { # run step cmd...
    local run=$1 step=$2 load t
    shift 2
    load=$(cut -d' ' -f1 /proc/loadavg)
    /usr/bin/time -f '%e %U %S %M' -o "$shm/time" "$@" > /dev/null 2> "$shm/log" || { cat "$shm/log" >&2; exit 1; }
    read -r wall user sys rss < "$shm/time"
    if [ "$step" != restore ]; then
        # The reader's figures are cat's or dd's; cairn's are the mount process's.
        user=$(awk '{print $14/100}' "/proc/$mount_pid/stat")
        sys=$(awk '{print $15/100}' "/proc/$mount_pid/stat")
        rss=$(awk '/VmHWM/ {print $2}' "/proc/$mount_pid/status")
    fi
    t=$(awk -v b="$bytes" -v w="$wall" 'BEGIN { printf "%.0f", b / 1e6 / (w > 0 ? w : 0.01) }')
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$run" "$step" "$wall" "$user" "$sys" "$rss" "$t" "$load" >> "$out"
}

for run in $(seq 1 "$runs"); do
    # Rotate the order, so that none always goes first.
    case $((run % 3)) in
        1) order="restore cat dd" ;;
        2) order="cat dd restore" ;;
        0) order="dd restore cat" ;;
    esac
    for step in $order; do
        case $step in
            restore)
                timed "$run" restore "$cairn" -q restore latest --target "$shm/restore"
                cmp -s "$file" "$shm/restore$file" || die "the restored file differs"
                rm -rf "$shm/restore"
                ;;
            cat)
                mount_fresh
                timed "$run" cat sh -c 'cat "$1" > /dev/null' cat "$mnt/$inside"
                if [ "$run" = 1 ]; then cmp -s "$file" "$mnt/$inside" || die "the file read through the mount differs"; fi
                unmount
                ;;
            dd)
                mount_fresh
                timed "$run" dd dd if="$mnt/$inside" of=/dev/null bs=1M
                unmount
                ;;
        esac
    done
done

column -t "$out"
# Medians of each step, and the mount's ratio to restore.
median() { # step
    awk -F'\t' -v s="$1" 'NR > 1 && $2 == s { print $7 }' "$out" | sort -n |
        awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}
r=$(median restore) c=$(median cat) d=$(median dd)
echo "median MB/s: restore $r, cat $c, dd $d"
awk -v r="$r" -v c="$c" -v d="$d" 'BEGIN { printf "mount/restore: cat %.2f, dd %.2f (target: 0.5 or more)\n", c / r, d / r }'
