#!/usr/bin/env bash
# watch-uploads against inotifywait (inotify-tools), side by side on the same trees:
#   latency   writer's close -> line on stdout, 1,000 files, p50/p99 (ours with --settle 0); each
#             watcher alone, LATENCY_ROUNDS (4) rounds in alternating order, median p99 ratio
#   burst     100,000 files in 1,000 new folders: how many each reports (ours exactly once?)
#   idle      wake-ups (context switches of every thread) in 60 s with nothing happening
#   memory    peak RSS (VmHWM) while watching 10,000 folders
# Usage: scripts/bench/watch-uploads.sh [IDLE_SECONDS [PART...]]   (as root, on an idle machine;
# PART is latency, burst, idle or memory; all by default)
set -euo pipefail
cd "$(dirname "$0")/../.."

if ! command -v inotifywait >/dev/null; then
  apt-get install -y -q inotify-tools >/dev/null
fi
cargo build --release -q -p watch-uploads
work=$(mktemp -d /tmp/watch-uploads-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
python3 scripts/bench/watch-uploads/bench.py target/release/watch-uploads "$work" "${1:-60}" "${@:2}"
