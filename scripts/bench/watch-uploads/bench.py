"""watch-uploads vs inotifywait: latency, burst completeness, idle wake-ups, peak RSS.

Latency: each watcher runs alone on the same empty tree and gets the same 1,000 files, in passes
that alternate (ours first in even rounds, inotifywait first in odd ones; LATENCY_ROUNDS, 4 by
default); the line is stamped by the writing thread itself. The other parts run both watchers
at the same time on the same tree; each output line is stamped by a reader thread as it arrives.
"""

import os
import select
import statistics
import subprocess
import sys
import threading
import time

# Set from the command line: our binary, the work folder, the idle part's length in seconds.
OURS, WORK, IDLE_SECONDS = "", "", 0


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
        return path_of(self.name, line)

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


def latency_pass(name, argv, ready, tree, files=1000, gap=0.005):
    """One watcher alone on the empty `tree`: write `files` files one at a time, each after the
    previous one's line arrived and at least `gap` after its close; return the latencies (us)
    from each close to its line on the watcher's stdout, and the watcher's CPU time per file.

    One thread writes, waits in select(2) on the pipe and stamps the line the moment it is read:
    no reader threads and no GIL hand-off between the close and the stamp.
    """
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    stderr = []
    got_ready = threading.Event()

    def read_stderr():
        for line in proc.stderr:
            stderr.append(line.decode(errors="replace"))
            if ready in stderr[-1]:
                got_ready.set()

    threading.Thread(target=read_stderr, daemon=True).start()
    if not got_ready.wait(120):
        raise SystemExit(f"{name} did not start: {''.join(stderr)}")
    fd = proc.stdout.fileno()
    cpu_before = cpu_ns(proc.pid)
    pending = b""
    latencies = []
    real = os.path.realpath(tree)
    for n in range(files):
        path = os.path.join(real, f"f{n:04}.mp4")
        with open(path, "wb") as f:
            f.write(b"x" * 4096)
        closed = time.monotonic_ns()
        arrived = None
        while arrived is None:
            left = 2.0 - (time.monotonic_ns() - closed) / 1e9
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                break
            chunk = os.read(fd, 65536)
            now = time.monotonic_ns()
            if not chunk:
                break
            *lines, pending = (pending + chunk).split(b"\n")
            if any(path_of(name, line) == path for line in lines):
                arrived = now
        if arrived is not None:
            latencies.append((arrived - closed) / 1000)
        time.sleep(max(0.0, gap - (time.monotonic_ns() - closed) / 1e9))
    cpu_per_file = (cpu_ns(proc.pid) - cpu_before) / 1000 / files
    proc.terminate()
    proc.wait(30)
    for entry in os.listdir(tree):
        os.remove(os.path.join(tree, entry))
    return latencies, cpu_per_file


def path_of(name, line):
    """The path a watcher's output line names, or None for other lines."""
    text = line.decode(errors="replace").rstrip("\n")
    if name == "ours":
        # A cheap parse of {"kind":"upload",...,"path":"…",...}: the bench names are plain.
        start = text.find('"path":"')
        if start < 0 or '"kind":"upload"' not in text:
            return None
        start += len('"path":"')
        return text[start:text.index('"', start)]
    return text if text.endswith(".mp4") else None


def cpu_ns(pid):
    """Time the process has run on a CPU, all threads (nanoseconds)."""
    with open(f"/proc/{pid}/schedstat") as stat:
        return int(stat.read().split()[0])


def latency():
    """Each watcher runs alone on the same empty tree, in alternating order (ours first in
    even rounds, inotifywait first in odd ones), so neither competes with the other for the
    CPUs and drifts of the machine's load fall on both alike."""
    tree = os.path.join(WORK, "latency")
    os.makedirs(tree)
    rounds = int(os.environ.get("LATENCY_ROUNDS", "4"))
    commands = {
        "ours": ([OURS, "-v", "--no-state", "--settle", "0", tree], "watching "),
        "inotifywait": (
            ["inotifywait", "-m", "-r", "-e", "close_write", "--format", "%w%f", tree],
            "Watches established",
        ),
    }
    p99s = {"ours": [], "inotifywait": []}
    pooled = {"ours": [], "inotifywait": []}
    for r in range(rounds):
        order = ["ours", "inotifywait"] if r % 2 == 0 else ["inotifywait", "ours"]
        line = []
        for name in order:
            argv, ready = commands[name]
            lat, cpu = latency_pass(name, argv, ready, tree)
            p99s[name].append(percentile(lat, 99))
            pooled[name].extend(lat)
            line.append(f"{name} p50 {percentile(lat, 50):5.0f} p99 {percentile(lat, 99):6.0f} "
                        f"({len(lat)} files, cpu {cpu:4.0f} us/file)")
        print(f"latency (us)   round {r + 1}: " + " | ".join(line), flush=True)
    o99, t99 = statistics.median(p99s["ours"]), statistics.median(p99s["inotifywait"])
    print(f"latency (us)   median of {rounds} p99s: ours {o99:.0f}, inotifywait {t99:.0f}: "
          f"p99 ratio {o99 / t99:.2f}x (per round: "
          + ", ".join(f"{o / t:.2f}x" for o, t in zip(p99s["ours"], p99s["inotifywait"])) + ")")
    o, t = pooled["ours"], pooled["inotifywait"]
    print(f"latency (us)   all {len(o)}/{len(t)} files: ours p50 {percentile(o, 50):.0f} "
          f"p99 {percentile(o, 99):.0f} | inotifywait p50 {percentile(t, 50):.0f} "
          f"p99 {percentile(t, 99):.0f} | p99 ratio {percentile(o, 99) / percentile(t, 99):.2f}x")


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
if __name__ == "__main__":
    OURS, WORK, IDLE_SECONDS = sys.argv[1], sys.argv[2], int(sys.argv[3])
    for part in sys.argv[4:] or PARTS:
        PARTS[part]()
