#!/usr/bin/env bash
# log-tail against its peers on a generated auth.log-like file (1 GiB by default, about
# 10 million lines), side by side in one run:
#   - every line as JSON          vs  pygtail (PyPI) to /dev/null       (goal: >= 20x)
#   - --match + --parse sshd      vs  grep -cE with the same pattern    (goal: no slower)
#   - --format raw | wc -l        vs  cat FILE | wc -l                  (goal: within 1.5x)
#   - peak RSS of log-tail                                              (goal: < 32 MiB)
# Every command runs twice on a warm page cache; the faster run counts.
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

# best SECONDS of two runs of a shell command line; the state is removed before each run
best() {
  local best_time="" t
  for _ in 1 2; do
    rm -rf "$work/state" "$work/pygtail.offset"
    mkdir -p "$work/state"
    /usr/bin/time -f '%e' -o "$work/time" bash -c "$1" >/dev/null 2>"$work/err" ||
      { echo "bench: failed: $1" >&2; cat "$work/err" >&2; exit 1; }
    t=$(tail -1 "$work/time")
    if [ -z "$best_time" ] || awk -v a="$t" -v b="$best_time" 'BEGIN{exit !(a<b)}'; then best_time="$t"; fi
  done
  echo "$best_time"
}

# peak resident set of log-tail alone, in KiB
rss() {
  rm -rf "$work/state"
  /usr/bin/time -f '%M' -o "$work/time" "$bin" --state "$work/state/rss.json" "$@" "$log" >/dev/null
  tail -1 "$work/time"
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (b == 0) b = 0.001; printf "%.2f", a / b }'; }

ours_json=$(best "'$bin' --state '$work/state/s.json' '$log' > /dev/null")
pygtail=$(best "pygtail --offset-file '$work/pygtail.offset' '$log' > /dev/null")
ours_match=$(best "'$bin' --state '$work/state/s.json' --match '$pattern' --parse sshd '$log' | cat > /dev/null")
grep_c=$(best "grep -cE '$pattern' '$log' | cat > /dev/null")
ours_raw=$(best "'$bin' --state '$work/state/s.json' --format raw '$log' | wc -l > /dev/null")
cat_wc=$(best "cat '$log' | wc -l > /dev/null")
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
