"""redis-py against shoal-server, over RESP2 (protocol=2) and RESP3 (protocol=3)."""

import time

import pytest
import redis


@pytest.fixture(params=[2, 3], ids=["resp2", "resp3"])
def r(request, shoal_server):
    client = redis.Redis(host="127.0.0.1", port=shoal_server.port, protocol=request.param,
                         decode_responses=True, socket_timeout=10, socket_connect_timeout=5)
    yield client
    client.close()


@pytest.fixture
def rb(shoal_server):
    """Bytes in and out (no decoding), RESP2."""
    client = redis.Redis(host="127.0.0.1", port=shoal_server.port, socket_timeout=10)
    yield client
    client.close()


def test_ping_echo_time(r):
    assert r.ping() is True
    assert r.echo("hello") == "hello"
    secs, micros = r.time()
    assert abs(secs - time.time()) < 60
    assert 0 <= micros < 1_000_000


def test_strings(r):
    assert r.set("k", "v") is True
    assert r.get("k") == "v"
    assert r.get("missing") is None
    assert r.set("k", "v2", nx=True) is None
    assert r.set("nx", "v", nx=True) is True
    assert r.set("k", "v3", xx=True) is True
    assert r.set("xx-missing", "v", xx=True) is None
    assert r.set("k", "v4", get=True) == "v3"
    assert r.getset("k", "v5") == "v4"
    assert r.getdel("k") == "v5"
    assert r.getdel("k") is None
    assert r.setnx("k", "a") is True
    assert r.setnx("k", "b") is False
    assert r.mset({"a": "1", "b": "2", "c": "3"}) is True
    assert r.mget("a", "b", "missing", "c") == ["1", "2", None, "3"]
    assert r.msetnx({"a": "x", "new": "y"}) is False
    assert r.msetnx({"n1": "x", "n2": "y"}) is True
    assert r.incr("counter") == 1
    assert r.incrby("counter", 10) == 11
    assert r.decr("counter") == 10
    assert r.decrby("counter", 20) == -10
    assert r.incrbyfloat("f", 1.5) == 1.5
    assert r.incrbyfloat("f", -0.25) == 1.25
    assert r.get("f") == "1.25"
    assert r.append("s", "hello") == 5
    assert r.append("s", " world") == 11
    assert r.strlen("s") == 11
    assert r.getrange("s", 0, 4) == "hello"
    assert r.getrange("s", -5, -1) == "world"
    assert r.setrange("s", 6, "WORLD") == 11
    assert r.get("s") == "hello WORLD"
    assert r.lcs("s", "a") == ""
    r.mset({"l1": "ohmytext", "l2": "mynewtext"})
    assert r.lcs("l1", "l2") == "mytext"
    assert r.lcs("l1", "l2", len=True) == 6
    with pytest.raises(redis.ResponseError, match="value is not an integer or out of range"):
        r.incr("s")
    with pytest.raises(redis.ResponseError, match="value is not a valid float"):
        r.incrbyfloat("s", 1)
    with pytest.raises(redis.ResponseError, match="increment or decrement would overflow"):
        r.set("big", 2**63 - 1)
        r.incr("big")


def test_binary_values(rb):
    value = bytes(range(256)) * 4
    assert rb.set(b"\x00key\xff", value) is True
    assert rb.get(b"\x00key\xff") == value
    assert rb.strlen(b"\x00key\xff") == 1024
    assert rb.getrange(b"\x00key\xff", 0, 3) == b"\x00\x01\x02\x03"


