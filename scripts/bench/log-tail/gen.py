#!/usr/bin/env python3
"""Writes an auth.log-like file of about SIZE MiB: mostly CRON and session noise, some sshd
logins, failures, invalid users and closed connections, as on a server facing the Internet.

usage: gen.py FILE SIZE_MIB
"""
import random
import sys

def block(rng, size):
    users = ["root", "admin", "ann", "bob", "deploy", "git", "oracle", "test", "john smith"]
    hosts = ["web1", "web2", "files"]
    out = []
    length = 0
    second = 0
    while length < size:
        second += rng.randint(0, 2)
        stamp = "Nov %2d %02d:%02d:%02d" % (1 + second // 86400 % 28, second // 3600 % 24, second // 60 % 60, second % 60)
        host = rng.choice(hosts)
        pid = rng.randint(300, 65000)
        ip = "%d.%d.%d.%d" % (rng.randint(1, 223), rng.randint(0, 255), rng.randint(0, 255), rng.randint(1, 254))
        port = rng.randint(1024, 65535)
        user = rng.choice(users)
        roll = rng.random()
        if roll < 0.45:
            text = "CRON[%d]: pam_unix(cron:session): session %s for user root" % (pid, rng.choice(["opened", "closed"]))
        elif roll < 0.60:
            text = "sshd[%d]: Connection closed by %s port %d [preauth]" % (pid, ip, port)
        elif roll < 0.75:
            text = "sshd[%d]: Failed password for %s from %s port %d ssh2" % (pid, user, ip, port)
        elif roll < 0.83:
            text = "sshd[%d]: Invalid user %s from %s port %d" % (pid, user, ip, port)
        elif roll < 0.85:
            text = "sshd[%d]: Accepted publickey for %s from %s port %d ssh2: ED25519 SHA256:%032x" % (pid, user, ip, port, rng.getrandbits(128))
        elif roll < 0.93:
            text = "sshd[%d]: Disconnected from authenticating user %s %s port %d [preauth]" % (pid, user, ip, port)
        else:
            text = "systemd-logind[%d]: New session %d of user %s." % (pid, rng.randint(1, 99999), user)
        line = "%s %s %s\n" % (stamp, host, text)
        out.append(line)
        length += len(line)
    return "".join(out).encode()

def main():
    path, size_mib = sys.argv[1], int(sys.argv[2])
    rng = random.Random(42)
    # A few distinct blocks repeated: fast to write, and still varied enough for every reader.
    blocks = [block(rng, 4 << 20) for _ in range(8)]
    target = size_mib << 20
    written = 0
    with open(path, "wb") as out:
        while written < target:
            data = blocks[(written >> 22) % len(blocks)]
            out.write(data)
            written += len(data)

if __name__ == "__main__":
    main()
