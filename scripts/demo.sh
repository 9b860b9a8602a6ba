#!/usr/bin/env bash
# The first command of the README: installs what is missing (Debian packages, a release
# build), then runs the five workflows for real under a temporary folder, against servers on
# 127.0.0.1 only (OpenSSH with SFTP accounts, SMTP, HTTPS, HTTP), on generated sample data, and
# prints what arrived. Servers and files are removed at the end; the exit status is non-zero
# when any workflow failed.
set -euo pipefail
cd "$(dirname "$0")/.."
exec </dev/null

scripts/setup.sh
cargo build --release --locked --workspace
bin_dir="${CARGO_TARGET_DIR:-$PWD/target}/release"
OPSLINE_BIN_DIR="$bin_dir" "$bin_dir/opsline-demo"
