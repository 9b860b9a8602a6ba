#!/usr/bin/env bash
# origin-tokens against grep on a generated FlexLM debug log (1 GiB by default: 500 users,
# 20 features, 90 days, a clean start and a crash restart every two weeks, denials):
#   origin-tokens report --by user --per day   vs   grep -c 'OUT:'
# on the same file in the same run (page cache warm for both), best of RUNS rounds each (the two
# take turns going first), with peak RSS from /usr/bin/time. The target: at most 2x grep's time
# and under 64 MiB of memory.
#
#   scripts/bench/origin-tokens.sh
#   BYTES=268435456 RUNS=5 scripts/bench/origin-tokens.sh
set -euo pipefail
cd "$(dirname "$0")/../.."

BYTES=${BYTES:-1073741824}
RUNS=${RUNS:-3}

[ -x /usr/bin/time ] || { apt-get update -qq && apt-get install -y -qq time >/dev/null; }

cargo build --release -q -p origin-tokens --bin origin-tokens --example gen-log
TARGET=${CARGO_TARGET_DIR:-$PWD/target}
TOOL=$TARGET/release/origin-tokens
GEN=$TARGET/release/examples/gen-log

WORK=$(mktemp -d /tmp/origin-tokens-bench.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
LOG=$WORK/orglabdebug.log

"$GEN" "$BYTES" 500 20 90 >"$LOG"
echo "log: $(du -h "$LOG" | cut -f1), $(wc -l <"$LOG") lines"
cat "$LOG" >/dev/null

# grep stops at the first match when its output is /dev/null: write to a file.
# One timed run of a command: "seconds KiB".
run() {
  local name=$1; shift
  /usr/bin/time -f "%e %M" -o "$WORK/time" "$@" >"$WORK/$name.out" 2>"$WORK/$name.err"
  cat "$WORK/time"
}

# The best time and the largest peak RSS of each side over RUNS rounds; the two run one after
# the other in each round, in turns first, so that a change of load on the machine weighs on
# both alike.
best() {
  awk '{ if (best == "" || $1 < best) best = $1; if ($2 > rss) rss = $2 } END { print best, rss }'
}
: >"$WORK/grep.times"
: >"$WORK/report.times"
for round in $(seq "$RUNS"); do
  if [ $((round % 2)) -eq 1 ]; then
    run grep grep -c 'OUT:' "$LOG" >>"$WORK/grep.times"
    run report "$TOOL" report --by user --per day --tz UTC "$LOG" >>"$WORK/report.times"
  else
    run report "$TOOL" report --by user --per day --tz UTC "$LOG" >>"$WORK/report.times"
    run grep grep -c 'OUT:' "$LOG" >>"$WORK/grep.times"
  fi
done
read -r grep_s grep_kib < <(best <"$WORK/grep.times")
read -r ours_s ours_kib < <(best <"$WORK/report.times")

echo "rounds, grep -c (s):          $(cut -d' ' -f1 "$WORK/grep.times" | tr '\n' ' ')"
echo "rounds, origin-tokens (s):     $(cut -d' ' -f1 "$WORK/report.times" | tr '\n' ' ')"
echo "grep -c 'OUT:'                       : ${grep_s} s, peak RSS $((grep_kib / 1024)) MiB ($(cat "$WORK/grep.out") checkouts)"
echo "origin-tokens report --by user --per day: ${ours_s} s, peak RSS $((ours_kib / 1024)) MiB ($(wc -l <"$WORK/report.out") rows)"
awk -v a="$ours_s" -v b="$grep_s" 'BEGIN { printf "ratio origin-tokens / grep: %.2fx (target <= 2x)\n", a / b }'
awk -v k="$ours_kib" 'BEGIN { printf "peak RSS of origin-tokens: %.1f MiB (target < 64 MiB)\n", k / 1024 }'
