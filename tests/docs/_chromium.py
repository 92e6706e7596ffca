"""Headless Chromium (Debian's package) driven over the DevTools protocol, stdlib only.

Not collected. :class:`Browser` starts ``chromium --headless`` with a fresh profile and no
network features (``--disable-background-networking`` and friends, QUIC off), connects to the
page target's DevTools WebSocket with a minimal RFC 6455 client, and offers what the site test
needs: navigate, evaluate JavaScript, wait for a condition, take a screenshot. The process is
stopped by its PID.
"""

from __future__ import annotations

import base64
import json
import os
import pathlib
import re
import shutil
import socket
import struct
import subprocess
import tempfile
import time
import typing
import urllib.request

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1280,900",
)


def chromium_path() -> str | None:
    """The Chromium binary, or ``None`` when it is not installed."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


class _WebSocket:
    """Just enough RFC 6455 for DevTools: masked text frames out, unmasked frames in."""

    def __init__(self, url: str, timeout: float) -> None:
        m = re.fullmatch(r"ws://([^/:]+):(\d+)(/.*)", url)
        assert m is not None, url
        self._sock = socket.create_connection((m.group(1), int(m.group(2))), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET {m.group(3)} HTTP/1.1\r\nHost: {m.group(1)}:{m.group(2)}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        self._sock.sendall(request.encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self._sock.recv(4096)
            if not chunk:
                raise ConnectionError("DevTools closed during the handshake")
            head += chunk
        status, _, rest = head.partition(b"\r\n\r\n")
        if b" 101 " not in status.split(b"\r\n")[0]:
            raise ConnectionError(status.decode(errors="replace"))
        self._buffer = rest

    def _read(self, n: int) -> bytes:
        while len(self._buffer) < n:
            chunk = self._sock.recv(1 << 16)
            if not chunk:
                raise ConnectionError("DevTools closed the connection")
            self._buffer += chunk
        data, self._buffer = self._buffer[:n], self._buffer[n:]
        return data

    def send(self, text: str) -> None:
        payload = text.encode()
        header = bytearray([0x81])
        n = len(payload)
        if n < 126:
            header.append(0x80 | n)
        elif n < 1 << 16:
            header += bytes([0x80 | 126]) + struct.pack("!H", n)
        else:
            header += bytes([0x80 | 127]) + struct.pack("!Q", n)
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self._sock.sendall(bytes(header) + mask + masked)

    def receive(self) -> str:
        message = b""
        while True:
            first, second = self._read(2)
            n = second & 0x7F
            if n == 126:
                n = struct.unpack("!H", self._read(2))[0]
            elif n == 127:
                n = struct.unpack("!Q", self._read(8))[0]
            payload = self._read(n)
            opcode = first & 0x0F
            if opcode == 0x8:
                raise ConnectionError("DevTools sent close")
            if opcode in (0x9, 0xA):  # ping/pong: ignore
                continue
            message += payload
            if first & 0x80:
                return message.decode()

    def close(self) -> None:
        self._sock.close()


class Browser:
    """One headless Chromium with one page. Use as a context manager."""

    def __init__(self, binary: str, *, timeout: float = 30.0) -> None:
        self._profile = tempfile.mkdtemp(prefix="mailsdk-chromium-")
        self._timeout = timeout
        self._proc = subprocess.Popen(
            [
                binary,
                *FLAGS,
                f"--user-data-dir={self._profile}",
                "--remote-debugging-port=0",
                "about:blank",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        port = self._devtools_port()
        deadline = time.monotonic() + timeout
        while True:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as r:
                pages = [t for t in json.load(r) if t.get("type") == "page"]
            if pages or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert pages, "Chromium opened no page"
        self._ws = _WebSocket(pages[0]["webSocketDebuggerUrl"], timeout)
        self._ids = 0
        self.call("Page.enable")
        self.call("Runtime.enable")

    def _devtools_port(self) -> int:
        marker = pathlib.Path(self._profile) / "DevToolsActivePort"
        deadline = time.monotonic() + self._timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"chromium exited with {self._proc.returncode}")
            if marker.exists():
                first = marker.read_text().split("\n", 1)[0].strip()
                if first.isdigit():
                    return int(first)
            time.sleep(0.1)
        raise TimeoutError("Chromium did not open its DevTools port")

    def call(self, method: str, **params: object) -> dict[str, typing.Any]:
        """Send one DevTools command and return its result (events are skipped)."""
        self._ids += 1
        ident = self._ids
        self._ws.send(json.dumps({"id": ident, "method": method, "params": params}))
        while True:
            message = json.loads(self._ws.receive())
            if message.get("id") == ident:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return typing.cast("dict[str, typing.Any]", message.get("result", {}))

    def evaluate(self, expression: str) -> typing.Any:
        """The value of a JavaScript expression in the page."""
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def goto(self, url: str) -> None:
        """Navigate and wait until the document has loaded."""
        self.call("Page.navigate", url=url)
        self.wait_for(f"location.href === {json.dumps(url)} && document.readyState === 'complete'")

    def wait_for(self, expression: str, timeout: float | None = None) -> typing.Any:
        """Poll ``expression`` until it is truthy; return its value."""
        deadline = time.monotonic() + (timeout or self._timeout)
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"still false after waiting: {expression}")
            time.sleep(0.1)

    def screenshot(self, path: pathlib.Path) -> None:
        """Save a PNG of the viewport."""
        data = self.call("Page.captureScreenshot", format="png")["data"]
        path.write_bytes(base64.b64decode(data))

    def close(self) -> None:
        """Stop Chromium (by PID) and remove the profile."""
        try:
            self._ws.close()
        finally:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            shutil.rmtree(self._profile, ignore_errors=True)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
