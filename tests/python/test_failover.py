"""redis-py's RedisCluster, with its default retry settings, through a primary failover of a shoal-server cluster.

The test starts its own six nodes (3 primaries + 3 replicas, `--cluster-node-timeout 2000`, formed with
`redis-cli --cluster create ... --cluster-replicas 1 --cluster-yes`), writes `SET k{i} i` continuously
through one RedisCluster client, SIGKILLs one primary (by its pid) and keeps writing. The exceptions that
reach the application are counted by type, and the time from the kill until a write to the killed primary's
slots succeeds again is measured. Then the killed node is restarted on the same port, directory, nodes.conf
and flags, and must rejoin as a replica of the promoted node. Every loop is bounded in count and time;
the nodes are killed by their pids at the end, their logs printed if the test failed.
"""

import os
import signal
import subprocess
import sys
import time

import pytest
import redis
from redis.cluster import RedisCluster

from conftest import STARTUP_TIMEOUT, _die_with_parent, _ping
from test_cluster import NODES, _cluster_state, create_cluster, start_cluster_nodes

NODE_TIMEOUT_MS = 2000
WRITE_BEFORE_KILL = 1.0     # seconds of writes before the kill
WRITE_AFTER_RECOVERY = 1.0  # seconds of writes once the killed slots take writes again
FAILOVER_LIMIT = 15.0       # the killed slots must take writes again within this
REJOIN_LIMIT = 15.0         # the restarted node must be a synced replica within this
MAX_WRITES = 300_000        # a bound on the write loop besides its time bounds
ERROR_SLEEP = 0.05          # the application's pause after an exception


def _log(msg):
    sys.stderr.write(f"[failover] {msg}\n")
    sys.stderr.flush()


def _direct(port):
    return redis.Redis(host="127.0.0.1", port=port, socket_timeout=5, socket_connect_timeout=5)


def _cluster_nodes(port):
    """CLUSTER NODES of one node: {node_id: {"port", "flags", "master_id", "slots"}}."""
    r = _direct(port)
    try:
        text = r.execute_command("CLUSTER", "NODES").decode()
    finally:
        r.close()
    nodes = {}
    for line in text.splitlines():
        f = line.split(" ")
        slots = set()
        for s in f[8:]:
            if s.startswith("["):  # a slot being migrated or imported
                continue
            lo, _, hi = s.partition("-")
            slots.update(range(int(lo), int(hi or lo) + 1))
        nodes[f[0]] = {"port": int(f[1].split("@")[0].rsplit(":", 1)[1]), "flags": set(f[2].split(",")),
                       "master_id": f[3], "slots": slots}
    return nodes


def _replication(port):
    r = _direct(port)
    try:
        return r.info("replication")
    finally:
        r.close()


def _wait_cluster_ok(ports, known, limit, what, replicas=3):
    deadline = time.monotonic() + limit
    while True:
        try:
            states = [_cluster_state(p) for p in ports]
        except redis.RedisError as e:
            states = [repr(e)]
        if all(s == ("ok", str(known), replicas) for s in states):
            return
        assert time.monotonic() < deadline, \
            f"{what}: no cluster_state:ok with {replicas} replicas within {limit}s: {states}"
        time.sleep(0.1)