def test_expiry(r):
    r.set("k", "v", ex=100)
    assert r.ttl("k") in (99, 100)
    assert 98_000 <= r.pttl("k") <= 100_000
    assert r.persist("k") is True
    assert r.ttl("k") == -1
    assert r.ttl("missing") == -2
    assert r.expire("k", 50) is True
    assert r.expire("k", 10, gt=True) is False
    assert r.expire("k", 100, gt=True) is True
    assert r.expire("k", 10, lt=True) is True
    assert r.ttl("k") in (9, 10)
    assert r.expire("k", 10, nx=True) is False
    assert r.expireat("k", 33177117420) is True
    assert r.expiretime("k") == 33177117420
    assert r.pexpireat("k", 33177117420123) is True
    assert r.pexpiretime("k") == 33177117420123
    assert r.expire("missing", 10) is False
    assert r.getex("k", persist=True) == "v"
    assert r.ttl("k") == -1
    assert r.getex("k", px=100_000) == "v"
    r.set("short", "v", px=100)
    r.psetex("short2", 100, "v")
    r.execute_command("SETEX", "long", 100, "v")
    r.set("keep", "v", ex=100)
    r.set("keep", "w", keepttl=True)
    assert r.ttl("keep") in (99, 100)
    time.sleep(0.3)
    assert r.get("short") is None
    assert r.exists("short", "short2", "long") == 1
    with pytest.raises(redis.ResponseError, match="invalid expire time in 'set' command"):
        r.set("k", "v", ex=0)


def test_pipelines(r):
    with r.pipeline(transaction=False) as p:
        for i in range(1000):
            p.set(f"p:{i}", i)
        assert p.execute() == [True] * 1000
    with r.pipeline(transaction=False) as p:
        for i in range(1000):
            p.get(f"p:{i}")
        assert p.execute() == [str(i) for i in range(1000)]
    with r.pipeline(transaction=False) as p:
        p.incr("pc").set("x", "y").incr("x").get("x").expire("x", 100).ttl("x")
        res = p.execute(raise_on_error=False)
    assert res[0] == 1 and res[1] is True
    assert isinstance(res[2], redis.ResponseError)
    assert res[3:] == ["y", True, 100]
    assert r.dbsize() == 1002


def test_scan_iter(r):
    with r.pipeline(transaction=False) as p:
        for i in range(3000):
            p.set(f"user:{i}" if i % 3 == 0 else f"item:{i}", i)
        p.execute()
    users = list(r.scan_iter(match="user:*", count=100))
    assert len(users) == len(set(users)) == 1000
    assert all(k.startswith("user:") for k in users)
    everything = set(r.scan_iter())
    assert len(everything) == 3000
    assert set(r.scan_iter(_type="string", match="item:1*")) == {k for k in everything if k.startswith("item:1")}
    assert list(r.scan_iter(match="nothing*")) == []
    cursor, keys = r.scan(0, match="nothing*", count=10_000)
    assert (cursor, keys) == (0, [])
    assert sorted(r.keys("user:1?")) == sorted(f"user:{i}" for i in range(10, 20) if i % 3 == 0)


def test_keyspace(r):
    r.mset({"a": "1", "b": "2"})
    assert r.exists("a", "b", "missing") == 2
    assert r.type("a") == "string"
    assert r.type("missing") == "none"
    assert r.rename("a", "a2") is True
    assert r.renamenx("a2", "b") is False
    assert r.copy("b", "b2") is True
    assert r.copy("b", "b2") is False
    assert r.copy("b", "b2", replace=True) is True
    assert r.move("b2", 1) is True
    assert r.randomkey() in ("a2", "b")
    assert r.touch("a2", "b", "missing") == 2
    assert r.object("encoding", "b") == "int"
    assert r.unlink("a2") == 1
    assert r.delete("b", "missing") == 1
    assert r.dbsize() == 0
    assert r.randomkey() is None
    assert r.swapdb(0, 1) is True  # b2 was moved to db 1
    assert r.dbsize() == 1
    assert r.get("b2") == "2"
    assert r.flushall() is True


def test_client_name_and_list(r, shoal_server):
    assert r.client_setname("py-client") is True
    assert r.client_getname() == "py-client"
    clients = r.client_list()
    assert isinstance(clients, list) and clients
    me = [c for c in clients if c.get("name") == "py-client"]
    assert len(me) == 1, clients
    for field in ("id", "addr", "laddr", "fd", "age", "idle", "flags", "db", "cmd", "resp"):
        assert field in me[0], (field, me[0])
    assert me[0]["cmd"] == "client|list"
    assert me[0]["addr"].startswith("127.0.0.1:")
    assert me[0]["laddr"] == f"127.0.0.1:{shoal_server.port}"
    assert int(me[0]["id"]) == r.client_id()
    info = r.client_info()
    assert info["name"] == "py-client"
    assert info["resp"] == str(r.connection_pool.connection_kwargs.get("protocol", 2))
    with pytest.raises(redis.ResponseError, match="Client names cannot contain spaces"):
        r.client_setname("bad name")
    other = redis.Redis(host="127.0.0.1", port=shoal_server.port, decode_responses=True, socket_timeout=10)
    other.client_setname("other")
    names = sorted(c["name"] for c in r.client_list())
    assert "other" in names and "py-client" in names
    other.close()


