#!/usr/bin/env bash
# Installs the system packages the build, the tests and the demo need, on Debian 12 as root.
# Only what is missing is installed, so a prepared machine starts at once.
set -euo pipefail

packages=(
  pkg-config libssl-dev            # the ssh2 crate links OpenSSL
  openssh-server openssh-client    # a real sshd for watch-uploads and ship-sftp tests
  python3 python3-aiosmtpd         # a real SMTP server for notify (Debian's /usr/bin/python3)
  ffmpeg                           # convert-video drives ffmpeg and ffprobe
  systemd-journal-remote           # writes journal files for log-tail --journal tests
  chromium                         # a real browser for the archive-web page tests
  curl zip unzip iproute2 man-db
)

missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed" || missing+=("$package")
done

if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: missing packages ${missing[*]}; run as root or install them" >&2
    exit 69
  fi
  echo "setup: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! cargo nextest --version >/dev/null 2>&1; then
  echo "setup: installing cargo-nextest" >&2
  cargo install --locked cargo-nextest
fi
