"""The CLI's API client waits out a short rate limit instead of failing a long read."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import click
import pytest

from owm_cli.api_client import get_json, post_json


class Limited(BaseHTTPRequestHandler):
    """Answers 429 with the class's ``retry_after`` ``refusals`` times, then 200."""

    refusals = 1
    retry_after = "1"
    seen = 0

    def _answer(self) -> None:
        type(self).seen += 1
        if type(self).seen <= self.refusals:
            body = json.dumps({"code": "rate-limited", "detail": "slow down"}).encode()
            self.send_response(429)
            self.send_header("Retry-After", self.retry_after)
            self.send_header("Content-Type", "application/problem+json")
        else:
            body = json.dumps({"ok": type(self).seen}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = _answer

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self._answer()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    Limited.refusals, Limited.retry_after, Limited.seen = 1, "1", 0
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Limited)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1/governance/log"
    httpd.shutdown()
    httpd.server_close()


def test_a_short_rate_limit_is_waited_out_and_the_request_sent_again(
    server: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert get_json(server) == {"ok": 2}
    Limited.seen = 0
    assert post_json(server, b"{}") == {"ok": 2}
    assert capsys.readouterr().err.count("retrying in 1 s") == 2


def test_a_long_rate_limit_is_one_line_naming_the_problem_without_waiting(server: str) -> None:
    Limited.retry_after = "3600"
    with pytest.raises(click.ClickException, match="refused it: 429 slow down"):
        get_json(server)
    assert Limited.seen == 1
