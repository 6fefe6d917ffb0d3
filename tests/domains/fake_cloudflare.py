"""A fake Cloudflare API v4 on loopback, from Cloudflare's public API documents.

It keeps zones and DNS records in memory, answers in Cloudflare's envelope
(`{"success", "errors", "messages", "result", "result_info"}`) and records every
request, so tests assert exactly what the SDK sent. Endpoints:

    GET  /client/v4/user/tokens/verify, /client/v4/accounts/{account_id}/tokens/verify
    GET  /client/v4/zones?name=&page=&per_page=         POST /client/v4/zones
    GET  /client/v4/zones/{zone_id}
    GET  /client/v4/zones/{zone_id}/dns_records?page=&per_page=
    POST /client/v4/zones/{zone_id}/dns_records
    PUT, PATCH, DELETE /client/v4/zones/{zone_id}/dns_records/{id}
    POST /client/v4/zones/{zone_id}/dns_records/batch
"""

from __future__ import annotations

import json
import re
import secrets
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

PREFIX = "/client/v4"


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any

    @property
    def route(self) -> str:
        return f"{self.method} {self.path}"


@dataclass
class Zone:
    id: str
    name: str
    name_servers: list[str]
    records: dict[str, dict[str, Any]] = field(default_factory=dict)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeCloudflare


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def _handle(self) -> None:
        self.server.fake.handle(self)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

    def log_message(self, format: str, *args: Any) -> None:
        pass


