#!/usr/bin/env bash
# Compare cairn with restic and borgbackup on one directory tree.
#
# Usage:  benches/compare.sh [DATA_DIR]
#
# Everything is configured through the environment (defaults in brackets):
#   BENCH_DATA    tree to back up; the first argument wins     [$BENCH_WORK/linux]
#                 When the default is used and it does not exist yet, the
#                 newest /usr/src/linux-source-*.tar.xz (Debian package
#                 linux-source-X.Y) is unpacked there.
#   CAIRN_BIN     cairn binary                                  [cairn on PATH]
#   BENCH_WORK    work directory on the disk under test (repositories,
#                 disk restore targets, results)               [${TMPDIR:-/tmp}/cairn-bench]
#   BENCH_SHM     tmpfs directory for the tmpfs restores        [/dev/shm/cairn-bench-$$]
#   RUNS          repetitions; medians are reported             [3]
#   TOOLS         which tools to run                            ["cairn restic borg"]
#   LIMITS        also run the tar/zstd/find limits (1/0)       [1]
#   VERIFY        compare each tool's first restores with DATA (1/0) [1]
#   SUMMARY_ONLY  1: only rewrite results/summary.md from results/raw.tsv [0]
#   DISK_SETTLE   seconds to wait before the first measurement        [0]
#
# Needs: restic, borg, tar, zstd, GNU time (/usr/bin/time), GNU diff, awk.
# On Debian: apt-get install restic borgbackup zstd time linux-source-6.1
#
# Every run creates a fresh repository per tool and measures, in this order:
#   backup1    first backup into the fresh repository
#   size1      repository size after it (du -sb)
#   backup2    second backup of the unchanged tree
#   size2      repository size after it
#   rst_shm    restore of the latest snapshot into tmpfs
#   rst_disk   restore of the latest snapshot into BENCH_WORK (on disk)
#   rst_sync   the `sync` right after rst_disk (the write-back the restore left)
# and the limits (same data, same page cache state):
#   tar_zstd   tar -C DATA -cf - . | zstd -3 -T2 > /dev/null     (first backup)
#   walk       find DATA -printf '%s %T@ %i\n' > /dev/null         (unchanged backup)
#   tar_shm    tar -C DATA -cf - . | tar -C TMPFS -xf -            (restore to tmpfs)
#   tar_disk   tar -C DATA -cf - . | tar -C DISK -xf -             (restore to disk)
#   tar_sync   the `sync` right after tar_disk
# Each timed command runs under /usr/bin/time (wall, user, system, peak RSS).
# The page cache is warmed once with `tar -C DATA -cf - . | cat > /dev/null`
# (not `tar cf /dev/null`: GNU tar does not read file contents when the
# archive is /dev/null); `sync` runs (untimed) before each measurement.
# The order of the tools rotates from one run to the next. Besides the
# time, each row records the CPU seconds that other processes used while it
# ran (from /proc/stat) and the steal time, so that noise from other work on
# the machine is visible.
#
# Disk restore targets are all kept until the end (that takes one copy of
# DATA per tool and run in BENCH_WORK): on ext4 without a journal, creating
# files is many times slower for up to 6 minutes after a large tree was
# deleted (the inode allocator checks every recently freed inode, see
# recently_deleted() in fs/ext4/ialloc.c), so deleting one restore right
# before the next would measure that instead of the tool. For the same
# reason, do not delete large trees on that file system just before a run
# (DISK_SETTLE=seconds makes the script wait before it starts).
#
# Output: $BENCH_WORK/results/{raw.tsv,summary.md,env.txt,logs/}.
# Repositories and restore targets are removed at the end; DATA and the
# results are kept.

set -euo pipefail

BENCH_WORK=${BENCH_WORK:-${TMPDIR:-/tmp}/cairn-bench}
BENCH_DATA=${1:-${BENCH_DATA:-$BENCH_WORK/linux}}
BENCH_SHM=${BENCH_SHM:-/dev/shm/cairn-bench-$$}
CAIRN_BIN=${CAIRN_BIN:-$(command -v cairn || true)}
RUNS=${RUNS:-3}
TOOLS=${TOOLS:-"cairn restic borg"}
LIMITS=${LIMITS:-1}
VERIFY=${VERIFY:-1}

die() { echo "compare.sh: $*" >&2; exit 1; }
say() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

