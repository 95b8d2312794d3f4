#!/usr/bin/env python3
"""ackline beside rsyslog and syslog-ng: the same job for each, in one run, alternated.

The job: tail F files holding the loghub mix and RFC 3164 syslog lines, each line carrying a
sequence number (`seq=N`), and write every line to PostgreSQL (`--target pg`) or to a local
file (`--target file`). Each peer runs as a private instance (own configuration, pid file,
work directory; no imuxsock/imklog, never /dev/log) in its most reliable documented mode
(`reliable`) and in its fastest (`fast`); ackline runs `ackline run` with its defaults
(durable embedded queue, fsync before a line is acknowledged), and as `fast` with files
checked every 20 ms instead of 250 ms (as durable: only the polling differs).

Phases (each tool, each mode, alternated so that no tool always runs first):

* throughput: the files are written in full first; the clock runs from the tool's start
  until every line is in the target, or for --throughput-limit seconds when the tool is
  slower than that (then the rows stored by then count). Reported: lines/s, CPU microseconds
  per line (user + system of the tool's process, from /proc; the database's own CPU is not
  counted for any tool).
* latency: the tool follows empty files while a writer appends at a fixed rate; a poller
  reads the stored count every 20 ms. A line counts as stored at the first poll that sees
  at least as many rows as there were lines up to it (lines are written in order, so the
  count is a lower bound of what is in): the p50/p99 of that minus its write time.
* chaos: a writer appends lines at a steady rate while the tool is killed with SIGKILL and
  restarted `--chaos-rounds` times, each kill after the target grew by a random number of
  rows (timed by observed progress, not wall time); then the tool runs until the target is
  quiet. Reported: lines lost (sequence numbers never stored) and stored twice.

Nothing here is timed by a test: this is a benchmark. Results go to stdout as a table, and
with --json as one JSON object.

Setup: `bench/peers/setup.sh` installs rsyslog with its PostgreSQL module (without letting
the package start its daemon or create a database) and unpacks syslog-ng into a cache
directory (the two Debian packages conflict). Loghub samples: ../shared/data/loghub (the
loghub collection, see its LICENSE and CITATION there).
"""

import argparse
import json
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
SEQ = re.compile(rb"seq=(\d+)")
PG = ["psql", "-h", "127.0.0.1", "-p", "5432", "-U", "postgres", "-d", "test", "-qAtX"]
CLK = os.sysconf("SC_CLK_TCK")


def sh(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw).stdout


def psql(sql):
    return sh(PG + ["-c", sql]).strip()


# --------------------------------------------------------------------------- lines


def loghub_lines(root):
    """Every line of the loghub 2k samples, or an empty list when they are not there."""
    lines = []
    for f in sorted(Path(root).glob("*_2k.log")):
        for raw in f.read_bytes().splitlines():
            raw = raw.rstrip(b"\r")
            if raw:
                lines.append(raw)
    return lines


