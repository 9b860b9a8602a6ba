#!/usr/bin/env bash
# The test command: installs what the tests need, then checks formatting, lints and runs every
# test of the workspace (unit, contract, real-server and end-to-end). Exits non-zero on any
# failure.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo nextest run --workspace --locked --no-fail-fast
