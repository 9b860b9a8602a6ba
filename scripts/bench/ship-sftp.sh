#!/usr/bin/env bash
# ship-sftp against OpenSSH sftp/scp and rclone, all uploading to the same loopback sshd.
#
#   scripts/bench/ship-sftp.sh            # as root (it creates a throwaway account)
#   ROUNDS=3 BIG_MIB=1024 scripts/bench/ship-sftp.sh
#
# Starts its own sshd on 127.0.0.1 under a temp folder with fresh host and client keys and the
# account opsline-bench, generates the data, and runs the tools alternately, in reverse order
# every other round, each after a sync (best of ROUNDS):
#   1. one BIG_MIB MiB file: ship-sftp, sftp -b put, scp, rclone copy
#   2. 1,000 files of 10 KiB, first pass: ship-sftp mirror, sftp put -r, rclone copy
#   3. 10,000 files, second pass with nothing new: ship-sftp mirror (and rclone copy beside it)
# and prints seconds, MiB/s, peak RSS and the ratios.
set -euo pipefail
cd "$(dirname "$0")/../.."

ROUNDS=${ROUNDS:-3}
BIG_MIB=${BIG_MIB:-1024}
USER_NAME=opsline-bench

if [ "$(id -u)" != 0 ]; then
  echo "ship-sftp bench: run as root (it starts sshd and creates the account $USER_NAME)" >&2
  exit 2
fi
need_apt=()
command -v rclone >/dev/null || need_apt+=(rclone)
[ -x /usr/sbin/sshd ] || need_apt+=(openssh-server)
[ -x /usr/bin/time ] || need_apt+=(time)
if [ "${#need_apt[@]}" -gt 0 ]; then
  apt-get update -qq && apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

cargo build --release -q -p ship-sftp
SHIP=$PWD/target/release/ship-sftp