[ -x /usr/bin/time ] || die "GNU time (/usr/bin/time) is missing (apt-get install time)"
for t in $TOOLS; do
    case $t in
        cairn) [ -n "$CAIRN_BIN" ] && [ -x "$CAIRN_BIN" ] || die "no cairn binary: set CAIRN_BIN" ;;
        restic) command -v restic >/dev/null || die "restic is missing" ;;
        borg) command -v borg >/dev/null || die "borg is missing" ;;
        *) die "unknown tool $t" ;;
    esac
done
command -v zstd >/dev/null || die "zstd is missing"
CAIRN_BIN=$(realpath "$CAIRN_BIN" 2>/dev/null || echo "$CAIRN_BIN")

mkdir -p "$BENCH_WORK"
BENCH_WORK=$(realpath "$BENCH_WORK")

# --- the data set -----------------------------------------------------------
if [ ! -d "$BENCH_DATA" ]; then
    [ "$BENCH_DATA" = "$BENCH_WORK/linux" ] || die "no data directory $BENCH_DATA"
    tarball=$(ls /usr/src/linux-source-*.tar.xz 2>/dev/null | sort -V | tail -n 1 || true)
    [ -n "$tarball" ] || die "no data directory given and no /usr/src/linux-source-*.tar.xz to unpack"
    say "unpacking $tarball into $BENCH_DATA"
    tmp_unpack="$BENCH_WORK/unpack.$$"
    mkdir -p "$tmp_unpack"
    tar -C "$tmp_unpack" -xJf "$tarball"
    mv "$tmp_unpack"/* "$BENCH_DATA"
    rmdir "$tmp_unpack"
fi
DATA=$(realpath "$BENCH_DATA")

# --- summary ------------------------------------------------------------------
# median of column COL for TOOL/METRIC
median() { # TOOL METRIC COL
    awk -F'\t' -v t="$1" -v m="$2" -v c="$3" 'NR>1 && $2==t && $3==m && $c!="" {print $c}' "$RES/raw.tsv" |
        sort -g | awk '{v[NR]=$1} END{if(NR==0){print ""; exit} if(NR%2) print v[(NR+1)/2]; else print (v[NR/2]+v[NR/2+1])/2}'
}
sum_median() { # TOOL METRIC1 METRIC2 — median over runs of (wall1 + wall2)
    awk -F'\t' -v t="$1" -v a="$2" -v b="$3" 'NR>1 && $2==t && ($3==a||$3==b) {s[$1]+=$4} END{for(r in s) print s[r]}' "$RES/raw.tsv" |
        sort -g | awk '{v[NR]=$1} END{if(NR==0){print ""; exit} if(NR%2) print v[(NR+1)/2]; else print (v[NR/2]+v[NR/2+1])/2}'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{if(a==""||b==""||b==0) print "–"; else printf "%.2f", a/b}'; }
fmt() { [ -n "$1" ] && echo "$1" || echo "–"; }

write_summary() {
    runs_done=$(awk -F'\t' 'NR>1{print $1}' "$RES/raw.tsv" | sort -u | wc -l)
    {
        echo "Medians of $runs_done runs. Data: $DATA, $data_bytes bytes, $data_files files."
        echo
        echo "| metric | cairn | restic | borg | limit | cairn/restic |"
        echo "| --- | ---: | ---: | ---: | ---: | ---: |"
        row() { # LABEL METRIC COL LIMITMETRIC
            local c r b l
            c=$(median cairn "$2" "$3"); r=$(median restic "$2" "$3"); b=$(median borg "$2" "$3")
            l=""; [ -n "${4:-}" ] && l=$(median tar "$4" "$3")
            echo "| $1 | $(fmt "$c") | $(fmt "$r") | $(fmt "$b") | $(fmt "$l") | $(ratio "$c" "$r") |"
        }
        row "first backup, s" backup1 4 tar_zstd
        row "unchanged backup, s" backup2 4 walk
        row "restore to tmpfs, s" rst_shm 4 tar_shm
        row "restore to disk, s" rst_disk 4 tar_disk
        c=$(sum_median cairn rst_disk rst_sync); r=$(sum_median restic rst_disk rst_sync)
        b=$(sum_median borg rst_disk rst_sync); l=$(sum_median tar tar_disk tar_sync)
        echo "| restore to disk + sync, s | $(fmt "$c") | $(fmt "$r") | $(fmt "$b") | $(fmt "$l") | $(ratio "$c" "$r") |"
        row "first backup peak RSS, kB" backup1 7
        row "unchanged backup peak RSS, kB" backup2 7
        row "restore (tmpfs) peak RSS, kB" rst_shm 7
        row "restore (disk) peak RSS, kB" rst_disk 7
        row "repository size after first backup, bytes" size1 4
        row "repository size after second backup, bytes" size2 4
        row "first backup user CPU, s" backup1 5 tar_zstd
        row "first backup system CPU, s" backup1 6 tar_zstd
        row "restore to tmpfs user CPU, s" rst_shm 5 tar_shm
        row "restore to tmpfs system CPU, s" rst_shm 6 tar_shm
        echo
        echo "Limits: first backup ← \`tar | zstd -3 -T2 > /dev/null\`; unchanged backup ← \`find -printf\` metadata walk;"
        echo "restores ← \`tar | tar -x\` copy. CPU used by other processes during each measurement is in raw.tsv (others_cpu_s)."
        if [ -f "$RES/verify.txt" ]; then
            echo
            echo "Restore checks (run 1):"
            echo
            sed 's/^/- /' "$RES/verify.txt"
        fi
    } > "$RES/summary.md"
}

RES="$BENCH_WORK/results"
LOGS="$RES/logs"

if [ "${SUMMARY_ONLY:-0}" = 1 ]; then
    # Rewrite summary.md from an existing raw.tsv (e.g. after stopping a run early).
    [ -f "$RES/raw.tsv" ] || die "no $RES/raw.tsv"
    data_bytes=$(awk '/^data_bytes:/{print $2}' "$RES/env.txt")
    data_files=$(awk '/^data_files:/{print $2}' "$RES/env.txt")
    write_summary
    cat "$RES/summary.md"
    exit 0
fi

REPOS="$BENCH_WORK/repos"
DISK="$BENCH_WORK/restore"
rm -rf "$RES" "$REPOS" "$DISK"
mkdir -p "$LOGS" "$REPOS" "$DISK" "$BENCH_SHM"
BENCH_SHM=$(realpath "$BENCH_SHM")

cleanup() {
    rm -rf "$REPOS" "$DISK" "$BENCH_SHM" "$BENCH_WORK/restic-cache" "$BENCH_WORK/borg-home"
}
trap cleanup EXIT

export CAIRN_PASSWORD=cairn-bench
export RESTIC_PASSWORD=cairn-bench
export RESTIC_CACHE_DIR="$BENCH_WORK/restic-cache"
export BORG_PASSPHRASE=cairn-bench
export BORG_BASE_DIR="$BENCH_WORK/borg-home"
export BORG_DISPLAY_PASSPHRASE=no
export BORG_RELOCATED_REPO_ACCESS_IS_OK=yes

data_bytes=$(du -sb "$DATA" | cut -f1)
data_files=$(find "$DATA" -type f | wc -l)
data_entries=$(find "$DATA" | wc -l)

# Room: a tmpfs restore needs the data size in /dev/shm; the disk side needs
# the repositories (< data size each) and one restored copy.
shm_avail=$(df -B1 --output=avail "$BENCH_SHM" | tail -n 1)
work_avail=$(df -B1 --output=avail "$BENCH_WORK" | tail -n 1)
[ "$shm_avail" -gt $((data_bytes * 12 / 10)) ] || die "$BENCH_SHM has $shm_avail bytes free, need ~$((data_bytes * 12 / 10))"
n_targets=$(( ($(wc -w <<< "$TOOLS") + LIMITS) * RUNS ))
work_need=$(( data_bytes * (n_targets + 2) * 11 / 10 ))
[ "$work_avail" -gt "$work_need" ] || die "$BENCH_WORK has $work_avail bytes free, need ~$work_need (one restored copy per tool and run, kept until the end)"

# --- the machine ------------------------------------------------------------
{
    echo "date: $(date -Is)"
    echo "data: $DATA"
    echo "data_bytes: $data_bytes"
    echo "data_files: $data_files"
    echo "data_entries: $data_entries"
    echo "runs: $RUNS"
    echo "nproc: $(nproc)"
    echo "kernel: $(uname -r)"
    echo "--- lscpu"; lscpu | head -n 20
    echo "--- free -b"; free -b
    echo "--- df"; df -h "$DATA" "$BENCH_WORK" "$BENCH_SHM"
    echo "--- lsblk"; lsblk -o NAME,SIZE,ROTA,TYPE,MOUNTPOINT 2>/dev/null || true
    echo "--- versions"
    [ -n "$CAIRN_BIN" ] && echo "cairn: $("$CAIRN_BIN" --version 2>&1)"
    command -v restic >/dev/null && echo "restic: $(restic version 2>&1)"
    command -v borg >/dev/null && echo "borg: $(borg --version 2>&1)"
    echo "zstd: $(zstd --version 2>&1)"
    echo "tar: $(tar --version | head -n 1)"
} > "$RES/env.txt"

HZ=$(getconf CLK_TCK)
# busy and steal jiffies over all CPUs
cpu_jiffies() { awk '/^cpu /{print $2+$3+$4+$7+$8, $9}' /proc/stat; }

# measure RUN TOOL METRIC CMD...  — run CMD under /usr/bin/time, append a row.
printf 'run\ttool\tmetric\twall_s\tuser_s\tsys_s\tmaxrss_kb\tothers_cpu_s\tsteal_s\tload1\n' > "$RES/raw.tsv"
measure() {
    local run=$1 tool=$2 metric=$3; shift 3
    local tf="$LOGS/time.$run.$tool.$metric" log="$LOGS/$run.$tool.$metric.log"
    sync
    local b0 s0 b1 s1
    read -r b0 s0 < <(cpu_jiffies)
    if ! /usr/bin/time -f '%e %U %S %M' -o "$tf" "$@" > "$log" 2>&1; then
        cat "$log" >&2
        die "$tool $metric failed (run $run): $*"
    fi
    read -r b1 s1 < <(cpu_jiffies)
    local wall user sys rss
    read -r wall user sys rss < <(tail -n 1 "$tf")
    local others steal
    others=$(awk -v b="$((b1 - b0))" -v hz="$HZ" -v u="$user" -v s="$sys" 'BEGIN{o=b/hz-u-s; if(o<0)o=0; printf "%.2f", o}')
    steal=$(awk -v d="$((s1 - s0))" -v hz="$HZ" 'BEGIN{printf "%.2f", d/hz}')
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$run" "$tool" "$metric" "$wall" "$user" "$sys" "$rss" \
        "$others" "$steal" "$(cut -d' ' -f1 /proc/loadavg)" >> "$RES/raw.tsv"
    say "run $run $tool $metric: ${wall}s (user ${user}s sys ${sys}s, rss ${rss} kB, others ${others} cpu-s)"
}

size_row() { # RUN TOOL METRIC DIR
    local b; b=$(du -sb "$4" | cut -f1)
    printf '%s\t%s\t%s\t%s\t\t\t\t\t\t\n' "$1" "$2" "$3" "$b" >> "$RES/raw.tsv"
    say "run $1 $2 $3: $b bytes"
}

# the restored copy of DATA inside a restore target
restored() { # TOOL TARGET
    case $1 in
        tar) echo "$2" ;;
        *) echo "$2$DATA" ;;
    esac
}

listing() { # DIR → type, mode, size (files), mtime (s), link target of every entry
    (cd "$1" && find . -printf '%p\t%y\t%m\t%s\t%T@\t%l\n' |
        awk -F'\t' -v OFS='\t' '{sub(/\..*/, "", $5); if ($2 == "d") $4 = "-"; print}' | LC_ALL=C sort)
}

