"""A user's own test setup, as Prefect's docs write it: one Prefect test server for the whole session."""

from __future__ import annotations

import http.server
import json
import os
import threading
from collections.abc import Iterator

import pytest
from prefect.testing.utilities import prefect_test_harness

# What this process looked like before any test ran: the user's tests compare with it.
WATCHED = ("PREFECT_", "SSL_", "REQUESTS_", "CURL_CA_BUNDLE")
BASELINE = {k: v for k, v in os.environ.items() if k.startswith(WATCHED) or k.lower().endswith("_proxy")}


@pytest.fixture(autouse=True, scope="session")
def prefect_test_server() -> Iterator[None]:
    with prefect_test_harness():
        yield


class _Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (the standard library's name)
        body = json.dumps({"path": self.path}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="session")
def local_server() -> Iterator[str]:
    """A plain HTTP server on loopback, as a user's integration tests start one."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hello)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
