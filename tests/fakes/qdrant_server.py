"""A local Qdrant REST server on a loopback port, backed by exact numpy search.

Speaks the part of Qdrant's HTTP API (v1.x, JSON over HTTP, replies wrapped as
``{"result": …, "status": "ok", "time": …}``) that
:class:`owm_adapters.knowledge.qdrant.QdrantVectorStore`
uses in server mode, with Qdrant's paths and shapes, so ``qdrant-client`` itself is exercised:
``GET /``, ``GET /collections/{c}/exists``, ``GET|PUT /collections/{c}``,
``PUT /collections/{c}/index``, ``PUT /collections/{c}/points``,
``POST /collections/{c}/points/query|count|delete``. Filters: ``must`` of ``match.value`` and
``match.any`` conditions on payload keys (a list-valued key matches if any element does).
Cosine vectors are normalised on insert, as Qdrant does. An ``api-key`` header is required when
the server is built with one (401 otherwise), except for the version probe ``GET /``.
"""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np


def _matches(payload: dict[str, Any], condition: dict[str, Any]) -> bool:
    value = payload.get(condition["key"])
    values = value if isinstance(value, list) else [value]
    match = condition["match"]
    if "value" in match:
        return match["value"] in values
    return any(v in match["any"] for v in values)


def _selected(payload: dict[str, Any], query_filter: dict[str, Any] | None) -> bool:
    if not query_filter:
        return True
    return all(_matches(payload, c) for c in query_filter.get("must") or [])


class _Collection:
    def __init__(self, size: int) -> None:
        self.size = size
        self.points: dict[str, tuple[np.ndarray, dict[str, Any]]] = {}

    def info(self) -> dict[str, Any]:
        return {
            "status": "green",
            "optimizer_status": "ok",
            "segments_count": 1,
            "points_count": len(self.points),
            "payload_schema": {},
            "config": {
                "params": {"vectors": {"size": self.size, "distance": "Cosine"}},
                "hnsw_config": {"m": 16, "ef_construct": 100, "full_scan_threshold": 10000},
                "optimizer_config": {"default_segment_number": 0, "flush_interval_sec": 5},
            },
        }


class FakeQdrant:
    """The server's state and its HTTP front (see the module docstring)."""

    def __init__(self, api_key: str | None = None) -> None:
        self.api_key = api_key
        self.collections: dict[str, _Collection] = {}
        self.lock = threading.Lock()
        self.requests: list[tuple[str, str]] = []
        self._http = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._http.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._http.server_address[1]}"

    def start(self) -> FakeQdrant:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._http.shutdown()
        self._http.server_close()

    # --- the API -------------------------------------------------------------------------------

    def handle(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        with self.lock:
            self.requests.append((method, path))
            if path == "/" and method == "GET":
                return 200, {"title": "qdrant - vector search engine", "version": "1.20.0"}
            found = re.fullmatch(r"/collections/([^/]+)(/.*)?", path)
            if found is None:
                return 404, {"status": {"error": f"Not found: {path}"}}
            name, rest = found.group(1), found.group(2) or ""
            collection = self.collections.get(name)
            if rest == "/exists" and method == "GET":
                return 200, {"exists": collection is not None}
            if rest == "" and method == "PUT":
                self.collections[name] = _Collection(int(body["vectors"]["size"]))
                return 200, True
            if collection is None:
                return 404, {"status": {"error": f"Collection `{name}` doesn't exist!"}}
            return self._on(collection, method, rest, body)

    def _on(self, c: _Collection, method: str, rest: str, body: Any) -> tuple[int, Any]:
        done = {"operation_id": 0, "status": "completed"}
        if rest == "" and method == "GET":
            return 200, c.info()
        if rest == "/index" and method == "PUT":
            return 200, done
        if rest == "/points" and method == "PUT":
            for p in body["points"]:
                vector = np.asarray(p["vector"], dtype=np.float32)
                if vector.shape != (c.size,):
                    return 400, {"status": {"error": "Wrong input: Vector dimension error"}}
                norm = float(np.linalg.norm(vector))
                c.points[str(p["id"])] = (vector / norm if norm else vector, p.get("payload") or {})
            return 200, done
        if rest == "/points/query" and method == "POST":
            raw = body["query"]
            query = np.asarray(raw["nearest"] if isinstance(raw, dict) else raw, dtype=np.float32)
            norm = float(np.linalg.norm(query))
            query = query / norm if norm else query
            scored = sorted(
                (
                    (float(vec @ query), pid, payload)
                    for pid, (vec, payload) in c.points.items()
                    if _selected(payload, body.get("filter"))
                ),
                key=lambda r: (-r[0], r[1]),
            )[: int(body.get("limit", 10))]
            points = [
                {"id": pid, "version": 0, "score": s, "payload": payload}
                for s, pid, payload in scored
            ]
            return 200, {"points": points}
        if rest == "/points/count" and method == "POST":
            n = sum(1 for _, p in c.points.values() if _selected(p, body.get("filter")))
            return 200, {"count": n}
        if rest == "/points/delete" and method == "POST":
            for pid in [k for k, (_, p) in c.points.items() if _selected(p, body.get("filter"))]:
                del c.points[pid]
            return 200, done
        return 404, {"status": {"error": f"Not found: {method} {rest}"}}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                """Quiet."""

            def _serve(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                path = self.path.split("?")[0]
                status: int
                result: Any
                envelope: Any
                guarded = server.api_key is not None and path != "/"
                if guarded and self.headers.get("api-key") != server.api_key:
                    status, result = 401, {"status": {"error": "Invalid api-key"}}
                else:
                    body = json.loads(raw) if raw else None
                    status, result = server.handle(self.command, path, body)
                if path == "/":  # the version probe is not wrapped
                    envelope = result
                elif status == 200:
                    envelope = {"result": result, "status": "ok", "time": 0.0001}
                else:
                    envelope = {**result, "time": 0.0001}
                data = json.dumps(envelope).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = _serve

        return Handler