verify() { # RUN TOOL TARGET
    [ "$VERIFY" = 1 ] && [ "$1" = 1 ] || return 0
    local dir; dir=$(restored "$2" "$3")
    if ! diff -r --no-dereference -q "$DATA" "$dir" > "$LOGS/verify.$2.diff" 2>&1; then
        say "WARNING: $2 restore differs from the data in content, see $LOGS/verify.$2.diff"
        echo "$2: content differs" >> "$RES/verify.txt"
    else
        echo "$2: content identical" >> "$RES/verify.txt"
    fi
    if ! diff <(listing "$DATA") <(listing "$dir") > "$LOGS/verify.$2.meta" 2>&1; then
        echo "$2: metadata (type/mode/file size/mtime/link) differs on $(grep -c '^<' "$LOGS/verify.$2.meta") entries" >> "$RES/verify.txt"
    else
        echo "$2: metadata (type/mode/file size/mtime/link) identical" >> "$RES/verify.txt"
    fi
}

fresh() { rm -rf "$1"; mkdir -p "$1"; }

bench_tool() { # RUN TOOL
    local run=$1 tool=$2 repo="$REPOS/$2" shm="$BENCH_SHM/$2" disk="$DISK/$1.$2"
    rm -rf "$repo"
    case $tool in
        cairn)
            "$CAIRN_BIN" -r "$repo" init > "$LOGS/$run.cairn.init.log" 2>&1
            measure "$run" cairn backup1 "$CAIRN_BIN" -r "$repo" --json backup "$DATA"
            size_row "$run" cairn size1 "$repo"
            measure "$run" cairn backup2 "$CAIRN_BIN" -r "$repo" --json backup "$DATA"
            size_row "$run" cairn size2 "$repo"
            fresh "$shm"
            measure "$run" cairn rst_shm "$CAIRN_BIN" -r "$repo" --json restore latest --target "$shm"
            verify "$run" cairn "$shm"; rm -rf "$shm"
            fresh "$disk"
            measure "$run" cairn rst_disk "$CAIRN_BIN" -r "$repo" --json restore latest --target "$disk"
            measure "$run" cairn rst_sync sync
            ;;
        restic)
            rm -rf "$RESTIC_CACHE_DIR"
            restic -r "$repo" init > "$LOGS/$run.restic.init.log" 2>&1
            measure "$run" restic backup1 restic -r "$repo" backup "$DATA"
            size_row "$run" restic size1 "$repo"
            measure "$run" restic backup2 restic -r "$repo" backup "$DATA"
            size_row "$run" restic size2 "$repo"
            fresh "$shm"
            measure "$run" restic rst_shm restic -r "$repo" restore latest --target "$shm"
            verify "$run" restic "$shm"; rm -rf "$shm"
            fresh "$disk"
            measure "$run" restic rst_disk restic -r "$repo" restore latest --target "$disk"
            measure "$run" restic rst_sync sync
            ;;
        borg)
            rm -rf "$BORG_BASE_DIR"
            borg init -e repokey "$repo" > "$LOGS/$run.borg.init.log" 2>&1
            measure "$run" borg backup1 borg create --compression zstd,3 "$repo::first" "$DATA"
            size_row "$run" borg size1 "$repo"
            measure "$run" borg backup2 borg create --compression zstd,3 "$repo::second" "$DATA"
            size_row "$run" borg size2 "$repo"
            # borg extract writes into the current directory
            fresh "$shm"
            (cd "$shm" && measure "$run" borg rst_shm borg extract "$repo::second")
            verify "$run" borg "$shm"; rm -rf "$shm"
            fresh "$disk"
            (cd "$disk" && measure "$run" borg rst_disk borg extract "$repo::second")
            measure "$run" borg rst_sync sync
            ;;
    esac
    rm -rf "$repo"
    sync
}

