#!/usr/bin/env bash
# notify against the way the old scripts did it, on this machine, one after the other:
#   1. 1,000 records, one webhook POST each, to a local recording HTTP server:
#      notify --webhook  vs  a shell loop running curl per record (the old scripts).
#      Per message: the mean gap between the server's receive times (the client's own time per
#      message plus the server's near-instant answer), and the whole run's wall time.
#   2. A digest of 100,000 records (counts per kind and status, errors first), sent as one
#      webhook POST: notify --digest  vs  jq -s grouping the same records. Time and peak RSS.
#
#   scripts/bench/notify.sh
#   RECORDS=1000 DIGEST_RECORDS=100000 scripts/bench/notify.sh
set -euo pipefail
cd "$(dirname "$0")/../.."

RECORDS=${RECORDS:-1000}
DIGEST_RECORDS=${DIGEST_RECORDS:-100000}

need_apt=()
command -v curl >/dev/null || need_apt+=(curl)
command -v jq >/dev/null || need_apt+=(jq)
[ -x /usr/bin/time ] || need_apt+=(time)
if [ "${#need_apt[@]}" -gt 0 ]; then
  apt-get update -qq && apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

cargo build --release -q -p notify --bin notify --example bench_webhook
NOTIFY=$PWD/target/release/notify
BENCH=$PWD/target/release/examples/bench_webhook

WORK=$(mktemp -d /tmp/notify-bench.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

# --- data ---------------------------------------------------------------------------------------
python3 - "$WORK" "$RECORDS" "$DIGEST_RECORDS" <<'PY'
import json, sys
work, n, m = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
kinds = ["upload", "video", "archive", "shipped", "line"]
def record(i):
    r = {"kind": kinds[i % 5], "ts": "2026-11-23T03:%02d:%02d+00:00" % (i // 60 % 60, i % 60),
         "path": "/srv/sftp/user%03d/upload-%06d.mp4" % (i % 500, i), "size": 1000 + i * 37,
         "user": {"login": "user%03d" % (i % 500), "email": "user%03d@example.org" % (i % 500)}}
    if i % 97 == 0:
        r["error"] = {"tool": "convert-video", "message": "moov atom not found"}
    elif i % 31 == 0:
        r["archive"] = {"status": "stale"}
    return r
with open(f"{work}/records.jsonl", "w") as f:
    for i in range(n):
        f.write(json.dumps(record(i)) + "\n")
with open(f"{work}/digest.jsonl", "w") as f:
    for i in range(m):
        f.write(json.dumps(record(i)) + "\n")
PY

cat >"$WORK/curl-loop.sh" <<'SH'
#!/bin/sh
# One curl per record, as the old notification scripts did.
while IFS= read -r line; do
  printf '%s' "$line" | curl -sS -o /dev/null -X POST -H 'Content-Type: application/json' --data-binary @- "$1"
done
SH
chmod +x "$WORK/curl-loop.sh"

field() { python3 -c 'import json,sys; print(round(json.loads(sys.argv[1])[sys.argv[2]], 3))' "$1" "$2"; }

echo "== per-record webhook, $RECORDS records"
ours=$("$BENCH" "$RECORDS" "$WORK/records.jsonl" "$NOTIFY" -q --webhook '{url}')
peer=$("$BENCH" "$RECORDS" "$WORK/records.jsonl" "$WORK/curl-loop.sh" '{url}')
echo "notify:    $ours"
echo "curl loop: $peer"
o_gap=$(field "$ours" gap_mean_ms); p_gap=$(field "$peer" gap_mean_ms)
o_p99=$(field "$ours" gap_p99_ms)
o_wall=$(field "$ours" wall_ms); p_wall=$(field "$peer" wall_ms)
printf 'per message: notify %s ms (p99 %s ms), curl loop %s ms: notify takes %sx the time\n' \
  "$o_gap" "$o_p99" "$p_gap" "$(python3 -c "print(round($o_gap/$p_gap, 3))")"
printf 'whole run:   notify %s ms, curl loop %s ms\n' "$o_wall" "$p_wall"

echo "== digest, $DIGEST_RECORDS records"
"$BENCH" 1 "$WORK/digest.jsonl" /usr/bin/time -f 'notify --digest: %e s, %M KiB peak RSS' -o "$WORK/time-ours" \
  "$NOTIFY" -q --digest --webhook '{url}' >"$WORK/digest-report"
/usr/bin/time -f 'jq -s group_by: %e s, %M KiB peak RSS' -o "$WORK/time-peer" \
  jq -c -s '{count: length, kinds: (group_by(.kind) | map({(.[0].kind): length}) | add),
             errors: map(select(.error)) | length,
             warnings: map(select(.error | not) | select(.archive.status == "stale")) | length}' \
  "$WORK/digest.jsonl" >"$WORK/peer-digest"
cat "$WORK/time-ours" "$WORK/time-peer"
echo "notify's digest request: $(cat "$WORK/digest-report")"
echo "jq's summary: $(cat "$WORK/peer-digest")"
read -r o_s o_kb < <(sed -E 's/.*: ([0-9.]+) s, ([0-9]+) KiB.*/\1 \2/' "$WORK/time-ours")
read -r p_s p_kb < <(sed -E 's/.*: ([0-9.]+) s, ([0-9]+) KiB.*/\1 \2/' "$WORK/time-peer")
python3 -c "print(f'digest: notify {$o_s} s / {$o_kb/1024:.1f} MiB, jq {$p_s} s / {$p_kb/1024:.1f} MiB: time ratio {$o_s/max($p_s,0.01):.2f}, memory ratio {$o_kb/$p_kb:.2f}')"