WORK=$(mktemp -d /tmp/ship-sftp-bench.XXXXXX)
chmod 755 "$WORK"
SSHD_PID=
CREATED_USER=
cleanup() {
  if [ -n "$SSHD_PID" ]; then kill "$SSHD_PID" 2>/dev/null || true; wait "$SSHD_PID" 2>/dev/null || true; fi
  # Every client has finished by now, so no session of the account is left.
  if [ -n "$CREATED_USER" ]; then userdel "$USER_NAME" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

# --- the server -------------------------------------------------------------------------------
if ! id "$USER_NAME" >/dev/null 2>&1; then
  useradd -M -U -d /nonexistent -s /bin/sh "$USER_NAME"
  CREATED_USER=1
fi
usermod -p '*' "$USER_NAME"
mkdir -p /run/sshd "$WORK/srv"
chown "$USER_NAME:" "$WORK/srv"
ssh-keygen -q -t ed25519 -N '' -f "$WORK/host_key"
ssh-keygen -q -t ed25519 -N '' -f "$WORK/client_key"
cp "$WORK/client_key.pub" "$WORK/authorized_keys"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$WORK/sshd_config" <<EOF
Port $PORT
ListenAddress 127.0.0.1
HostKey $WORK/host_key
PidFile $WORK/sshd.pid
AuthorizedKeysFile $WORK/authorized_keys
StrictModes no
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
AllowUsers $USER_NAME
MaxStartups 100
MaxSessions 100
Subsystem sftp /usr/lib/openssh/sftp-server
EOF
/usr/sbin/sshd -D -f "$WORK/sshd_config" -E "$WORK/sshd.log" &
SSHD_PID=$!
for _ in $(seq 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
  sleep 0.05
done
echo "[127.0.0.1]:$PORT $(cut -d' ' -f1,2 "$WORK/host_key.pub")" >"$WORK/known_hosts"
SSH_OPTS=(-F /dev/null -i "$WORK/client_key" -o IdentitiesOnly=yes -o IdentityAgent=none
  -o BatchMode=yes -o StrictHostKeyChecking=yes -o GlobalKnownHostsFile=/dev/null
  -o "UserKnownHostsFile=$WORK/known_hosts")
: >"$WORK/rclone.conf"
RCLONE_REMOTE=":sftp,host=127.0.0.1,port=$PORT,user=$USER_NAME,key_file=$WORK/client_key,known_hosts_file=$WORK/known_hosts"
SHIP_CONN=(--host 127.0.0.1 --port "$PORT" --user "$USER_NAME" --identity "$WORK/client_key"
  --known-hosts "$WORK/known_hosts")
unset SSH_AUTH_SOCK

# Each side negotiates its own default cipher with the server; say which, next to the numbers.
: >"$WORK/empty"
SFTP_CIPHER=$(sftp -v -b "$WORK/empty" -P "$PORT" "${SSH_OPTS[@]}" "$USER_NAME@127.0.0.1" 2>&1 |
  sed -n 's/.*kex: client->server cipher: \([^ ]*\) MAC: \([^ ]*\).*/\1 (MAC \2)/p' | head -1 || true)
SHIP_CIPHER=$("$SHIP" -vv "${SHIP_CONN[@]}" --dir /nonexistent/ship-sftp-bench /dev/null 2>&1 |
  sed -n 's/.* connected .*cipher="\([^"]*\)" mac="\([^"]*\)".*/\1 (MAC \2)/p' | head -1 || true)

# --- the data ---------------------------------------------------------------------------------
echo "generating data under $WORK ..."
mkdir -p "$WORK/data"
head -c "$((BIG_MIB << 20))" /dev/urandom >"$WORK/data/big.bin"
python3 - "$WORK/data" <<'EOF'
import os, sys
base = sys.argv[1]
for name, count in (("small", 1000), ("many", 10000)):
    for i in range(count):
        sub = os.path.join(base, name, f"d{i % 20:02d}")
        os.makedirs(sub, exist_ok=True)
        with open(os.path.join(sub, f"f{i:05d}.log"), "wb") as f:
            f.write(os.urandom(10240 if name == "small" else 1024))
        os.utime(os.path.join(sub, f"f{i:05d}.log"), (1_700_000_000, 1_700_000_000))
EOF

# --- measuring --------------------------------------------------------------------------------
# measure NAME CMD...: runs CMD, appends "NAME seconds peak_kib" to $WORK/results.
measure() {
  local name=$1
  shift
  /usr/bin/time -f "%e %M" -o "$WORK/time.out" "$@" >/dev/null 2>"$WORK/err.out" || {
    echo "ship-sftp bench: $name failed:" >&2
    cat "$WORK/err.out" >&2
    exit 1
  }
  echo "$name $(cat "$WORK/time.out")" >>"$WORK/results"
}
# fresh DIR: an empty upload folder. sync: no tool starts while the previous one's upload is
# still being written back to disk.
fresh() { rm -rf "$WORK/srv/$1"; mkdir -p "$WORK/srv/$1"; chown "$USER_NAME:" "$WORK/srv/$1"; sync; }
# in_order ROUND TOOL...: the tools, reversed on even rounds, so no tool always runs first or
# always after the same neighbour.
in_order() {
  local round=$1
  shift
  if [ $((round % 2)) = 1 ]; then echo "$@"; else printf '%s\n' "$@" | tac | tr '\n' ' '; fi
}
: >"$WORK/results"

big() {
  case $1 in
    ship-sftp) fresh ours
      measure big:ship-sftp "$SHIP" "${SHIP_CONN[@]}" --dir "$WORK/srv/ours" "$WORK/data/big.bin" ;;
    sftp) fresh sftp; echo "put $WORK/data/big.bin $WORK/srv/sftp/" >"$WORK/batch"
      measure big:sftp sftp -b "$WORK/batch" -P "$PORT" "${SSH_OPTS[@]}" "$USER_NAME@127.0.0.1" ;;
    scp) fresh scp
      measure big:scp scp -q -P "$PORT" "${SSH_OPTS[@]}" "$WORK/data/big.bin" "$USER_NAME@127.0.0.1:$WORK/srv/scp/" ;;
    rclone) fresh rclone
      measure big:rclone rclone --config "$WORK/rclone.conf" copy "$WORK/data/big.bin" "$RCLONE_REMOTE:$WORK/srv/rclone" ;;
  esac
}
echo "1 GiB file, $ROUNDS rounds ..."
for round in $(seq "$ROUNDS"); do
  for tool in $(in_order "$round" ship-sftp sftp scp rclone); do big "$tool"; done
