"""redis-py's RedisCluster against a six-node shoal-server cluster, with protocol=2 and protocol=3.

The module-scoped `cluster` fixture starts six nodes on free loopback ports (the same `ServerProcess` as the
other tests, each with its own bus port) and forms them with
`redis-cli --cluster create ... --cluster-replicas 1 --cluster-yes`; every wait is bounded and the nodes are
killed by their pids when the module ends, their logs printed if a test failed.
"""

import subprocess
import sys
import time

import pytest
import redis
from redis.cluster import RedisCluster
from redis.exceptions import RedisClusterException, ResponseError

from conftest import ServerProcess, free_port, shoal_server_bin

NODES = 6
KEYS = 100_000
BATCH = 1_000
CROSSSLOT = "Keys in request don't hash to the same slot"


def start_cluster_nodes(nodes, tmp_path_factory, prefix, node_timeout_ms):
    """Starts NODES cluster-enabled shoal-servers, appending each to `nodes` as it starts (the caller stops
    them, also when a later one fails). Returns their ports."""
    binary = shoal_server_bin()
    for i in range(NODES):
        workdir = tmp_path_factory.mktemp(f"{prefix}-node{i}")
        args = ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                "--cluster-node-timeout", str(node_timeout_ms), "--cluster-port", str(free_port())]
        nodes.append(ServerProcess(binary, workdir, args).start())
    return [s.port for s in nodes]