class FakeCloudflare:
    def __init__(self, token: str = "cf-token-" + "x" * 32) -> None:
        self.token = token
        self.zones: dict[str, Zone] = {}
        self.requests: list[Request] = []
        # Reject the next record write with this Cloudflare error (code, message).
        self.fail_next_write: tuple[int, str] | None = None
        self.lock = threading.Lock()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.fake = self
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}{PREFIX}"

    def __enter__(self) -> FakeCloudflare:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()

    # -- test helpers

    def add_zone(self, name: str, records: list[dict[str, Any]] | None = None) -> Zone:
        zone = Zone(
            id=secrets.token_hex(16),
            name=name,
            name_servers=["ada.ns.cloudflare.com", "bob.ns.cloudflare.com"],
        )
        for record in records or []:
            self._store(zone, dict(record))
        self.zones[zone.id] = zone
        return zone

    def routes(self) -> list[str]:
        return [request.route for request in self.requests]

    def clear_requests(self) -> None:
        self.requests.clear()

    # -- serving

    def _store(
        self, zone: Zone, body: dict[str, Any], record_id: str | None = None
    ) -> dict[str, Any]:
        record = {
            "id": record_id or secrets.token_hex(16),
            "name": body["name"],
            "type": body["type"],
            "ttl": body.get("ttl", 1),
            "proxied": body.get("proxied", False),
            "proxiable": body["type"] in ("A", "AAAA", "CNAME"),
            "comment": body.get("comment"),
            "tags": body.get("tags", []),
            "settings": {},
            "meta": {},
            "created_on": "2026-11-21T00:00:00.000000Z",
            "modified_on": "2026-11-21T00:00:00.000000Z",
        }
        if "data" in body:
            record["data"] = body["data"]
            data = body["data"]
            if body["type"] == "SRV":
                record["content"] = f"{data['weight']} {data['port']} {data['target']}"
                record["priority"] = data["priority"]
            elif body["type"] == "CAA":
                record["content"] = f'{data["flags"]} {data["tag"]} "{data["value"]}"'
        else:
            content = body.get("content", "")
            if body["type"] == "TXT" and not content.startswith('"'):
                # Cloudflare answers TXT content in zone-file quotes.
                content = '"' + content.replace('"', '\\"') + '"'
            record["content"] = content
        if "priority" in body:
            record["priority"] = body["priority"]
        zone.records[record["id"]] = record
        return record

    def handle(self, handler: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(handler.path)
        length = int(handler.headers.get("content-length") or 0)
        raw = handler.rfile.read(length) if length else b""
        body = json.loads(raw) if raw else None
        request = Request(
            handler.command,
            parts.path,
            {k: v[0] for k, v in parse_qs(parts.query).items()},
            {k.lower(): v for k, v in handler.headers.items()},
            body,
        )
        with self.lock:
            self.requests.append(request)
            status, payload = self._route(request)
        data = json.dumps(payload).encode()
        handler.send_response(status)
        handler.send_header("content-type", "application/json")
        handler.send_header("content-length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def _route(self, request: Request) -> tuple[int, dict[str, Any]]:
        if request.headers.get("authorization") != f"Bearer {self.token}":
            return _error(401, 9109, "Invalid access token")
        path = request.path.removeprefix(PREFIX)
        method = request.method
        if method == "GET" and re.fullmatch(r"/(user|accounts/[0-9a-f]{32})/tokens/verify", path):
            return _ok({"id": "tok1", "status": "active"})
        if path == "/zones":
            if method == "POST":
                zone = self.add_zone(request.body["name"])
                return _ok(self._zone_json(zone))
            zones = [
                self._zone_json(z)
                for z in self.zones.values()
                if "name" not in request.query or z.name == request.query["name"]
            ]
            return _page(zones, request.query)
        match = re.fullmatch(r"/zones/([0-9a-f]+)(/dns_records(?:/(batch|[0-9a-f]+))?)?", path)
        if match is None or match.group(1) not in self.zones:
            return _error(404, 7003, "Could not route to the zone")
        zone = self.zones[match.group(1)]
        if match.group(2) is None:
            return _ok(self._zone_json(zone))
        target = match.group(3)
        if target is None:
            if method == "GET":
                return _page(list(zone.records.values()), request.query)
            return self._write(zone, lambda: self._store(zone, request.body))
        if target == "batch":
            return self._write(zone, lambda: self._batch(zone, request.body))
        if target not in zone.records:
            return _error(404, 81044, "Record does not exist.")
        if method == "DELETE":
            del zone.records[target]
            return _ok({"id": target})
        if method in ("PUT", "PATCH"):
            merged = {**zone.records[target], **request.body} if method == "PATCH" else request.body
            return self._write(zone, lambda: self._store(zone, merged, target))
        return _error(405, 10000, "Method not allowed")

    def _write(self, zone: Zone, action: Any) -> tuple[int, dict[str, Any]]:
        if self.fail_next_write is not None:
            code, message = self.fail_next_write
            self.fail_next_write = None
            return _error(400, code, message)
        return _ok(action())

    def _batch(self, zone: Zone, body: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, list[dict[str, Any]]] = {
            "deletes": [],
            "patches": [],
            "puts": [],
            "posts": [],
        }
        for item in body.get("deletes", []):
            result["deletes"].append(zone.records.pop(item["id"]))
        for item in body.get("patches", []):
            merged = {**zone.records[item["id"]], **item}
            result["patches"].append(self._store(zone, merged, item["id"]))
        for item in body.get("puts", []):
            result["puts"].append(self._store(zone, item, item["id"]))
        for item in body.get("posts", []):
            result["posts"].append(self._store(zone, item))
        return result

    @staticmethod
    def _zone_json(zone: Zone) -> dict[str, Any]:
        return {
            "id": zone.id,
            "name": zone.name,
            "status": "active",
            "name_servers": zone.name_servers,
            "original_name_servers": [],
            "paused": False,
            "type": "full",
            "account": {"id": "0" * 32, "name": "Test account"},
        }


def _ok(result: Any) -> tuple[int, dict[str, Any]]:
    return 200, {"success": True, "errors": [], "messages": [], "result": result}


def _error(status: int, code: int, message: str) -> tuple[int, dict[str, Any]]:
    return status, {
        "success": False,
        "errors": [{"code": code, "message": message}],
        "messages": [],
        "result": None,
    }


def _page(items: list[dict[str, Any]], query: dict[str, str]) -> tuple[int, dict[str, Any]]:
    page = int(query.get("page", 1))
    per_page = int(query.get("per_page", 20))
    chunk = items[(page - 1) * per_page : page * per_page]
    return 200, {
        "success": True,
        "errors": [],
        "messages": [],
        "result": chunk,
        "result_info": {
            "page": page,
            "per_page": per_page,
            "count": len(chunk),
            "total_count": len(items),
            "total_pages": max(1, -(-len(items) // per_page)),
        },
    }
