"""A Confluent Schema Registry for the tests: the REST endpoints confluent-kafka's client uses.

No Schema Registry can be installed here, so this implements, over real HTTP
on 127.0.0.1, what `confluent_kafka.schema_registry.SchemaRegistryClient`
(2.16) sends, as Confluent documents it
(https://docs.confluent.io/platform/current/schema-registry/develop/api.html):

- `POST /subjects/{subject}/versions` register (same schema, same id; a schema
  is identified globally by type + text + references), `POST /subjects/{subject}`
  look a schema up under a subject;
- `GET /schemas/ids/{id}` (`?subject=`, `?format=`), `GET /schemas/guids/{guid}`,
  `GET /schemas/ids/{id}/subjects`, `GET /schemas/ids/{id}/versions`,
  `GET /schemas/types`;
- `GET /subjects`, `GET /subjects/{s}/versions`, `GET /subjects/{s}/versions/{v|latest}`,
  `DELETE /subjects/{s}`;
- `GET /associations/resources/{namespace}/{name}` (the serializers' default
  subject strategy asks it first; no associations here), `GET|PUT /config`;
- errors as JSON bodies `{"error_code", "message"}`: 40401 subject not
  found, 40402 version not found, 40403 schema not found, 42201 invalid
  schema, 42202 invalid version, 401 unauthorized; basic auth or a bearer
  token when configured.

Avro schemas are validated with fastavro, JSON Schemas parsed as JSON,
Protobuf schemas (the client sends a base64 FileDescriptorProto) decoded
with protobuf's descriptor classes. Every request is counted and its
Authorization header kept, so tests can check what the client sent.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

import fastavro
from google.protobuf import descriptor_pb2


class _Error(Exception):
    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _subject_not_found(subject: str) -> _Error:
    return _Error(404, 40401, f"Subject '{subject}' not found.")


@dataclass
class _Stored:
    id: int
    guid: str
    schema: str
    schema_type: str
    references: list[dict[str, Any]]

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"schema": self.schema}
        if self.schema_type != "AVRO":
            out["schemaType"] = self.schema_type
        if self.references:
            out["references"] = self.references
        return out


@dataclass
class RegistryState:
    schemas: dict[int, _Stored] = field(default_factory=dict)
    #: subject -> list of schema ids, version n at index n-1 (None: deleted)
    subjects: dict[str, list[int | None]] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)
    authorizations: list[str | None] = field(default_factory=list)
    next_id: int = 1
    lock: threading.Lock = field(default_factory=threading.Lock)


def _validate(schema: str, schema_type: str) -> None:
    try:
        if schema_type == "AVRO":
            fastavro.parse_schema(json.loads(schema), _write_hint=False)
        elif schema_type == "JSON":
            parsed = json.loads(schema)
            if not isinstance(parsed, dict | bool):
                raise ValueError("a JSON Schema is an object or a boolean")
        elif schema_type == "PROTOBUF":
            descriptor_pb2.FileDescriptorProto().ParseFromString(
                base64.b64decode(schema.encode("ascii"), validate=True))
        else:
            raise _Error(422, 42201, f"Invalid schema type {schema_type}")
    except _Error:
        raise
    except Exception as exc:
        raise _Error(422, 42201, f"Invalid schema: {exc}") from None


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, *args: object) -> None:  # quiet
        return

    # -- plumbing ---------------------------------------------------------------------

    def _send(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            raise _Error(422, 422, "Unrecognized entity: not JSON") from None
        if not isinstance(body, dict):
            raise _Error(422, 422, "Unrecognized entity")
        return body

    def _handle(self, method: str) -> None:
        url = urlparse(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        state = self.server.state
        with state.lock:
            state.requests.append((method, url.path))
            state.authorizations.append(self.headers.get("Authorization"))
        try:
            self._authorize()
            parts = [unquote(p) for p in url.path.strip("/").split("/") if p]
            body = self._body() if method in ("POST", "PUT") else {}
            self._send(200, self._route(method, parts, query, body))
        except _Error as exc:
            self._send(exc.status, {"error_code": exc.code, "message": exc.message})

    def _authorize(self) -> None:
        server = self.server
        got = self.headers.get("Authorization")
        if server.basic is not None:
            want = "Basic " + base64.b64encode(server.basic.encode()).decode()
            if got != want:
                raise _Error(401, 401, "Unauthorized")
        if server.token is not None and got != f"Bearer {server.token}":
            raise _Error(401, 401, "Unauthorized")

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    # -- the API ----------------------------------------------------------------------

    def _route(self, method: str, parts: list[str], query: dict[str, str],
               body: dict[str, Any]) -> Any:
        state = self.server.state
        with state.lock:
            match (method, parts):
                case ("GET", ["schemas", "types"]):
                    return ["JSON", "PROTOBUF", "AVRO"]
                case ("GET", ["schemas", "ids", sid]):
                    return self._by_id(sid).body()
                case ("GET", ["schemas", "ids", sid, "subjects"]):
                    stored = self._by_id(sid)
                    return sorted(s for s, ids in state.subjects.items() if stored.id in ids)
                case ("GET", ["schemas", "ids", sid, "versions"]):
                    stored = self._by_id(sid)
                    return [{"subject": s, "version": n + 1}
                            for s, ids in sorted(state.subjects.items())
                            for n, i in enumerate(ids) if i == stored.id]
                case ("GET", ["schemas", "guids", guid]):
                    found = next((s for s in state.schemas.values() if s.guid == guid), None)
                    if found is None:
                        raise _Error(404, 40403, "Schema not found")
                    return {**found.body(), "id": found.id, "guid": found.guid}
                case ("GET", ["subjects"]):
                    return sorted(s for s, ids in state.subjects.items() if any(ids))
                case ("GET", ["subjects", subject, "versions"]):
                    return [n + 1 for n, i in enumerate(self._subject(subject)) if i]
                case ("GET", ["subjects", subject, "versions", version]):
                    return self._version(subject, version)
                case ("POST", ["subjects", subject, "versions"]):
                    return self._register(subject, body)
                case ("POST", ["subjects", subject]):
                    return self._lookup(subject, body)
                case ("DELETE", ["subjects", subject]):
                    ids = self._subject(subject)
                    deleted = [n + 1 for n, i in enumerate(ids) if i]
                    state.subjects[subject] = [None] * len(ids)
                    return deleted
                case ("GET", ["associations", "resources", _namespace, _name]):
                    return []
                case ("GET", ["config"]) | ("PUT", ["config"]):
                    return {"compatibilityLevel": "BACKWARD"}
            raise _Error(404, 404, "HTTP 404 Not Found")

    def _by_id(self, sid: str) -> _Stored:
        if not sid.isdigit() or int(sid) not in self.server.state.schemas:
            raise _Error(404, 40403, "Schema not found")
        return self.server.state.schemas[int(sid)]

    def _subject(self, subject: str) -> list[int | None]:
        ids = self.server.state.subjects.get(subject)
        if not ids or not any(ids):
            raise _subject_not_found(subject)
        return ids

    def _full(self, subject: str, version: int, stored: _Stored) -> dict[str, Any]:
        return {"subject": subject, "version": version, "id": stored.id, "guid": stored.guid,
                "schemaType": stored.schema_type, "schema": stored.schema,
                "references": stored.references}

    def _version(self, subject: str, version: str) -> dict[str, Any]:
        ids = self._subject(subject)
        if version in ("latest", "-1"):
            n = max(k for k, i in enumerate(ids) if i) + 1
        elif re.fullmatch(r"[0-9]+", version) and int(version) >= 1:
            n = int(version)
        else:
            raise _Error(422, 42202, "The specified version is not a valid version id. "
                         "Allowed values are between [1, 2^31-1] and the string \"latest\"")
        if n > len(ids) or ids[n - 1] is None:
            raise _Error(404, 40402, f"Version {version} not found.")
        return self._full(subject, n, self.server.state.schemas[ids[n - 1]])

    @staticmethod
    def _parse(body: dict[str, Any]) -> tuple[str, str, list[dict[str, Any]]]:
        schema = body.get("schema")
        if not isinstance(schema, str):
            raise _Error(422, 42201, "Invalid schema: no schema given")
        kind = str(body.get("schemaType") or "AVRO").upper()
        refs = body.get("references") or []
        return schema, kind, refs

    def _find(self, schema: str, kind: str, refs: list) -> _Stored | None:
        for stored in self.server.state.schemas.values():
            if (stored.schema, stored.schema_type, stored.references) == (schema, kind, refs):
                return stored
        return None

    def _register(self, subject: str, body: dict[str, Any]) -> dict[str, Any]:
        state = self.server.state
        schema, kind, refs = self._parse(body)
        _validate(schema, kind)
        for ref in refs:
            versions = state.subjects.get(str(ref.get("subject")), [])
            v = ref.get("version")
            if not isinstance(v, int) or not 1 <= v <= len(versions) or versions[v - 1] is None:
                raise _Error(422, 42201, f"Invalid schema: reference {ref} not found")
        stored = self._find(schema, kind, refs)
        if stored is None:
            stored = _Stored(state.next_id, str(uuid.uuid4()), schema, kind, refs)
            state.schemas[stored.id] = stored
            state.next_id += 1
        versions = state.subjects.setdefault(subject, [])
        if stored.id not in versions:
            versions.append(stored.id)
        version = versions.index(stored.id) + 1
        return {"id": stored.id, "guid": stored.guid, "subject": subject, "version": version,
                "schemaType": kind, "schema": schema}

    def _lookup(self, subject: str, body: dict[str, Any]) -> dict[str, Any]:
        ids = self._subject(subject)
        schema, kind, refs = self._parse(body)
        stored = self._find(schema, kind, refs)
        if stored is None or stored.id not in ids:
            raise _Error(404, 40403, "Schema not found")
        return self._full(subject, ids.index(stored.id) + 1, stored)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, basic: str | None, token: str | None) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.state = RegistryState()
        self.basic = basic
        self.token = token


class RegistryServer:
    """The registry on a free loopback port, in a thread; use as a context manager."""

    def __init__(self, username: str | None = None, password: str | None = None,
                 token: str | None = None) -> None:
        basic = f"{username}:{password}" if username is not None else None
        self._server = _Server(basic, token)
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def state(self) -> RegistryState:
        return self._server.state

    def requests(self, path_prefix: str = "/") -> list[tuple[str, str]]:
        with self.state.lock:
            return [r for r in self.state.requests if r[1].startswith(path_prefix)]

    def start(self) -> RegistryServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> RegistryServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class SilentServer:
    """Accepts connections and never answers: a registry that hangs. Counts connections."""

    def __init__(self) -> None:
        import socket

        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self._sock.settimeout(0.05)
        self.accepted: list = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._sock.getsockname()[:2]
        return f"http://{host}:{port}"

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                continue
            self.accepted.append(conn)

    def __enter__(self) -> SilentServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for conn in self.accepted:
            conn.close()
        self._sock.close()
