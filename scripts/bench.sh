#!/usr/bin/env bash
# Runs every tool's benchmark (scripts/bench/TOOL.sh) one after the other, or only the tools
# named: scripts/bench.sh log-tail notify. Each script builds the release binary, generates its
# data under a temporary folder, runs the tool and its peer side by side and prints ratios;
# BENCHMARKS.md records the numbers.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$#" -gt 0 ]; then
  scripts=()
  for tool in "$@"; do scripts+=("scripts/bench/$tool.sh"); done
else
  scripts=(scripts/bench/*.sh)
fi

status=0
for script in "${scripts[@]}"; do
  echo "== $(basename "$script" .sh)"
  bash "$script" || { echo "bench: $script failed" >&2; status=1; }
done
exit "$status"