def create_cluster(ports):
    """`redis-cli --cluster create ... --cluster-replicas 1 --cluster-yes`, which must cover every slot."""
    out = subprocess.run(
        ["redis-cli", "--cluster", "create", *[f"127.0.0.1:{p}" for p in ports],
         "--cluster-replicas", "1", "--cluster-yes"],
        capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and "[OK] All 16384 slots covered." in out.stdout, out.stdout + out.stderr


def _cluster_state(port):
    r = redis.Redis(host="127.0.0.1", port=port, socket_timeout=5)
    try:
        info = r.execute_command("CLUSTER", "INFO").decode()
        nodes = r.execute_command("CLUSTER", "NODES").decode()
    finally:
        r.close()
    fields = dict(l.split(":", 1) for l in info.splitlines() if ":" in l)
    replicas = sum(1 for l in nodes.splitlines() if "slave" in l.split(" ")[2].split(","))
    return fields.get("cluster_state"), fields.get("cluster_known_nodes"), replicas


@pytest.fixture(scope="module")
def cluster(request, tmp_path_factory):
    """Six formed nodes; yields their ports (primaries first)."""
    servers = []
    try:
        ports = start_cluster_nodes(servers, tmp_path_factory, "cluster", 2000)
        started = time.monotonic()
        create_cluster(ports)
        sys.stderr.write(f"redis-cli --cluster create: {1000 * (time.monotonic() - started):.0f} ms\n")
        deadline = time.monotonic() + 20
        while True:
            states = [_cluster_state(p) for p in ports]
            if all(s == ("ok", "6", 3) for s in states):
                break
            assert time.monotonic() < deadline, f"the cluster did not converge: {states}"
            time.sleep(0.1)
        yield ports
    finally:
        for s in servers:
            s.stop()
        if request.session.testsfailed:
            for s in servers:
                sys.stderr.write(f"--- shoal-server cluster node {s.port} log ---\n{s.log()[-8000:]}\n")


@pytest.fixture(params=[2, 3], ids=["resp2", "resp3"])
def rc(request, cluster):
    client = RedisCluster(host="127.0.0.1", port=cluster[0], protocol=request.param,
                          socket_timeout=10, socket_connect_timeout=5)
    client.test_protocol = request.param
    yield client
    client.close()


def test_writes_and_reads_back_100k_keys(rc):
    tag = f"p{rc.test_protocol}"
    key = lambda i: f"{tag}:key:{i}"  # noqa: E731 - untagged: the keys spread over every slot
    # Cluster pipelines: redis-py groups the commands by node and sends each group as one pipeline.
    for start in range(0, KEYS, 10 * BATCH):
        pipe = rc.pipeline(transaction=False)
        for i in range(start, start + 10 * BATCH):
            pipe.set(key(i), i)
        assert all(r is True for r in pipe.execute())
    # Read back: half through pipelines of GET, half through mget_nonatomic (split by slot).
    for start in range(0, KEYS // 2, 10 * BATCH):
        pipe = rc.pipeline(transaction=False)
        for i in range(start, start + 10 * BATCH):
            pipe.get(key(i))
        assert pipe.execute() == [str(i).encode() for i in range(start, start + 10 * BATCH)]
    for start in range(KEYS // 2, KEYS, BATCH):
        keys = [key(i) for i in range(start, start + BATCH)]
        assert rc.mget_nonatomic(keys) == [str(i).encode() for i in range(start, start + BATCH)]
    assert rc.get(key(KEYS - 1)) == str(KEYS - 1).encode()
    sizes = rc.dbsize(target_nodes=RedisCluster.PRIMARIES)
    total = sum(sizes.values()) if isinstance(sizes, dict) else sizes
    assert total >= KEYS


def test_hash_tagged_multi_key_commands(rc):
    pairs = {f"{{user:42}}:f{i}": f"v{i}" for i in range(50)}
    assert rc.mset(pairs) is True
    assert rc.mget(list(pairs)) == [v.encode() for v in pairs.values()]
    assert rc.exists(*list(pairs)[:10]) == 10
    # redis-py blocks MSET, MGET and multi-key DEL in cluster pipelines; EXISTS of several keys goes through.
    pipe = rc.pipeline(transaction=False)
    pipe.set("{user:43}:a", "1")
    pipe.set("{user:43}:b", "2")
    pipe.exists("{user:43}:a", "{user:43}:b", "{user:43}:none")
    pipe.delete("{user:43}:a")
    pipe.get("{user:43}:a")
    pipe.get("{user:43}:b")
    assert pipe.execute() == [True, True, 2, 1, None, b"2"]
    assert rc.delete("{user:43}:a", "{user:43}:b") == 1
    assert rc.rename("{user:42}:f0", "{user:42}:renamed") is True
    assert rc.get("{user:42}:renamed") == b"v0"


def test_crossslot_where_keys_are_in_different_slots(rc):
    assert rc.keyslot("a") != rc.keyslot("b")
    rc.set("a", "1")
    # redis-py refuses some cross-slot commands itself ...
    with pytest.raises(RedisClusterException):
        rc.mset({"a": "1", "b": "2"})
    # ... and sends others to the first key's node, which refuses them.
    node = rc.get_node_from_key("a")
    for cmd in (("MSET", "a", "1", "b", "2"), ("MGET", "a", "b"), ("RENAME", "a", "b"), ("DEL", "a", "b")):
        with pytest.raises(ResponseError, match=CROSSSLOT):
            rc.execute_command(*cmd, target_nodes=node)
    direct = redis.Redis(host=node.host, port=node.port, socket_timeout=5)
    try:
        with pytest.raises(ResponseError) as e:
            direct.execute_command("MSETNX", "a", "1", "b", "2")
        assert str(e.value) == f"{CROSSSLOT}"
    finally:
        direct.close()
    assert rc.get("a") == b"1"


def test_topology_replies_are_parsed(rc, cluster):
    slots = rc.cluster_slots()
    assert sorted(slots) == [(0, 5460), (5461, 10922), (10923, 16383)]
    primaries = {v["primary"] for v in slots.values()}
    assert {p for _, p in primaries} == set(cluster[:3])
    assert all(v["replicas"] == [] or all(r[1] in cluster for r in v["replicas"]) for v in slots.values())

    shards = rc.cluster_shards()
    assert len(shards) == 3
    seen = set()
    for shard in shards:
        nodes = shard.get("nodes", shard.get(b"nodes"))
        ranges = shard.get("slots", shard.get(b"slots"))
        flat = [x for r in ranges for x in (r if isinstance(r, (list, tuple)) else [r])]
        assert len(flat) == 2 and 0 <= flat[0] <= flat[1] <= 16383
        roles = sorted(n[b"role"] for n in nodes)
        assert roles == [b"master", b"replica"]
        for n in nodes:
            assert n[b"ip"] == b"127.0.0.1" and n[b"port"] in cluster and len(n[b"id"]) == 40
            assert n[b"health"] in (b"online", b"loading")
            seen.add(n[b"port"])
    assert seen == set(cluster)

    nodes = rc.cluster_nodes()
    assert len(nodes) == 6
    masters = {addr: n for addr, n in nodes.items() if "master" in n["flags"]}
    replicas = {addr: n for addr, n in nodes.items() if "slave" in n["flags"]}
    assert len(masters) == 3 and len(replicas) == 3
    master_ids = {n["node_id"] for n in masters.values()}
    assert all(n["master_id"] in master_ids and n["slots"] == [] for n in replicas.values())
    assert sorted(tuple(map(int, s)) for n in masters.values() for s in n["slots"]) == sorted(slots)
    assert all(n["connected"] for n in nodes.values())

    info = rc.cluster_info()
    assert info["cluster_state"] == "ok" and int(info["cluster_known_nodes"]) == 6
    assert int(info["cluster_slots_assigned"]) == 16384
