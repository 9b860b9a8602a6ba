#!/usr/bin/env bash
# Installs the opsline tools, their man pages and example configuration (cron lines, systemd
# units, a users file) under a prefix. Idempotent: running it again updates in place.
#
#   scripts/install.sh [--prefix DIR] [--dry-run]
#
# --prefix DIR   install under DIR (default /usr/local): DIR/bin, DIR/share/man, DIR/share/opsline
# --dry-run      print what would be done, change nothing
set -euo pipefail
cd "$(dirname "$0")/.."

prefix=/usr/local
dry_run=0
while [ "$#" -gt 0 ]; do
  case "$1" in
    --prefix) prefix=${2:?--prefix needs a folder}; shift 2 ;;
    --prefix=*) prefix=${1#--prefix=}; shift ;;
    --dry-run) dry_run=1; shift ;;
    -h|--help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "install: unknown option $1" >&2; exit 2 ;;
  esac
done

run() {
  if [ "$dry_run" = 1 ]; then printf 'would run:'; printf ' %q' "$@"; printf '\n'; else "$@"; fi
}

tools=()
for main in crates/*/src/main.rs; do
  crate=$(basename "$(dirname "$(dirname "$main")")")
  tools+=("$crate")
done

packages=()
for crate in "${tools[@]}"; do packages+=(-p "$crate"); done
run cargo build --release --locked --quiet "${packages[@]}"
target=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')

run install -d "$prefix/bin" "$prefix/share/man/man1" "$prefix/share/man/man7" "$prefix/share/opsline"
for crate in "${tools[@]}"; do run install -m 0755 "$target/release/$crate" "$prefix/bin/"; done
for page in man/*.1; do run install -m 0644 "$page" "$prefix/share/man/man1/"; done
for page in man/*.7; do run install -m 0644 "$page" "$prefix/share/man/man7/"; done
for folder in scripts/cron scripts/systemd scripts/examples; do
  [ -d "$folder" ] && run cp -R "$folder" "$prefix/share/opsline/"
done

if [ "$dry_run" = 0 ]; then
  echo "installed ${tools[*]} into $prefix/bin; man pages into $prefix/share/man; examples into $prefix/share/opsline"
fi
