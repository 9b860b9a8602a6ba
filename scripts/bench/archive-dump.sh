#!/usr/bin/env bash
# archive-dump against its peers, side by side in one run:
#   - the shell job it replaces: curl -o x.zip URL && unzip x.zip && tar czf out.tgz dump.sql
#   - pigz -6 alone on the already-extracted dump (time and size)
#   - peak RSS of archive-dump with a 256 MiB dump and with a 1 GiB one
# The zip is served from 127.0.0.1 by python3 -m http.server. Each timing is the median of
# $RUNS runs (default 3), the three commands taking turns.
#
# Usage: scripts/bench/archive-dump.sh [DUMP_MIB]   (default 256)
set -euo pipefail
cd "$(dirname "$0")/../.."

MIB="${1:-256}"
RUNS="${RUNS:-3}"

apt() { if [ "$(id -u)" = 0 ]; then apt-get "$@"; else sudo apt-get "$@"; fi; }
need() {
  local program="$1" package="$2"
  if ! command -v "$program" >/dev/null 2>&1; then
    echo "installing $package for $program" >&2
    apt install -y -q "$package" >/dev/null || { apt update -q >/dev/null && apt install -y -q "$package" >/dev/null; }
  fi
}
need pigz pigz
need zip zip
need unzip unzip
need curl curl
need python3 python3
[ -x /usr/bin/time ] || need /usr/bin/time time

cargo build --release -q -p archive-dump
BIN="$PWD/target/release/archive-dump"
GEN="$PWD/scripts/bench/archive-dump/gen_dump.py"

work="$(mktemp -d)"
server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

mkdir -p "$work/www" "$work/data" "$work/out" "$work/shell"
echo "generating a ${MIB} MiB SQL dump and its zip..." >&2
python3 "$GEN" "$MIB" > "$work/data/dump.sql"
(cd "$work/data" && zip -q "$work/www/dump.zip" dump.sql)
# A 4x larger dump for the memory check: the same rows four times (far beyond gzip's window).
mkdir -p "$work/data/big"
for _ in 1 2 3 4; do cat "$work/data/dump.sql"; done > "$work/data/big/dump.sql"
(cd "$work/data/big" && zip -q "$work/www/big.zip" dump.sql)
rm "$work/data/big/dump.sql"

port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
python3 -m http.server --bind 127.0.0.1 --directory "$work/www" "$port" >/dev/null 2>&1 &
server_pid=$!
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.1; done
URL="http://127.0.0.1:$port/dump.zip"

# measure NAME COMMAND...: appends "seconds kib" to $work/NAME.times
measure() {
  local name="$1"; shift
  sync
  /usr/bin/time -f "%e %M" -o "$work/time.out" "$@" >/dev/null
  cat "$work/time.out" >> "$work/$name.times"
}

threads="$(nproc)"
for _ in $(seq "$RUNS"); do
  measure ours "$BIN" --url "$URL" --member dump.sql --out-dir "$work/out" --name ours.tgz --overwrite --level 6 -q
  measure shell bash -c "cd '$work/shell' && rm -f x.zip dump.sql out.tgz && curl -sS -o x.zip '$URL' && unzip -q x.zip && tar czf out.tgz dump.sql"
  measure pigz bash -c "pigz -6 -p $threads -c '$work/data/dump.sql' > '$work/pigz.gz'"
done
measure big "$BIN" --url "http://127.0.0.1:$port/big.zip" --member dump.sql --out-dir "$work/out" --name big.tgz --overwrite -q

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
secs() { cut -d' ' -f1 < "$work/$1.times" | median; }
peak() { cut -d' ' -f2 < "$work/$1.times" | sort -n | tail -1; }

ours="$(secs ours)"; shell="$(secs shell)"; pigz="$(secs pigz)"
ours_size="$(stat -c %s "$work/out/ours.tgz")"; pigz_size="$(stat -c %s "$work/pigz.gz")"
ours_rss="$(peak ours)"; big_rss="$(peak big)"
gzip -t "$work/out/ours.tgz"
tar xzf "$work/out/ours.tgz" -O | cmp - "$work/data/dump.sql"

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
echo "archive-dump benchmark: ${MIB} MiB SQL dump, zip $(stat -c %s "$work/www/dump.zip") bytes, $threads cores, median of $RUNS"
printf '%-44s %8s s\n' "archive-dump --url (download+check+repack)" "$ours"
printf '%-44s %8s s   ours/shell = %s (target <= 0.50)\n' "curl && unzip && tar czf" "$shell" "$(ratio "$ours" "$shell")"
printf '%-44s %8s s   ours/pigz  = %s (target <= 1.25)\n' "pigz -6 -p $threads on the extracted dump" "$pigz" "$(ratio "$ours" "$pigz")"
printf '%-44s %8s B   ours/pigz  = %s (target <= 1.05)\n' "archive size: ours $ours_size, pigz" "$pigz_size" "$(ratio "$ours_size" "$pigz_size")"
printf '%-44s %8s MiB (target < 128)\n' "peak RSS, ${MIB} MiB dump" "$((ours_rss / 1024))"
printf '%-44s %8s MiB (4x the dump; should stay flat)\n' "peak RSS, $((MIB * 4)) MiB dump" "$((big_rss / 1024))"