bench_limits() { # RUN
    local run=$1 shm="$BENCH_SHM/tar" disk="$DISK/$1.tar"
    measure "$run" tar tar_zstd bash -c 'tar -C "$1" -cf - . | zstd -3 -T2 > /dev/null' _ "$DATA"
    measure "$run" tar walk bash -c 'find "$1" -printf "%s %T@ %i\n" > /dev/null' _ "$DATA"
    fresh "$shm"
    measure "$run" tar tar_shm bash -c 'tar -C "$1" -cf - . | tar -C "$2" -xf -' _ "$DATA" "$shm"
    verify "$run" tar "$shm"; rm -rf "$shm"
    fresh "$disk"
    measure "$run" tar tar_disk bash -c 'tar -C "$1" -cf - . | tar -C "$2" -xf -' _ "$DATA" "$disk"
    measure "$run" tar tar_sync sync
    sync
}

say "data: $DATA ($data_bytes bytes, $data_files files); work: $BENCH_WORK; tmpfs: $BENCH_SHM; runs: $RUNS"
say "warming the page cache"
tar -C "$DATA" -cf - . | cat > /dev/null
if [ "${DISK_SETTLE:-0}" -gt 0 ]; then
    say "waiting ${DISK_SETTLE}s (DISK_SETTLE)"
    sleep "$DISK_SETTLE"
fi

read -r -a tools <<< "$TOOLS"
[ "$LIMITS" = 1 ] && tools+=(tar)
n=${#tools[@]}
for run in $(seq 1 "$RUNS"); do
    for i in $(seq 0 $((n - 1))); do
        t=${tools[$(((i + run - 1) % n))]}
        if [ "$t" = tar ]; then bench_limits "$run"; else bench_tool "$run" "$t"; fi
    done
done

write_summary
say "done: $RES/summary.md"
cat "$RES/summary.md"
