#!/usr/bin/env bash
# log-tail against its peers on a generated auth.log-like file (1 GiB by default, about
# 10 million lines), side by side in one run:
#   - every line as JSON          vs  pygtail (PyPI) to /dev/null       (goal: >= 20x)
#   - --match + --parse sshd      vs  grep -cE with the same pattern    (goal: no slower)
#   - --format raw | wc -l        vs  cat FILE | wc -l                  (goal: within 1.5x)
#   - peak RSS of log-tail                                              (goal: < 32 MiB)
# On a warm page cache, each comparison runs ours and the peer in turn (pygtail twice, the
# others five times, as the machine may be shared) and the fastest run of each side counts.
#
# usage: scripts/bench/log-tail.sh [SIZE_MIB]
set -euo pipefail
cd "$(dirname "$0")/../.."

size_mib="${1:-1024}"
pattern='sshd.*(Accepted|Failed)'

python3 -c 'import pygtail' 2>/dev/null || pip install --quiet pygtail
if [ ! -x /usr/bin/time ]; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq time >/dev/null
fi
cargo build --release -p log-tail
bin="$PWD/target/release/log-tail"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
log="$work/auth.log"
echo "generating ${size_mib} MiB of auth.log lines" >&2
python3 scripts/bench/log-tail/gen.py "$log" "$size_mib"
lines=$(wc -l <"$log")
cat "$log" >/dev/null

# SECONDS of one run of a shell command line; the state is removed before the run
timed() {
  rm -rf "$work/state" "$work/pygtail.offset"
  mkdir -p "$work/state"
  /usr/bin/time -f '%e' -o "$work/time" bash -c "$1" >/dev/null 2>"$work/err" ||
    { echo "bench: failed: $1" >&2; cat "$work/err" >&2; exit 1; }
  tail -1 "$work/time"
}

min() { awk -v a="$1" -v b="$2" 'BEGIN{ print (b == "" || a < b) ? a : b }'; }

# "OURS PEER": the best SECONDS of RUNS runs of each command line, run in turn
pair() {
  local runs="$1" ours="" peer=""
  local t
  for _ in $(seq "$runs"); do
    t=$(timed "$2")
    ours=$(min "$t" "$ours")
    t=$(timed "$3")
    peer=$(min "$t" "$peer")
  done
  echo "$ours $peer"
}

# peak resident set of log-tail alone, in KiB
rss() {
  rm -rf "$work/state"
  /usr/bin/time -f '%M' -o "$work/time" "$bin" --state "$work/state/rss.json" "$@" "$log" >/dev/null
  tail -1 "$work/time"
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (b == 0) b = 0.001; printf "%.2f", a / b }'; }

json=$(pair 2 "'$bin' --state '$work/state/s.json' '$log' > /dev/null" \
  "pygtail --offset-file '$work/pygtail.offset' '$log' > /dev/null")
match=$(pair 5 \
  "'$bin' --state '$work/state/s.json' --match '$pattern' --parse sshd '$log' | cat > /dev/null" \
  "grep -cE '$pattern' '$log' | cat > /dev/null")
raw=$(pair 5 "'$bin' --state '$work/state/s.json' --format raw '$log' | wc -l > /dev/null" \
  "cat '$log' | wc -l > /dev/null")
read -r ours_json pygtail <<<"$json"
read -r ours_match grep_c <<<"$match"
read -r ours_raw cat_wc <<<"$raw"
rss_json=$(rss)
rss_match=$(rss --match "$pattern" --parse sshd)

echo
echo "log-tail benchmark: ${size_mib} MiB, ${lines} lines, $(nproc) cores"
printf '%-44s %8s s\n' "log-tail (JSON, every line)" "$ours_json"
printf '%-44s %8s s   log-tail is %sx faster (goal >= 20x)\n' "pygtail" "$pygtail" "$(ratio "$pygtail" "$ours_json")"
printf '%-44s %8s s\n' "log-tail --match '$pattern' --parse sshd" "$ours_match"
printf '%-44s %8s s   log-tail takes %sx the time of grep (goal <= 1)\n' "grep -cE '$pattern'" "$grep_c" "$(ratio "$ours_match" "$grep_c")"
printf '%-44s %8s s\n' "log-tail --format raw | wc -l" "$ours_raw"
printf '%-44s %8s s   log-tail takes %sx the time of cat (goal <= 1.5)\n' "cat | wc -l" "$cat_wc" "$(ratio "$ours_raw" "$cat_wc")"
printf '%-44s %8s MiB (JSON), %s MiB (--match --parse sshd) (goal < 32)\n' "log-tail peak RSS" \
  "$(awk -v k="$rss_json" 'BEGIN{printf "%.1f", k/1024}')" "$(awk -v k="$rss_match" 'BEGIN{printf "%.1f", k/1024}')"
