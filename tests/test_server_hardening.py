"""`gk serve` against hostile clients: the token before the body, a body cap, slow headers cut, security headers,
and a port out of range refused. Against a real `gk serve` (uvicorn) in a subprocess, over raw sockets."""

from __future__ import annotations

import os
import re
import select
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from playwright.sync_api import Browser, expect

from goalkeeper.server import close_app, create_app, read_token
from goalkeeper.server.app import server_config
from goalkeeper.server.guard import CSP, MAX_BODY_BYTES
from goalkeeper.store import Store
from scenario import gk, new_goal, sample_repo
from test_dashboard import browser as browser  # a fixture: tests ask for it by name
from test_dashboard import gk_serve, open_dashboard

CHUNK = b"x" * (1024 * 1024)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def served(goalkeeper_home: Path) -> Iterator[tuple[int, int, str]]:
    """A real `gk serve` on a free port: (port, pid, token)."""
    port = _free_port()
    env = {**os.environ, "GOALKEEPER_HOME": str(goalkeeper_home)}
    process = subprocess.Popen([sys.executable, "-m", "goalkeeper", "serve", "--port", str(port)], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                # Ours once its token is there too: another test's server may answer on a reused free port.
                if probe.connect_ex(("127.0.0.1", port)) == 0 and read_token() is not None:
                    break
            assert process.poll() is None, process.stdout.read() if process.stdout else ""
            time.sleep(0.1)
        token = read_token()
        assert token
        yield port, process.pid, token
    finally:
        process.terminate()
        process.wait(10)


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def _body() -> Iterator[bytes]:
    """100 MB in 1 MB chunks, made as it is sent."""
    for _ in range(100):
        yield CHUNK


def _stream_post(port: int, headers: dict[str, str], length: bool = False) -> tuple[str, float]:
    """POST a 100 MB body chunk by chunk while reading the answer; (the answer's head, seconds until it came).

    The body is sent from another thread and stops at the first error: the server may close the connection
    as soon as it has answered."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    framing = f"Content-Length: {100 * len(CHUNK)}" if length else "Transfer-Encoding: chunked"
    head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    sock.sendall(f"POST /threads/thr_x/goal HTTP/1.1\r\nHost: gk\r\nContent-Type: application/json\r\n{head}"
                 f"{framing}\r\n\r\n".encode())
    started = time.monotonic()

    def send() -> None:
        try:
            for chunk in _body():
                sock.sendall(chunk if length else b"%x\r\n%s\r\n" % (len(chunk), chunk))
            if not length:
                sock.sendall(b"0\r\n\r\n")
        except OSError:
            pass  # answered and closed: the rest of the body is never read

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    answer = b""
    try:
        while b"\r\n\r\n" not in answer:
            ready, _, _ = select.select([sock], [], [], 30)
            assert ready, "no answer in 30 s"
            data = sock.recv(65536)
            if not data:
                break
            answer += data
    finally:
        elapsed = time.monotonic() - started
        sock.close()
        sender.join(30)
    return answer.decode("latin-1"), elapsed


def test_an_unauthenticated_100_mb_body_gets_401_fast_and_is_never_read(served: tuple[int, int, str]) -> None:
    port, pid, _ = served
    before = _rss_mb(pid)
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        for length in (False, True):
            answer, elapsed = _stream_post(port, headers, length)
            assert answer.startswith("HTTP/1.1 401"), answer
            assert elapsed < 5, elapsed
            assert "www-authenticate: bearer" in answer.lower()
    assert _rss_mb(pid) - before < 30, (before, _rss_mb(pid))  # a read body would have cost 100 MB or more


def test_an_authenticated_body_over_the_cap_gets_413(served: tuple[int, int, str]) -> None:
    port, pid, token = served
    before = _rss_mb(pid)
    for length in (False, True):
        answer, elapsed = _stream_post(port, {"Authorization": f"Bearer {token}"}, length)
        assert answer.startswith("HTTP/1.1 413"), answer
        assert elapsed < 5
    assert _rss_mb(pid) - before < 30 and MAX_BODY_BYTES <= 1024 * 1024


def _get(port: int, path: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str]]:
    import httpx

    answer = httpx.get(f"http://127.0.0.1:{port}{path}", headers=headers or {}, timeout=10)
    return answer.status_code, {k.lower(): v for k, v in answer.headers.items()}


def test_every_response_carries_the_security_headers(served: tuple[int, int, str]) -> None:
    port, _, token = served
    auth = {"Authorization": f"Bearer {token}"}
    seen = [_get(port, "/"), _get(port, "/static/app.js"), _get(port, "/static/nope.js"), _get(port, "/threads"),
            _get(port, "/threads", auth), _get(port, "/threads/thr_nope", auth)]
    assert [status for status, _ in seen] == [200, 200, 404, 401, 200, 404]
    for _, headers in seen:
        assert headers["content-security-policy"] == CSP
        assert "default-src 'self'" in CSP and "frame-ancestors 'none'" in CSP and "unsafe-inline" not in CSP
        assert headers["x-frame-options"] == "DENY"
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["referrer-policy"] == "no-referrer"


def test_the_dashboard_has_no_inline_script_or_style() -> None:
    static = Path(__file__).parent.parent / "src" / "goalkeeper" / "server" / "static"
    page = (static / "index.html").read_text()
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", page) and "style=" not in page
    for script in static.glob("*.js"):
        text = script.read_text()
        assert "style=" not in text and ".style." not in text, script.name


def test_slow_headers_are_cut(goalkeeper_home: Path) -> None:
    app = create_app(token="t")
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    server = uvicorn.Server(server_config(app, header_timeout_s=1.0))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        slow = socket.create_connection(sock.getsockname(), timeout=10)
        started = time.monotonic()
        closed = False
        for byte in b"GET /threads HTTP/1.1\r\nHost: gk\r\nX-Slow: " + b"a" * 40:
            try:
                slow.sendall(bytes([byte]))
            except OSError:
                closed = True
                break
            ready, _, _ = select.select([slow], [], [], 0.2)
            if ready and slow.recv(1024) == b"":
                closed = True
                break
        assert closed, "a connection dribbling its headers stayed open"
        assert time.monotonic() - started < 4
        slow.close()
        # A prompt client on the same server is served as before, on a kept-alive connection.
        fast = socket.create_connection(sock.getsockname(), timeout=10)
        for _ in range(2):
            fast.sendall(b"GET /threads HTTP/1.1\r\nHost: gk\r\nAuthorization: Bearer t\r\n\r\n")
            assert _response(fast).startswith(b"HTTP/1.1 200")
        fast.close()
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
        close_app(app)


def _response(sock: socket.socket) -> bytes:
    """One whole response (head and Content-Length body) read from a kept-alive connection."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))  # type: ignore[union-attr]
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, data
        body += chunk
    return head + b"\r\n\r\n" + body


@pytest.mark.parametrize("port", ["99999", "0", "-1", "65536"])
def test_a_port_out_of_range_is_a_usage_error(goalkeeper_home: Path, port: str) -> None:
    refused = gk("serve", "--port", port, home=goalkeeper_home, timeout=30)
    assert refused.returncode == 4, refused.stdout + refused.stderr
    assert "Traceback" not in refused.stderr and "port" in refused.stderr.lower()
    assert "goalkeeper server" not in refused.stdout


@pytest.mark.slow
def test_the_dashboard_runs_under_its_csp_and_shows_hostile_text_as_text(
        tmp_path: Path, goalkeeper_home: Path, browser: Browser) -> None:
    workspace = sample_repo(tmp_path)
    hostile = 'Fix it <img src=x onerror="document.title=1"> [bold]x[/] \x1b[2K● achieved'
    with Store(goalkeeper_home / "state.db") as store:
        new_goal(store, workspace, objective=hostile)
    with gk_serve(goalkeeper_home) as dashboard:
        page = open_dashboard(browser, dashboard)
        problems: list[str] = []
        page.on("console", lambda message: problems.append(message.text))
        page.on("pageerror", lambda error: problems.append(str(error)))
        row = page.locator("tr[data-goal]")
        expect(row).to_have_count(1)
        expect(row.get_by_role("progressbar")).to_have_attribute("aria-valuenow", "0")
        expect(row).to_contain_text("<img src=x")
        assert page.locator("img").count() == 0 and page.title() != "1"
        page.reload()  # the page's own load, watched from its first request
        expect(page.locator("tr[data-goal]")).to_have_count(1)
    assert not [text for text in problems if "Content Security Policy" in text or "Refused" in text], problems
