#!/usr/bin/env python3
"""Memory per key of redis-server and shoal-server side by side: 1,000,000 x SET key:<n> <64 B> (optionally
with a TTL on every key), pipelined, measuring the growth of each server's resident set (VmRSS).

Usage: benches/scripts/memory-per-key.py [--ttl SECONDS] [--keys N] [--shoal target/release/shoal-server]
"""
import argparse
import os
import socket
import subprocess
import tempfile
import time


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def rss(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def wait_ready(port, timeout=10.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                if s.recv(64).startswith(b"+PONG"):
                    return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"server on {port} did not start")


def load(port, keys, ttl, batch=10000):
    value = b"x" * 64
    with socket.create_connection(("127.0.0.1", port)) as s:
        for start in range(0, keys, batch):
            parts = []
            for i in range(start, min(keys, start + batch)):
                k = b"key:%d" % i
                if ttl:
                    t = str(ttl).encode()
                    parts.append(b"*5\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$64\r\n%s\r\n$2\r\nEX\r\n$%d\r\n%s\r\n" % (len(k), k, value, len(t), t))
                else:
                    parts.append(b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$64\r\n%s\r\n" % (len(k), k, value))
            s.sendall(b"".join(parts))
            expected = (min(keys, start + batch) - start) * 5
            got = 0
            while got < expected:
                chunk = s.recv(1 << 20)
                if not chunk:
                    raise RuntimeError("connection closed")
                got += len(chunk)


def measure(name, argv, keys, ttl):
    port = free_port()
    with tempfile.TemporaryDirectory() as d:
        proc = subprocess.Popen(argv + ["--port", str(port), "--bind", "127.0.0.1", "--dir", d],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_ready(port)
            time.sleep(0.3)
            before = rss(proc.pid)
            load(port, keys, ttl)
            time.sleep(0.5)
            after = rss(proc.pid)
            return (after - before) / keys
        finally:
            proc.kill()
            proc.wait()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ttl", type=int, default=0)
    ap.add_argument("--keys", type=int, default=1_000_000)
    ap.add_argument("--shoal", default="target/release/shoal-server")
    a = ap.parse_args()
    r = measure("redis", ["redis-server", "--save", "", "--appendonly", "no"], a.keys, a.ttl)
    s = measure("shoal", [a.shoal], a.keys, a.ttl)
    ttl = f"TTL {a.ttl}s on every key" if a.ttl else "no TTL"
    print(f"{a.keys} keys, 64-byte values, {ttl}: redis {r:.1f} B/key, shoal {s:.1f} B/key, ratio {s / r:.2f}")


if __name__ == "__main__":
    main()
