#!/usr/bin/env python3
"""Measures what a CLI user sees: from alice pressing Enter (a line written to her `hchat peer` stdin) to bob's
stdout showing `[#general] alice: ...`. Real processes, real pipes, loopback. Usage:
    scripts/enter_to_line.py [path/to/hchat] [count] [--in-memory]
Prints p50/p90/p99/max in milliseconds. Messages are sent one at a time (each waits for the previous to show).
The nodes keep their data in a temporary folder (durable, as by default), or nowhere with --in-memory."""
import os, re, subprocess, sys, tempfile, time

args = [a for a in sys.argv[1:] if a != "--in-memory"]
memory = ["--in-memory"] if "--in-memory" in sys.argv else []
hchat = args[0] if len(args) > 0 else "target/release/hchat"
count = int(args[1]) if len(args) > 1 else 200
data = tempfile.TemporaryDirectory(prefix="hchat-latency")
os.environ["XDG_DATA_HOME"] = data.name

def start(args):
    p = subprocess.Popen([hchat, *args, *memory], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                         text=True, bufsize=1)
    deadline = time.time() + 10
    while time.time() < deadline:
        line = p.stdout.readline()
        m = re.search(r"listening on (\S+)", line)
        if m:
            return p, m.group(1)
    raise SystemExit(f"{args[0]} did not start")

def wait_line(p, pred, what):
    deadline = time.time() + 10
    while time.time() < deadline:
        line = p.stdout.readline().rstrip("\n")
        if pred(line):
            return line
    raise SystemExit(f"timed out waiting for {what}")

tracker, taddr = start(["tracker", "--port", "0"])
tport = taddr.rsplit(":", 1)[1]
procs = [tracker]
try:
    alice, _ = start(["peer", "--name", "alice", "--tracker-port", tport, "--join", "general"]); procs.append(alice)
    wait_line(alice, lambda l: l.startswith("* joined"), "alice to join")
    bob, _ = start(["peer", "--name", "bob", "--tracker-port", tport, "--join", "general"]); procs.append(bob)
    wait_line(bob, lambda l: l.startswith("* joined"), "bob to join")
    lat = []
    for i in range(count):
        t = time.perf_counter()
        alice.stdin.write(f"msg {i}\n"); alice.stdin.flush()
        wait_line(bob, lambda l: l == f"[#general] alice: msg {i}", f"msg {i}")
        lat.append((time.perf_counter() - t) * 1000)
    lat.sort()
    q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))]
    print(f"enter-to-line over {count} messages: p50 {q(0.5):.2f} ms, p90 {q(0.9):.2f} ms, p99 {q(0.99):.2f} ms, max {lat[-1]:.2f} ms")
finally:
    for p in procs:
        p.kill()
