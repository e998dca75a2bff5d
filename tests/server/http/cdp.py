"""A minimal Chrome DevTools Protocol driver for headless Chromium (forms, text, screenshots).

Debian's ``chromium`` speaks CDP over a WebSocket when started with
``--remote-debugging-port=0``; it prints the browser's URL on stderr. One page target is
attached with ``flatten`` so every command carries its ``sessionId``.
"""

from __future__ import annotations

import base64
import json
import shutil
import struct
import subprocess
import time
import zlib
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import connect


class Browser:
    """One headless Chromium with one page."""

    def __init__(self, profile: Path, width: int = 1280, height: int = 1400) -> None:
        binary = shutil.which("chromium")
        if binary is None:
            pytest.fail("Debian's chromium is not installed (scripts/test installs it)")
        self._proc = subprocess.Popen(
            [binary, "--headless", "--disable-gpu", "--no-sandbox", "--no-first-run",
             "--disable-extensions", f"--user-data-dir={profile}", "--remote-debugging-port=0",
             f"--window-size={width},{height}", "--hide-scrollbars", "about:blank"],
            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        url = self._devtools_url()
        self._ws = connect(url, max_size=None, open_timeout=30)
        self._ids = 0
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        attached = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})
        self._session: str | None = attached["sessionId"]
        self.call("Page.enable")
        self.call("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})

    def _devtools_url(self) -> str:
        assert self._proc.stderr is not None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = self._proc.stderr.readline()
            if "DevTools listening on " in line:
                return line.split("DevTools listening on ", 1)[1].strip()
        raise AssertionError("chromium did not open its DevTools port")

    def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Send one command (to the page once attached) and return its result."""
        self._ids += 1
        message: dict[str, Any] = {"id": self._ids, "method": method, "params": params or {}}
        if getattr(self, "_session", None):
            message["sessionId"] = self._session
        self._ws.send(json.dumps(message))
        while True:
            reply = json.loads(self._ws.recv(timeout=60))
            if reply.get("id") == self._ids:
                if "error" in reply:
                    raise AssertionError(f"{method}: {reply['error']}")
                result: dict[str, Any] = reply.get("result", {})
                return result

    def eval(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page."""
        result = self.call("Runtime.evaluate",
                           {"expression": expression, "returnByValue": True, "awaitPromise": True})
        return result.get("result", {}).get("value")

    def goto(self, url: str) -> None:
        self.call("Page.navigate", {"url": url})
        self.wait_for("document.readyState === 'complete' && !!document.querySelector('main')")

    def wait_for(self, condition: str, timeout_s: float = 20) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.eval(f"Boolean({condition})"):
                return
            time.sleep(0.1)
        text = self.eval("document.body ? document.body.innerText : ''")
        raise AssertionError(f"timed out waiting for {condition}; page text:\n{text}")

    def text(self) -> str:
        return str(self.eval("document.body.innerText"))

    def fill_and_submit(self, form_selector: str, values: dict[str, str]) -> None:
        """Set the form's controls by name, then submit it as a user would (requestSubmit)."""
        script = (
            f"(() => {{ const f = document.querySelector({json.dumps(form_selector)});"
            f" const v = {json.dumps(values)};"
            " for (const [k, x] of Object.entries(v)) { f.elements[k].value = x; }"
            " f.requestSubmit(); return true; })()"
        )
        assert self.eval(script) is True

    def screenshot(self, path: Path, selector: str | None = None) -> bytes:
        """A PNG of the page, or only of the element ``selector`` names (its bounding box)."""
        params: dict[str, Any] = {"format": "png"}
        if selector is not None:
            box = self.eval(f"(() => {{ const r = document.querySelector({json.dumps(selector)})"
                            ".getBoundingClientRect(); return [r.x, r.y, r.width, r.height]; })()")
            params["clip"] = {"x": box[0], "y": box[1], "width": box[2], "height": box[3],
                              "scale": 1}  # fmt: skip
        data = base64.b64decode(self.call("Page.captureScreenshot", params)["data"])
        path.write_bytes(data)
        return data

    def press(self, key: str, text: str = "") -> None:
        """Press and release one key as a keyboard does (``Tab``, ``Enter``)."""
        codes = {"Tab": 9, "Enter": 13}
        down = {"type": "keyDown", "key": key, "code": key,
                "windowsVirtualKeyCode": codes[key], "text": text}  # fmt: skip
        self.call("Input.dispatchKeyEvent", down)
        self.call("Input.dispatchKeyEvent", {**down, "type": "keyUp", "text": ""})

    def type_text(self, text: str) -> None:
        """Type ``text`` into the focused control."""
        self.call("Input.insertText", {"text": text})

    def focused(self) -> str:
        """The focused element: ``tag#id`` or ``tag[type]:label text``."""
        return str(self.eval(
            "(() => { const e = document.activeElement;"
            " return e.tagName.toLowerCase() + (e.id ? '#' + e.id : '') +"
            " (e.tagName === 'BUTTON' ? ':' + e.innerText : ''); })()"
        ))

    def close(self) -> None:
        try:
            self._ws.close()
        finally:
            self._proc.terminate()
            self._proc.wait(timeout=10)


def png_size(data: bytes) -> tuple[int, int]:
    """A PNG's width and height."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return int(width), int(height)


def png_is_not_blank(data: bytes, width: int, height: int) -> bool:
    """A PNG of ``width``×``height`` whose pixels are not all one colour."""
    if data[:8] != b"\x89PNG\r\n\x1a\n" or struct.unpack(">II", data[16:24]) != (width, height):
        return False
    chunks, at = [], 8
    while at < len(data):
        length, kind = struct.unpack(">I4s", data[at:at + 8])
        if kind == b"IDAT":
            chunks.append(data[at + 8:at + 8 + length])
        at += 12 + length
    pixels = zlib.decompress(b"".join(chunks))
    return len(set(pixels)) > 16
