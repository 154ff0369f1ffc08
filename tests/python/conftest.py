"""pytest fixtures: a shoal-server process per test, on a free loopback port, in its own temp dir.

The binary is `$SHOAL_SERVER_BIN` if set, else `<target>/release/shoal-server`, else `<target>/debug/shoal-server`,
where `<target>` is `$CARGO_TARGET_DIR` or the workspace's `target/` (the same rules as the Rust tests, which
use the profile they were built with). The server is killed by its pid when the test ends, pass or fail; its
captured stdout/stderr is printed when the test failed.
"""

import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

WORKSPACE = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT = 10.0


def shoal_server_bin() -> Path:
    env = os.environ.get("SHOAL_SERVER_BIN")
    if env:
        return Path(env)
    target = Path(os.environ.get("CARGO_TARGET_DIR", WORKSPACE / "target"))
    for profile in ("release", "debug"):
        p = target / profile / "shoal-server"
        if p.exists():
            return p
    pytest.fail(
        f"shoal-server not found under {target}/release or {target}/debug: "
        "build it with `cargo build --release -p shoal-server` or set SHOAL_SERVER_BIN",
        pytrace=False,
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent():
    # SIGKILL the server if the test process dies, so none outlives a killed test run.
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:
        pass


def _ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.settimeout(0.5)
            s.sendall(b"*1\r\n$4\r\nPING\r\n")
            data = s.recv(64)
            return data[:1] in (b"+", b"-")
    except OSError:
        return False


class ServerProcess:
    def __init__(self, binary: Path, workdir: Path, args=()):
        self.binary = binary
        self.workdir = workdir
        self.args = list(args)
        self.proc = None
        self.port = None
        self.log_path = workdir / "server.log"

    def start(self):
        last = ""
        for _attempt in range(3):
            self.port = free_port()
            log = open(self.log_path, "ab")
            cmd = [str(self.binary), "--bind", "127.0.0.1", "--port", str(self.port),
                   "--dir", str(self.workdir), *self.args]
            self.proc = subprocess.Popen(cmd, cwd=self.workdir, stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=subprocess.STDOUT,
                                         preexec_fn=_die_with_parent)
            log.close()
            deadline = time.monotonic() + STARTUP_TIMEOUT
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    last = f"exited with {self.proc.returncode}"
                    break
                if _ping(self.port):
                    return self
                time.sleep(0.02)
            else:
                last = f"no PING reply within {STARTUP_TIMEOUT}s"
            self.stop()
        raise RuntimeError(f"{self.binary} did not start: {last}\n{self.log()}")

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-65536:]
        except OSError:
            return ""

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()  # SIGKILL to this pid only
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


@pytest.fixture
def shoal_server(request, tmp_path):
    """A running shoal-server; `.port` is its port."""
    server = ServerProcess(shoal_server_bin(), tmp_path).start()
    yield server
    server.stop()
    failed = any(getattr(request.node, "rep_" + w, None) is not None
                 and getattr(request.node, "rep_" + w).failed for w in ("setup", "call"))
    if failed:
        sys.stderr.write(f"--- shoal-server (port {server.port}) log ---\n{server.log()}\n--- end of log ---\n")
