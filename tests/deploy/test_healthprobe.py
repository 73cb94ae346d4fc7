"""The image's health check probes where the server listens, not always 127.0.0.1."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from service.healthprobe import probe_url
from tests.conftest import REPO


class Ready(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/readyz" else 404)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server_on_127_0_0_2() -> Iterator[int]:
    """A ready server bound to one loopback address other than 127.0.0.1, whose port on
    127.0.0.1 is held, bound but not listening: nothing else (another test process, another
    test worker) can listen there while the test says nothing does."""
    for _ in range(20):
        server = ThreadingHTTPServer(("127.0.0.2", 0), Ready)
        port = server.server_address[1]
        guard = socket.socket()
        try:
            guard.bind(("127.0.0.1", port))
            break
        except OSError:  # taken on 127.0.0.1 already: another port
            guard.close()
            server.server_close()
    else:
        pytest.fail("no port free on both 127.0.0.2 and 127.0.0.1")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield port
    server.shutdown()
    server.server_close()
    guard.close()


def probe(host: str, port: int) -> int:
    env = {**os.environ, "VIGIL_HOST": host, "VIGIL_PORT": str(port)}
    return subprocess.run([sys.executable, "-m", "service.healthprobe"], check=False, env=env, cwd=REPO, timeout=30).returncode


def test_a_server_bound_to_one_address_is_probed_there(server_on_127_0_0_2: int) -> None:
    assert probe("127.0.0.2", server_on_127_0_0_2) == 0
    assert probe("0.0.0.0", server_on_127_0_0_2) == 1  # a wildcard is probed on 127.0.0.1, where nothing listens


def test_wildcards_are_probed_on_loopback_and_ipv6_is_bracketed() -> None:
    assert probe_url("0.0.0.0", 8000) == "http://127.0.0.1:8000/readyz"
    assert probe_url("::", 9000) == "http://[::1]:9000/readyz"
    assert probe_url("fd00::5", 80) == "http://[fd00::5]:80/readyz"
    assert probe_url("10.1.2.3", 8000) == "http://10.1.2.3:8000/readyz"
