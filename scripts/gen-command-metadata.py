#!/usr/bin/env python3
"""Captures command metadata (COMMAND INFO and COMMAND DOCS, in RESP3) from a running Redis-compatible
reference server, for the commands Shoal implements, into server/src/commands.json.

Shoal answers COMMAND, COMMAND INFO and COMMAND DOCS from this file, and its dispatcher takes each command's
arity, flags and key positions from it, so the reply types and values match the reference exactly.

Usage: scripts/gen-command-metadata.py PORT > server/src/commands.json

Frames are stored with their RESP3 type: a JSON string is a bulk string, a number an integer,
a list an array, {"s": ...} a simple string, {"set": [...]} a set, {"map": [[k, v], ...]} a map,
{"null": true} a null.
"""
import json
import socket
import sys

# Commands Shoal implements or is about to implement (containers list the subcommands that exist).
COMMANDS = """
append decr decrby get getdel getex getrange getset incr incrby incrbyfloat lcs mget mset msetnx psetex set setex
setnx setrange strlen substr
copy del dump exists expire expireat expiretime keys move object persist pexpire pexpireat pexpiretime pttl
randomkey rename renamenx restore scan sort sort_ro touch ttl type unlink wait migrate
auth client echo hello ping quit reset select swapdb
command config dbsize debug flushall flushdb info lastsave memory monitor save shutdown time bgsave bgrewriteaof
role replicaof slaveof sync psync replconf failover readonly readwrite asking cluster latency slowlog lolwut
hdel hexists hget hgetall hincrby hincrbyfloat hkeys hlen hmget hmset hrandfield hscan hset hsetnx hstrlen hvals
""".split()


class Reader:
    def __init__(self, sock):
        self.f = sock.makefile("rb")

    def line(self):
        line = self.f.readline()
        if not line.endswith(b"\r\n"):
            raise EOFError("short line")
        return line[:-2]

    def read(self):
        line = self.line()
        t, rest = line[:1], line[1:]
        if t == b"+":
            return {"s": rest.decode()}
        if t == b"-":
            raise RuntimeError(rest.decode())
        if t == b":":
            return int(rest)
        if t == b"$":
            n = int(rest)
            data = self.f.read(n + 2)[:-2]
            return data.decode()
        if t in (b"*", b"~", b">"):
            items = [self.read() for _ in range(int(rest))]
            return {"set": items} if t == b"~" else items
        if t == b"%":
            return {"map": [[self.read(), self.read()] for _ in range(int(rest))]}
        if t == b"_":
            return {"null": True}
        if t == b"#":
            return rest == b"t"
        raise RuntimeError(f"unexpected type {t!r}")


def command(sock, reader, *args):
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = a.encode()
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    sock.sendall(out)
    return reader.read()


def main():
    port = int(sys.argv[1])
    sock = socket.create_connection(("127.0.0.1", port))
    reader = Reader(sock)
    command(sock, reader, "HELLO", "3")
    result = {}
    for name in COMMANDS:
        info = command(sock, reader, "COMMAND", "INFO", name)
        if not info or info[0] == {"null": True}:
            print(f"skipping unknown command {name}", file=sys.stderr)
            continue
        docs = command(sock, reader, "COMMAND", "DOCS", name)
        docs_map = dict((k, v) for k, v in docs["map"])
        result[name] = {"info": info[0], "docs": docs_map.get(name)}
    json.dump(result, sys.stdout, indent=None, separators=(",", ":"), sort_keys=False)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