def _restart(server):
    """Start `server` again on its old port, with the same directory (so the same nodes.conf) and flags."""
    log = open(server.log_path, "ab")
    log.write(b"\n--- restarted by test_failover ---\n")
    log.flush()
    cmd = [str(server.binary), "--bind", "127.0.0.1", "--port", str(server.port),
           "--dir", str(server.workdir), *server.args]
    server.proc = subprocess.Popen(cmd, cwd=server.workdir, stdin=subprocess.DEVNULL, stdout=log,
                                   stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
    log.close()
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while not _ping(server.port):
        assert server.proc.poll() is None, f"the restarted node exited with {server.proc.returncode}\n{server.log()}"
        assert time.monotonic() < deadline, f"the restarted node did not answer PING within {STARTUP_TIMEOUT}s"
        time.sleep(0.02)


@pytest.fixture
def servers(request, tmp_path_factory):
    """Six formed cluster nodes (ServerProcess objects, so their pids are at hand)."""
    nodes = []
    try:
        ports = start_cluster_nodes(nodes, tmp_path_factory, "failover", NODE_TIMEOUT_MS)
        create_cluster(ports)
        _wait_cluster_ok(ports, NODES, 20, "after redis-cli --cluster create")
        yield nodes
    finally:
        for s in nodes:
            s.stop()
        rep = getattr(request.node, "rep_call", None)
        if rep is not None and rep.failed:
            for s in nodes:
                sys.stderr.write(f"--- shoal-server cluster node {s.port} log ---\n{s.log()[-8000:]}\n")


def test_redis_py_cluster_client_survives_primary_failover(servers):
    ports = [s.port for s in servers]
    by_port = {s.port: s for s in servers}
    rc = RedisCluster(host="127.0.0.1", port=ports[0])  # default retry, timeouts, everything
    try:
        _run(rc, ports, by_port)
    finally:
        rc.close()


def _run(rc, ports, by_port):
    # The victim: a primary other than the client's startup node; its replica should take over.
    topology = _cluster_nodes(ports[0])
    primaries = sorted((n for n in topology.values() if "master" in n["flags"] and n["slots"]),
                       key=lambda n: min(n["slots"]))
    assert len(primaries) == 3
    victim_id, victim = next((nid, n) for nid, n in topology.items()
                             if n in primaries and n["port"] != ports[0])
    killed_slots = frozenset(victim["slots"])
    heir = next(n for n in topology.values() if n["master_id"] == victim_id)
    _log(f"victim primary :{victim['port']} ({len(killed_slots)} slots), its replica :{heir['port']}")

    acked = {}          # i -> monotonic time of the SET's acknowledgement
    errors = {}         # exception type name -> count
    first_messages = {}  # exception type name -> its first message
    slowest = (0.0, None)  # the longest single SET call after the kill (seconds, outcome)
    first_error = last_error = None
    kill_at = recovered_at = None
    other_ok_during_outage = 0
    started = time.monotonic()
    for i in range(MAX_WRITES):
        now = time.monotonic()
        if kill_at is None and now - started >= WRITE_BEFORE_KILL:
            victim_proc = by_port[victim["port"]].proc
            os.kill(victim_proc.pid, signal.SIGKILL)
            victim_proc.wait(timeout=10)
            kill_at = time.monotonic()
            keys_before_kill = i
            _log(f"SIGKILLed pid {victim_proc.pid} (:{victim['port']}) after {i} writes")
        if recovered_at is not None and now - recovered_at >= WRITE_AFTER_RECOVERY:
            break
        if kill_at is not None and recovered_at is None and now - kill_at > FAILOVER_LIMIT + 2:
            break
        key = f"k{i}"
        try:
            assert rc.set(key, i) is True
        except redis.RedisError as e:
            failed = time.monotonic()
            name = type(e).__name__
            errors[name] = errors.get(name, 0) + 1
            first_messages.setdefault(name, str(e))
            if kill_at is not None:
                first_error = first_error or failed
                last_error = failed
                slowest = max(slowest, (failed - now, name))
            time.sleep(ERROR_SLEEP)
            continue
        done = time.monotonic()
        if kill_at is not None:
            slowest = max(slowest, (done - now, "ok"))
        acked[i] = done
        if kill_at is not None and recovered_at is None:
            if rc.keyslot(key) in killed_slots:
                recovered_at = done
            else:
                other_ok_during_outage += 1

    assert kill_at is not None, "the write loop ended before the kill"
    assert recovered_at is not None, (
        f"no write to the killed primary's slots succeeded within {FAILOVER_LIMIT}s of the kill; "
        f"exceptions seen: {errors}")
    failover = recovered_at - kill_at
    n_exc = sum(errors.values())
    _log(f"failover time (kill -> first acknowledged write to the killed slots): {failover:.2f} s")
    _log(f"exceptions raised to the application: {n_exc} {errors}")
    for name, msg in first_messages.items():
        _log(f"  first {name}: {msg}")
    if first_error is not None:
        _log(f"exceptions seen from +{first_error - kill_at:.2f} s to +{last_error - kill_at:.2f} s after the kill")
    _log(f"writes: {len(acked) + n_exc} attempted, {len(acked)} acknowledged; {other_ok_during_outage} writes to "
         f"the surviving primaries' slots succeeded during the outage; the slowest SET call after the kill took "
         f"{slowest[0]:.2f} s ({slowest[1]})")
    assert failover <= FAILOVER_LIMIT, f"failover took {failover:.2f}s"

    # Every key acknowledged after the kill was acknowledged by a live primary: all of them must read back,
    # through the same client.
    after_kill = sorted(i for i, t in acked.items() if t > kill_at)
    assert any(acked[i] > recovered_at for i in after_kill)

    def unread(indexes):
        bad = []
        for start in range(0, len(indexes), 1000):
            chunk = indexes[start:start + 1000]
            values = rc.mget_nonatomic([f"k{i}" for i in chunk])
            bad += [i for i, v in zip(chunk, values) if v != str(i).encode()]
        return bad

    missing = unread(after_kill)
    assert not missing, f"{len(missing)} of {len(after_kill)} keys acknowledged after the kill do not read back: " \
                        f"{missing[:10]}"
    before_kill = sorted(i for i in acked if i < keys_before_kill)
    lost = unread(before_kill)  # asynchronous replication may lose the last writes before the kill
    _log(f"{len(after_kill)} keys acknowledged after the kill read back; "
         f"{len(lost)} of {len(before_kill)} acknowledged before it are gone")

    # The replica took over the killed primary's slots, and the client routes there.
    survivors = [p for p in ports if p != victim["port"]]
    # (the dead node is still known, as a failed primary without slots; its replica is now a primary)
    _wait_cluster_ok(survivors, NODES, 10, "after the failover", replicas=2)
    slot = next(iter(killed_slots))
    assert rc.nodes_manager.get_node_from_slot(slot).port == heir["port"]
    assert all(heir["port"] == n["port"] for n in _cluster_nodes(survivors[0]).values()
               if n["slots"] & killed_slots)

    # Restart the killed node (same port, directory, nodes.conf and flags): it must come back as a replica.
    restart_at = time.monotonic()
    _restart(by_port[victim["port"]])
    deadline = restart_at + REJOIN_LIMIT
    while True:
        try:
            rep = _replication(victim["port"])
        except redis.RedisError as e:
            rep = {"error": repr(e)}
        if rep.get("role") == "slave" and rep.get("master_link_status") == "up":
            break
        assert time.monotonic() < deadline, f"the restarted node is not a synced replica within {REJOIN_LIMIT}s: {rep}"
        time.sleep(0.1)
    rejoin = time.monotonic() - restart_at
    assert int(rep["master_port"]) == heir["port"], rep
    # It resynchronized from the promoted node: the same keyspace (no writes are going on now).
    heir_r, back_r = _direct(heir["port"]), _direct(victim["port"])
    try:
        while (sizes := (heir_r.dbsize(), back_r.dbsize()))[0] != sizes[1]:
            assert time.monotonic() < deadline, f"DBSIZE of the promoted node and the restarted replica: {sizes}"
            time.sleep(0.1)
    finally:
        heir_r.close()
        back_r.close()
    _wait_cluster_ok(ports, NODES, max(1.0, deadline - time.monotonic()), "after the restart")
    _log(f"restarted node is a replica of :{rep['master_port']} with master_link_status:up "
         f"{rejoin:.2f} s after the restart, holding the same {sizes[0]} keys; every node reports cluster_state:ok")

    # The same client still works, on every shard, and nothing acknowledged after the kill went away.
    for j in range(300):
        assert rc.set(f"after-restart:{j}", j) is True
    assert rc.mget_nonatomic([f"after-restart:{j}" for j in range(300)]) == [str(j).encode() for j in range(300)]
    assert not unread(after_kill)
