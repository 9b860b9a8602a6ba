#!/usr/bin/env bash
# Regenerates the man pages under man/ from the tools' clap definitions. The tests fail while a
# committed page differs from what the code renders.
set -euo pipefail
cd "$(dirname "$0")/.."
OPSLINE_BLESS_MAN=1 cargo nextest run --workspace --locked -E 'test(man_page)'