def syslog_line(i):
    apps = [b"sshd", b"cron", b"kernel", b"nginx", b"postgres"]
    app = apps[i % len(apps)]
    return b"<%d>Dec  5 04:%02d:%02d web-%d %s[%d]: session %d opened for user u%d" % (
        13 + i % 8, (i // 60) % 60, i % 60, i % 7, app, 1000 + i % 97, i, i % 50)


class Corpus:
    """Line i of the job: the loghub mix and syslog lines alternated, `seq=i` appended."""

    def __init__(self, loghub):
        self.loghub = loghub

    def line(self, i):
        if self.loghub and i % 2 == 0:
            base = self.loghub[(i // 2) % len(self.loghub)]
        else:
            base = syslog_line(i)
        return base + b" seq=%d\n" % i


def write_all(corpus, input_dir, files, n):
    outs = [open(input_dir / f"in-{k}.log", "ab") for k in range(files)]
    for i in range(n):
        outs[i % files].write(corpus.line(i))
    for o in outs:
        o.flush()
        os.fsync(o.fileno())
        o.close()


class PacedWriter(threading.Thread):
    """Appends lines 0..n at `rate` lines/s round-robin over the files, remembering when
    each was written (flushed)."""

    def __init__(self, corpus, input_dir, files, n, rate):
        super().__init__(daemon=True)
        self.corpus, self.dir, self.files, self.n, self.rate = corpus, input_dir, files, n, rate
        self.written_at = [0.0] * n
        self.done = threading.Event()

    def run(self):
        outs = [open(self.dir / f"in-{k}.log", "ab", buffering=0) for k in range(self.files)]
        start = time.monotonic()
        chunk = max(1, self.rate // 100)
        i = 0
        while i < self.n:
            due = start + i / self.rate
            now = time.monotonic()
            if due > now:
                time.sleep(due - now)
            end = min(self.n, i + chunk)
            per = {}
            for j in range(i, end):
                per.setdefault(j % self.files, []).append(self.corpus.line(j))
            for k, ls in per.items():
                outs[k].write(b"".join(ls))
            t = time.monotonic()
            for j in range(i, end):
                self.written_at[j] = t
            i = end
        for o in outs:
            o.close()
        self.done.set()


# --------------------------------------------------------------------------- targets


class PgTarget:
    name = "pg"

    def __init__(self, table, column):
        self.table, self.column = table, column

    def count(self):
        try:
            return int(psql(f"SELECT count(*) FROM {self.table}") or 0)
        except subprocess.CalledProcessError:
            return 0

    def books(self):
        """(rows, distinct sequence numbers, the set of them)."""
        out = sh(PG + ["-c", f"SELECT substring({self.column} from 'seq=([0-9]+)') FROM {self.table}"])
        seqs = [int(x) for x in out.split() if x.isdigit()]
        return len(seqs), set(seqs)

    def drop(self):
        psql(f"DROP TABLE IF EXISTS {self.table}")


class FileTarget:
    name = "file"

    def __init__(self, path):
        self.path = Path(path)

    def count(self):
        try:
            with open(self.path, "rb") as f:
                return sum(buf.count(b"\n") for buf in iter(lambda: f.read(1 << 20), b""))
        except FileNotFoundError:
            return 0

    def books(self):
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return 0, set()
        # One sequence number per stored line (an NDJSON record holds it twice: raw and
        # message).
        seqs = [int(m.group(1)) for m in map(SEQ.search, data.splitlines()) if m]
        return len(seqs), set(seqs)

    def drop(self):
        pass


# --------------------------------------------------------------------------- tools


def proc_cpu(pid):
    """User + system seconds of `pid` (all its threads)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK
    except (FileNotFoundError, IndexError, ValueError):
        return 0.0


class Tool:
    """A tool in one mode: knows how to prepare its target, start, and be killed."""

    def __init__(self, name, mode, work, input_dir, target_kind, args):
        self.name, self.mode, self.work, self.input = name, mode, work, input_dir
        self.args = args
        self.proc = None
        tag = f"peers_{name.replace('-', '_')}_{mode}_{os.getpid()}_{random.randrange(1 << 30)}"
        self.table = tag
        if target_kind == "pg":
            column = "convert_from(raw, 'UTF8')" if name == "ackline" else "msg"
            self.target = PgTarget(tag, column)
        else:
            self.target = FileTarget(work / "out.log")

    # Each tool's files and command line.
    def prepare(self):
        self.work.mkdir(parents=True, exist_ok=True)
        if self.target.name == "pg" and self.name != "ackline":
            psql(f"CREATE TABLE {self.table} (msg text)")
        if self.name == "rsyslog":
            self.conf = self.work / "rsyslog.conf"
            self.conf.write_text(rsyslog_conf(self))
        elif self.name == "syslog-ng":
            self.conf = self.work / "syslog-ng.conf"
            self.conf.write_text(syslog_ng_conf(self))

    def command(self):
        if self.name == "ackline":
            store = (f"postgres://postgres@127.0.0.1:5432/test" if self.target.name == "pg"
                     else f"ndjson:{self.target.path}")
            cmd = [self.args.ackline, "--data-dir", str(self.work / "data"), "run",
                   "--store", store, str(self.input / "*.log")]
            if self.mode == "fast":
                # Still durable: only the files are checked more often (default 250 ms).
                cmd[-1:-1] = ["--poll-interval", "20ms"]
            env = dict(os.environ, ACKLINE_STORE_TABLE=self.table)
            return cmd, env
        if self.name == "rsyslog":
            return ([self.args.rsyslogd, "-n", "-f", str(self.conf), "-i", str(self.work / "pid"),
                     "-M", self.args.rsyslog_modules], dict(os.environ))
        root = Path(self.args.syslog_ng_root)
        env = dict(os.environ, LD_LIBRARY_PATH=":".join(str(root / p) for p in (
            "usr/lib/syslog-ng", "usr/lib/x86_64-linux-gnu", "lib/x86_64-linux-gnu")))
        return ([str(root / "usr/sbin/syslog-ng"), "-F", "--no-caps", "-f", str(self.conf),
                 "-p", str(self.work / "pid"), "-R", str(self.work / "persist"),
                 "-c", str(self.work / "ctl"),
                 f"--module-path={root / 'usr/lib/syslog-ng/3.38'}"], env)

    def start(self):
        cmd, env = self.command()
        self.log = open(self.work / "tool.log", "ab")
        self.proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=self.log, start_new_session=True)

    def cpu(self):
        return proc_cpu(self.proc.pid) if self.proc else 0.0

    def kill9(self):
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.kill9()

    def log_tail(self, n=3):
        try:
            lines = (self.work / "tool.log").read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return "(no log)"
        return " | ".join(lines[-n:])

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def cleanup(self):
        self.stop()
        self.target.drop()


def rsyslog_conf(t):
    reliable = t.mode == "reliable"
    if t.target.name == "pg":
        action = ('action(type="ompgsql" server="127.0.0.1" port="5432" db="test" uid="postgres" '
                  'pwd="" template="peer_sql"')
    else:
        action = (f'action(type="omfile" file="{t.target.path}" template="peer_line" '
                  f'flushOnTXEnd="on" asyncWriting="off"')
    if reliable:
        action += (' queue.type="LinkedList" queue.filename="peerq" queue.saveOnShutdown="on"'
                   ' queue.maxDiskSpace="2g" queue.checkpointInterval="1"'
                   ' queue.syncqueuefiles="on" action.resumeRetryCount="-1")')
    else:
        action += ' action.resumeRetryCount="-1")'
    text = (HERE / "rsyslog.conf.in").read_text()
    for k, v in {"@WORK@": str(t.work), "@INPUT@": str(t.input), "@MODE@": t.mode,
                 "@TARGET@": t.target.name, "@TABLE@": t.table,
                 "@PERSIST@": "1" if reliable else "0", "@ACTION@": action}.items():
        text = text.replace(k, v)
    return text


def syslog_ng_conf(t):
    reliable = t.mode == "reliable"
    buf = (f' disk-buffer(reliable(yes) dir("{t.work}") disk-buf-size(2147483648)'
           ' mem-buf-size(16777216))' if reliable else "")
    if t.target.name == "pg":
        dest = ('destination d_peer { sql(type(pgsql) host("127.0.0.1") port("5432") '
                'username("postgres") password("") database("test") '
                f'table("{t.table}") columns("msg") values("${{MESSAGE}}") indexes() '
                f'flags(explicit-commits) batch-lines(1000) batch-timeout(100){buf}); }};')
    else:
        dest = (f'destination d_peer {{ file("{t.target.path}" template("${{MESSAGE}}\\n") '
                f'fsync({"yes" if reliable else "no"}){buf}); }};')
    text = (HERE / "syslog-ng.conf.in").read_text()
    for k, v in {"@INPUT@": str(t.input), "@MODE@": t.mode, "@TARGET@": t.target.name,
                 "@DESTINATION@": dest,
                 "@FLAGS@": "flags(flow-control);"}.items():
        text = text.replace(k, v)
    return text


# --------------------------------------------------------------------------- phases


def wait_count(tool, n, limit, poll=0.02):
    """Polls until the target holds n rows; returns the time it did, or None past `limit`
    seconds or when the tool died."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if tool.target.count() >= n:
            return time.monotonic()
        if not tool.alive():
            return None
        time.sleep(poll)
    return None


def new_tool(args, name, mode, base):
    work = Path(tempfile.mkdtemp(prefix=f"{name}-{mode}-", dir=base))
    input_dir = work / "input"
    input_dir.mkdir()
    return Tool(name, mode, work, input_dir, args.target, args)


def throughput(args, corpus, name, mode, base):
    t = new_tool(args, name, mode, base)
    try:
        t.prepare()
        write_all(corpus, t.input, args.files, args.lines)
        start = time.monotonic()
        t.start()
        done = wait_count(t, args.lines, args.throughput_limit)
        cpu = t.cpu()
        if not t.alive():
            return {"error": "the tool exited: " + t.log_tail()}
        if done is None:
            # Slower than the limit allows: the rate over the limit.
            done, stored = time.monotonic(), t.target.count()
        else:
            stored = args.lines
        secs = done - start
        if stored == 0:
            return {"error": f"nothing stored within {args.throughput_limit} s"}
        return {"lines_per_s": stored / secs, "cpu_us_per_line": cpu * 1e6 / stored,
                "seconds": secs, "stored": stored}
    finally:
        t.cleanup()


def latency(args, corpus, name, mode, base):
    t = new_tool(args, name, mode, base)
    try:
        t.prepare()
        for k in range(args.files):
            (t.input / f"in-{k}.log").touch()
        t.start()
        time.sleep(1.0)  # let the tool open its inputs; not a synchronisation of results
        n = args.rate * args.latency_seconds
        w = PacedWriter(corpus, t.input, args.files, n, args.rate)
        w.start()
        seen = []
        deadline = time.monotonic() + args.latency_seconds + args.timeout
        stored = 0
        while stored < n and time.monotonic() < deadline and t.alive():
            stored = t.target.count()
            seen.append((time.monotonic(), stored))
            time.sleep(0.02)
        w.join()
        lat = []
        j = 0
        for i in range(min(stored, n)):
            while j < len(seen) and seen[j][1] < i + 1:
                j += 1
            if j < len(seen):
                lat.append(max(0.0, seen[j][0] - w.written_at[i]))
        if len(lat) < n:
            return {"error": f"{len(lat)} of {n} stored"}
        lat.sort()
        return {"p50_ms": 1000 * lat[len(lat) // 2], "p99_ms": 1000 * lat[int(len(lat) * 0.99)]}
    finally:
        t.cleanup()


def chaos(args, corpus, name, mode, base, rng):
    t = new_tool(args, name, mode, base)
    try:
        t.prepare()
        for k in range(args.files):
            (t.input / f"in-{k}.log").touch()
        n = args.chaos_lines
        w = PacedWriter(corpus, t.input, args.files, n, args.chaos_rate)
        t.start()
        w.start()
        kills = 0
        last = 0
        while kills < args.chaos_rounds:
            step = rng.randrange(args.chaos_rate // 10, args.chaos_rate)
            want = last + step
            deadline = time.monotonic() + args.timeout
            while t.target.count() < want and time.monotonic() < deadline and t.alive():
                time.sleep(0.01)
            if w.done.is_set() and t.target.count() < want:
                break  # the writer finished before this round's progress: stop killing
            t.kill9()
            kills += 1
            last = t.target.count()
            t.start()
        w.join()
        # Quiet: every line stored and the count unchanged for 2 s (a duplicate may still
        # come), or short of that and unchanged for --quiet seconds (a tool may pause between
        # retries after a restart), or the timeout.
        deadline = time.monotonic() + args.timeout
        prev, since = -1, time.monotonic()
        while time.monotonic() < deadline:
            c = t.target.count()
            if c != prev:
                prev, since = c, time.monotonic()
            elif time.monotonic() - since > (2.0 if c >= n else args.quiet):
                break
            time.sleep(0.1)
        rows, seqs = t.target.books()
        lost = sum(1 for i in range(n) if i not in seqs)
        return {"kills": kills, "lines": n, "lost": lost, "duplicated": rows - len(seqs)}
    finally:
        t.cleanup()


# --------------------------------------------------------------------------- main


def main():
    # SIGTERM unwinds like Ctrl-C, so every started tool is stopped and its table dropped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--target", choices=["pg", "file"], default="pg")
    ap.add_argument("--tools", default="ackline,rsyslog,syslog-ng")
    ap.add_argument("--modes", default="reliable,fast")
    ap.add_argument("--phases", default="throughput,latency,chaos")
    ap.add_argument("--lines", type=int, default=200_000, help="throughput: lines per run")
    ap.add_argument("--files", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=3, help="throughput: runs per tool and mode")
    ap.add_argument("--rate", type=int, default=2000, help="latency: lines/s written")
    ap.add_argument("--latency-seconds", type=int, default=10)
    ap.add_argument("--chaos-rounds", type=int, default=20)
    ap.add_argument("--chaos-lines", type=int, default=60_000)
    ap.add_argument("--chaos-rate", type=int, default=2000)
    ap.add_argument("--throughput-limit", type=int, default=60,
                    help="throughput: a tool still short of --lines after this many seconds is "
                         "measured over them")
    ap.add_argument("--quiet", type=int, default=60,
                    help="chaos: seconds without progress, short of every line, before counting")
    ap.add_argument("--timeout", type=int, default=300)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--keep", action="store_true", help="keep the work directories (logs)")
    ap.add_argument("--ackline", default=str(REPO / "target/release/ackline"))
    ap.add_argument("--rsyslogd", default=shutil.which("rsyslogd") or "/usr/sbin/rsyslogd")
    ap.add_argument("--rsyslog-modules", default="/usr/lib/x86_64-linux-gnu/rsyslog")
    ap.add_argument("--syslog-ng-root", default=str(REPO / "target/peers/syslog-ng"))
    ap.add_argument("--loghub", default=str(REPO.parent / "shared/data/loghub"))
    args = ap.parse_args()

    rng = random.Random(args.seed)
    corpus = Corpus(loghub_lines(args.loghub))
    base = Path(tempfile.mkdtemp(prefix="ackline-peers-"))
    tools = args.tools.split(",")
    modes = args.modes.split(",")
    combos = [(t, m) for t in tools for m in modes]
    results = {f"{t}/{m}": {} for t, m in combos}
    try:
        if "throughput" in args.phases:
            for r in range(args.rounds):
                order = combos[r % len(combos):] + combos[:r % len(combos)]
                for t, m in order:
                    res = throughput(args, corpus, t, m, base)
                    results[f"{t}/{m}"].setdefault("throughput", []).append(res)
                    print(f"throughput round {r + 1} {t}/{m}: {res}", file=sys.stderr)
        if "latency" in args.phases:
            for t, m in combos:
                res = latency(args, corpus, t, m, base)
                results[f"{t}/{m}"]["latency"] = res
                print(f"latency {t}/{m}: {res}", file=sys.stderr)
        if "chaos" in args.phases:
            for t, m in combos:
                res = chaos(args, corpus, t, m, base, rng)
                results[f"{t}/{m}"]["chaos"] = res
                print(f"chaos {t}/{m}: {res}", file=sys.stderr)
    finally:
        if args.keep:
            print(f"work directories kept in {base}", file=sys.stderr)
        else:
            shutil.rmtree(base, ignore_errors=True)

    summary = {"target": args.target, "lines": args.lines, "files": args.files,
               "loghub_lines": len(corpus.loghub), "load_average_at_end": os.getloadavg(),
               "results": results}
    if args.json:
        print(json.dumps(summary, indent=2))
        return
    print(f"target {args.target}; {args.lines} lines x {args.rounds} rounds; {args.files} files")
    print(f"{'tool/mode':<22} {'lines/s (median)':>17} {'CPU us/line':>12} {'p50 ms':>8} "
          f"{'p99 ms':>8} {'kills':>6} {'lost':>6} {'dup':>6}")
    for key, r in results.items():
        tp = [x for x in r.get("throughput", []) if "error" not in x]
        lps = f"{statistics.median(x['lines_per_s'] for x in tp):,.0f}" if tp else "-"
        cpu = f"{statistics.median(x['cpu_us_per_line'] for x in tp):.1f}" if tp else "-"
        lat = r.get("latency", {})
        ch = r.get("chaos", {})
        print(f"{key:<22} {lps:>17} {cpu:>12} {lat.get('p50_ms', float('nan')):>8.1f} "
              f"{lat.get('p99_ms', float('nan')):>8.1f} {ch.get('kills', '-'):>6} "
              f"{ch.get('lost', '-'):>6} {ch.get('duplicated', '-'):>6}")


if __name__ == "__main__":
    main()
