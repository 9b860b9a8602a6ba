"""watch-uploads vs inotifywait: latency, burst completeness, idle wake-ups, peak RSS.

Both watchers run at the same time on the same tree; each output line is time-stamped by a
reader thread the moment it arrives.
"""

import os
import subprocess
import sys
import threading
import time

OURS, WORK, IDLE_SECONDS = sys.argv[1], sys.argv[2], int(sys.argv[3])


class Watcher:
    """A watcher process whose stdout lines (paths) are collected with arrival times."""

    def __init__(self, name, argv, ready):
        self.name = name
        self.seen = {}
        self.lines = 0
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.stderr = []
        got_ready = threading.Event()

        def read_stderr():
            for line in self.proc.stderr:
                text = line.decode(errors="replace")
                self.stderr.append(text)
                if ready in text:
                    got_ready.set()

        def read_stdout():
            for line in self.proc.stdout:
                now = time.monotonic_ns()
                path = self.path_of(line)
                if path is None:
                    continue
                self.lines += 1
                self.seen.setdefault(path, []).append(now)

        threading.Thread(target=read_stderr, daemon=True).start()
        threading.Thread(target=read_stdout, daemon=True).start()
        if not got_ready.wait(120):
            raise SystemExit(f"{name} did not start: {''.join(self.stderr)}")

    def path_of(self, line):
        if self.name == "ours":
            # A cheap parse of {"kind":"upload",...,"path":"…",...}: the bench names are plain.
            text = line.decode()
            start = text.find('"path":"')
            if start < 0 or '"kind":"upload"' not in text:
                return None
            start += len('"path":"')
            return text[start:text.index('"', start)]
        path = line.decode(errors="replace").rstrip("\n")
        return path if path.endswith(".mp4") else None

    def tasks_switches(self):
        total = 0
        for task in os.listdir(f"/proc/{self.proc.pid}/task"):
            with open(f"/proc/{self.proc.pid}/task/{task}/status") as status:
                for line in status:
                    if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                        total += int(line.split()[1])
        return total

    def peak_rss_kib(self):
        with open(f"/proc/{self.proc.pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
        return 0

    def stop(self):
        self.proc.terminate()
        self.proc.wait(30)


def start_both(tree, settle):
    ours = Watcher(
        "ours",
        [OURS, "-v", "--no-state", "--settle", settle, tree],
        "watching ",
    )
    theirs = Watcher(
        "inotifywait",
        ["inotifywait", "-m", "-r", "-e", "close_write", "--format", "%w%f", tree],
        "Watches established",
    )
    return ours, theirs


def wait_quiet(watchers, expected, quiet=5.0, limit=300.0):
    start = time.monotonic()
    last = [-1] * len(watchers)
    since = time.monotonic()
    while time.monotonic() - start < limit:
        counts = [w.lines for w in watchers]
        if counts != last:
            last, since = counts, time.monotonic()
        if all(len(w.seen) >= expected for w in watchers[:1]) and time.monotonic() - since > quiet:
            return
        if time.monotonic() - since > quiet * 4:
            return
        time.sleep(0.1)


def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def latency():
    tree = os.path.join(WORK, "latency")
    os.makedirs(tree)
    ours, theirs = start_both(tree, "0")
    closed = {}
    for n in range(1000):
        path = os.path.join(os.path.realpath(tree), f"f{n:04}.mp4")
        with open(path, "wb") as f:
            f.write(b"x" * 4096)
        closed[path] = time.monotonic_ns()
        time.sleep(0.005)
    wait_quiet([ours, theirs], 1000, quiet=2)
    ours.stop()
    theirs.stop()
    result = {}
    for w in (ours, theirs):
        lat = [(w.seen[p][0] - t) / 1000 for p, t in closed.items() if p in w.seen]
        result[w.name] = (percentile(lat, 50), percentile(lat, 99), len(lat))
    (o50, o99, on), (t50, t99, tn) = result["ours"], result["inotifywait"]
    print(f"latency (us)   ours p50 {o50:8.0f} p99 {o99:8.0f} ({on} files) | "
          f"inotifywait p50 {t50:8.0f} p99 {t99:8.0f} ({tn} files) | p99 ratio {o99 / t99:.2f}x")


def burst():
    tree = os.path.join(WORK, "burst")
    os.makedirs(tree)
    ours, theirs = start_both(tree, "1s")
    real = os.path.realpath(tree)
    started = time.monotonic()
    for d in range(1000):
        folder = os.path.join(real, f"d{d:04}", "in")
        os.makedirs(folder)
        for n in range(100):
            with open(os.path.join(folder, f"f{n:03}.mp4"), "wb") as f:
                f.write(b"y")
    written = time.monotonic() - started
    wait_quiet([ours, theirs], 100_000, quiet=5)
    ours.stop()
    theirs.stop()
    for w in (ours, theirs):
        dup = sum(1 for times in w.seen.values() if len(times) > 1)
        print(f"burst          {w.name:12} reported {len(w.seen):6} of 100000 distinct files "
              f"({len(w.seen) / 1000:.1f} %), {dup} reported more than once "
              f"(written in {written:.1f} s)")
    overflow = sum("overflowed" in line for line in ours.stderr)
    print(f"burst          ours saw {overflow} queue overflow(s) and recovered by rescanning")


def idle():
    tree = os.path.join(WORK, "idle")
    os.makedirs(os.path.join(tree, "a", "b"))
    ours, theirs = start_both(tree, "2s")
    time.sleep(1)
    before = [w.tasks_switches() for w in (ours, theirs)]
    time.sleep(IDLE_SECONDS)
    after = [w.tasks_switches() for w in (ours, theirs)]
    ours.stop()
    theirs.stop()
    print(f"idle           wake-ups in {IDLE_SECONDS} s: ours {after[0] - before[0]}, "
          f"inotifywait {after[1] - before[1]}")


def memory():
    tree = os.path.join(WORK, "memory")
    for a in range(100):
        for b in range(100):
            os.makedirs(os.path.join(tree, f"u{a:02}", f"{b:02}"))
    ours, theirs = start_both(tree, "2s")
    time.sleep(1)
    rss = [w.peak_rss_kib() for w in (ours, theirs)]
    ours.stop()
    theirs.stop()
    print(f"memory         peak RSS watching 10,100 folders: ours {rss[0] / 1024:.1f} MiB, "
          f"inotifywait {rss[1] / 1024:.1f} MiB ({rss[0] / max(rss[1], 1):.2f}x)")


PARTS = {"latency": latency, "burst": burst, "idle": idle, "memory": memory}
for part in sys.argv[4:] or PARTS:
    PARTS[part]()