def test_info(r):
    r.mset({"a": "1", "b": "2"})
    r.set("e", "v", ex=100)
    info = r.info()
    for key in ("redis_version", "tcp_port", "uptime_in_seconds", "connected_clients", "used_memory",
                "used_memory_human", "maxmemory", "maxmemory_policy", "total_commands_processed",
                "keyspace_hits", "keyspace_misses", "expired_keys", "evicted_keys"):
        assert key in info, key
    assert isinstance(info["used_memory"], int) and info["used_memory"] > 0
    assert info["connected_clients"] >= 1
    assert info["db0"]["keys"] == 3
    assert info["db0"]["expires"] == 1
    keyspace = r.info("keyspace")
    assert keyspace["db0"]["keys"] == 3
    assert set(keyspace["db0"]) >= {"keys", "expires", "avg_ttl"}
    memory = r.info("memory")
    assert "used_memory" in memory and "redis_version" not in memory
    stats = r.info("stats")
    assert stats["total_commands_processed"] > 0
    assert isinstance(r.info("server")["process_id"], int)
    assert r.info("nosuchsection") == {}
    everything = r.info("everything")
    assert "used_memory" in everything and "db0" in everything


def test_config(r):
    cfg = r.config_get("maxmemory*")
    assert {"maxmemory", "maxmemory-policy", "maxmemory-samples"} <= set(cfg)
    assert cfg["maxmemory"] == "0"
    assert r.config_set("maxmemory", "100mb") is True
    assert r.config_get("maxmemory") == {"maxmemory": "104857600"}
    assert r.config_set("maxmemory-policy", "allkeys-lru") is True
    assert r.config_get("maxmemory-policy") == {"maxmemory-policy": "allkeys-lru"}
    assert r.config_get("nosuchparameter") == {}
    with pytest.raises(redis.ResponseError, match="argument must be a memory value"):
        r.config_set("maxmemory", "lots")
    with pytest.raises(redis.ResponseError, match="Unknown option or number of arguments for CONFIG SET"):
        r.config_set("nosuchparameter", "1")
    assert r.config_set("maxmemory", 0) is True


def test_command_introspection(r):
    assert r.command_count() > 0
    got = r.execute_command("COMMAND", "INFO", "get")
    # redis-py parses COMMAND INFO into {name: {"name", "arity", "flags", ...}}
    assert got["get"]["arity"] == 2, got
    assert got["get"]["first_key_pos"] == 1 and "readonly" in got["get"]["flags"], got
    assert r.command_getkeys("SET", "k", "v") == ["k"]
    assert r.command_getkeys("MSET", "a", "1", "b", "2") == ["a", "b"]


def test_errors(r):
    with pytest.raises(redis.ResponseError, match="unknown command 'NOSUCHCOMMAND', with args beginning with: 'x'"):
        r.execute_command("NOSUCHCOMMAND", "x")
    with pytest.raises(redis.ResponseError, match="wrong number of arguments for 'get' command"):
        r.execute_command("GET")
    with pytest.raises(redis.ResponseError, match="syntax error"):
        r.execute_command("SET", "a", "b", "NX", "XX")
    with pytest.raises(redis.ResponseError, match="DB index is out of range"):
        r.execute_command("SELECT", 100)
    assert r.ping() is True


def test_hello(r):
    proto = r.connection_pool.connection_kwargs.get("protocol", 2)
    hello = r.execute_command("HELLO", proto)
    if proto == 3:
        assert hello["proto"] == 3
    else:
        # RESP2: a flat list, which redis-py turns into a dict as well
        hello = hello if isinstance(hello, dict) else dict(zip(hello[::2], hello[1::2]))
        assert hello["proto"] == 2
    assert {"server", "version", "proto", "id", "mode", "role", "modules"} <= set(hello)