done
cmp "$WORK/data/big.bin" "$WORK/srv/ours/big.bin"

small() {
  case $1 in
    ship-sftp) fresh ours; rm -f "$WORK/state.json"
      measure small:ship-sftp "$SHIP" mirror "$WORK/data/small" "${SHIP_CONN[@]}" --dir "$WORK/srv/ours" \
        --agent-id node --state "$WORK/state.json" --min-age 0 ;;
    sftp) fresh sftp; echo "put -r $WORK/data/small $WORK/srv/sftp/" >"$WORK/batch"
      measure small:sftp sftp -b "$WORK/batch" -P "$PORT" "${SSH_OPTS[@]}" "$USER_NAME@127.0.0.1" ;;
    rclone) fresh rclone
      measure small:rclone rclone --config "$WORK/rclone.conf" copy "$WORK/data/small" "$RCLONE_REMOTE:$WORK/srv/rclone" ;;
  esac
}
echo "1,000 x 10 KiB, first pass, $ROUNDS rounds ..."
for round in $(seq "$ROUNDS"); do
  for tool in $(in_order "$round" ship-sftp sftp rclone); do small "$tool"; done
done
diff -r "$WORK/data/small" "$WORK/srv/ours/node"

echo "10,000 files, second pass with nothing new ..."
fresh ours; rm -f "$WORK/state.json"
"$SHIP" mirror "$WORK/data/many" "${SHIP_CONN[@]}" --dir "$WORK/srv/ours" --agent-id node \
  --state "$WORK/state.json" --min-age 0 >/dev/null
fresh rclone
rclone --config "$WORK/rclone.conf" copy "$WORK/data/many" "$RCLONE_REMOTE:$WORK/srv/rclone"
for round in $(seq "$ROUNDS"); do
  measure again:ship-sftp "$SHIP" mirror "$WORK/data/many" "${SHIP_CONN[@]}" --dir "$WORK/srv/ours" \
    --agent-id node --state "$WORK/state.json" --min-age 0
  measure again:rclone rclone --config "$WORK/rclone.conf" copy "$WORK/data/many" "$RCLONE_REMOTE:$WORK/srv/rclone"
done

# --- report -----------------------------------------------------------------------------------
python3 - "$WORK/results" "$BIG_MIB" "$SHIP_CIPHER" "$SFTP_CIPHER" <<'EOF'
import sys
from collections import defaultdict
best, rss = {}, defaultdict(int)
for line in open(sys.argv[1]):
    name, secs, kib = line.split()
    best[name] = min(best.get(name, 1e9), float(secs))
    rss[name] = max(rss[name], int(kib))
mib = int(sys.argv[2])
def row(name, size_mib=None):
    rate = f"{size_mib / best[name]:8.1f} MiB/s" if size_mib else " " * 14
    print(f"  {name:18} {best[name]:7.2f} s  {rate}  peak RSS {rss[name] / 1024:6.1f} MiB")
print(f"\none {mib} MiB file (best of rounds):")
for peer in ("ship-sftp", "sftp", "scp", "rclone"):
    row(f"big:{peer}", mib)
for peer in ("sftp", "scp", "rclone"):
    print(f"  throughput ship-sftp / {peer}: {best[f'big:{peer}'] / best['big:ship-sftp']:.2f}x")
print("\n1,000 files of 10 KiB, mirror first pass:")
for peer in ("ship-sftp", "sftp", "rclone"):
    row(f"small:{peer}")
for peer in ("sftp", "rclone"):
    print(f"  speed ship-sftp / {peer}: {best[f'small:{peer}'] / best['small:ship-sftp']:.2f}x")
print("\n10,000 files, second pass with nothing new:")
for peer in ("ship-sftp", "rclone"):
    row(f"again:{peer}")
print(f"\nciphers, client to server: ship-sftp {sys.argv[3]}; sftp {sys.argv[4]}")
print(f"peak RSS of ship-sftp over all runs: {max(v for k, v in rss.items() if k.endswith('ship-sftp')) / 1024:.1f} MiB")
EOF
