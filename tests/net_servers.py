"""Loopback network parts for transport tests: an HTTP proxy, a CA, a gRPC OTLP receiver.

- ``ConnectProxy``: a real HTTP proxy (CONNECT tunnels and absolute-URI forwarding)
  that logs what it forwards and can demand credentials.
- ``make_ca``: a throwaway certificate authority (trustme) with a server certificate
  for 127.0.0.1 and a client certificate, written as PEM files.
- ``GRPCReceiver``: an OTLP/gRPC trace service (grpcio + opentelemetry-proto) that
  decodes what it receives into ``ReceivedSpan``s.
"""

from __future__ import annotations

import base64
import select
import socket
import socketserver
import ssl
import threading
import time
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from otlp_receiver import ReceivedSpan, decode_spans


@dataclass
class Forwarded:
    """One request the proxy handled."""

    method: str  # CONNECT or the forwarded method
    target: str  # host:port for CONNECT, the absolute URL otherwise
    proxy_authorization: str | None
    status: int  # what the proxy answered (200 when it forwarded)


class _ProxyHandler(socketserver.BaseRequestHandler):
    server: _ProxyServer

    def handle(self) -> None:
        client: socket.socket = self.request
        client.settimeout(10)
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = client.recv(65536)
            if not chunk:
                return
            head += chunk
        header_block, _, rest = head.partition(b"\r\n\r\n")
        lines = header_block.decode("latin-1").split("\r\n")
        method, target, _version = lines[0].split(" ", 2)
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        auth = headers.get("proxy-authorization")
        proxy = self.server.proxy
        if proxy.credentials is not None:
            expected = "Basic " + base64.b64encode(proxy.credentials.encode()).decode()
            if auth != expected:
                proxy.record(Forwarded(method, target, auth, 407))
                client.sendall(
                    b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                    b'Proxy-Authenticate: Basic realm="test"\r\nContent-Length: 0\r\n\r\n'
                )
                return
        if method == "CONNECT":
            host, _, port = target.rpartition(":")
            try:
                upstream = socket.create_connection((host, int(port)), timeout=10)
            except OSError:
                proxy.record(Forwarded(method, target, auth, 502))
                client.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
                return
            proxy.record(Forwarded(method, target, auth, 200))
            client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            if rest:
                upstream.sendall(rest)
            self._pipe(client, upstream)
            return
        # A plain-http request in absolute form: rewrite to origin form and pass it on, once.
        from urllib.parse import urlsplit

        url = urlsplit(target)
        proxy.record(Forwarded(method, target, auth, 200))
        upstream = socket.create_connection((url.hostname, url.port or 80), timeout=10)
        kept = [f"{method} {url.path or '/'}{'?' + url.query if url.query else ''} HTTP/1.1"]
        kept += [
            line
            for line in lines[1:]
            if not line.lower().startswith(("proxy-authorization:", "proxy-connection:"))
        ]
        kept.append("Connection: close")
        upstream.sendall("\r\n".join(kept).encode("latin-1") + b"\r\n\r\n" + rest)
        self._pipe(client, upstream)

    @staticmethod
    def _pipe(a: socket.socket, b: socket.socket) -> None:
        sockets = [a, b]
        deadline = time.monotonic() + 30
        try:
            while time.monotonic() < deadline:
                readable, _, _ = select.select(sockets, [], [], 0.5)
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        return
                    (b if sock is a else a).sendall(data)
        except OSError:
            pass
        finally:
            b.close()


class _ProxyServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    proxy: ConnectProxy


class ConnectProxy:
    """A loopback HTTP proxy; ``log`` lists what it forwarded (``credentials``: "user:pass")."""

    def __init__(self, credentials: str | None = None) -> None:
        self.credentials = credentials
        self.log: list[Forwarded] = []
        self._lock = threading.Lock()
        self._server = _ProxyServer(("127.0.0.1", 0), _ProxyHandler)
        self._server.proxy = self
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def record(self, item: Forwarded) -> None:
        with self._lock:
            self.log.append(item)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> ConnectProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


@dataclass
class CA:
    """PEM files of a throwaway CA, a server certificate for 127.0.0.1, and a client one."""

    ca_file: Path
    client_cert: Path
    client_key: Path
    _ca: Any
    _server: Any

    def server_context(self, require_client_cert: bool = False) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._server.configure_cert(context)
        if require_client_cert:
            context.verify_mode = ssl.CERT_REQUIRED
            self._ca.configure_trust(context)
        return context

    def server_pems(self) -> tuple[bytes, bytes]:
        """(private key, certificate chain) of the server, for gRPC."""
        chain = b"".join(blob.bytes() for blob in self._server.cert_chain_pems)
        return self._server.private_key_pem.bytes(), chain


def make_ca(directory: Path) -> CA:
    import trustme

    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    client = ca.issue_cert("client@example.test")
    ca_file, cert, key = directory / "ca.pem", directory / "client.pem", directory / "client.key"
    ca.cert_pem.write_to_path(str(ca_file))
    client.cert_chain_pems[0].write_to_path(str(cert))
    client.private_key_pem.write_to_path(str(key))
    return CA(ca_file, cert, key, ca, server)


class GRPCReceiver:
    """A loopback OTLP/gRPC trace receiver (plain, or TLS with ``pems`` = (key, chain))."""

    def __init__(self, pems: tuple[bytes, bytes] | None = None) -> None:
        import grpc
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

        receiver = self
        self.spans: list[ReceivedSpan] = []
        self.requests = 0
        self.metadata: list[dict[str, str]] = []
        self._cond = threading.Condition()

        class Service(trace_service_pb2_grpc.TraceServiceServicer):
            def Export(self, request: Any, context: Any) -> Any:  # noqa: N802 (gRPC's name)
                with receiver._cond:
                    receiver.requests += 1
                    receiver.metadata.append(dict(context.invocation_metadata()))
                    receiver.spans.extend(decode_spans(request, "grpc"))
                    receiver._cond.notify_all()
                return trace_service_pb2.ExportTraceServiceResponse()

        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Service(), self._server)
        if pems is None:
            self.port = self._server.add_insecure_port("127.0.0.1:0")
            self.url = f"http://127.0.0.1:{self.port}"
        else:
            credentials = grpc.ssl_server_credentials([pems])
            self.port = self._server.add_secure_port("127.0.0.1:0", credentials)
            self.url = f"https://127.0.0.1:{self.port}"

    def __enter__(self) -> GRPCReceiver:
        self._server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.stop(grace=None)

    def wait_for_spans(self, n: int, timeout: float = 10.0) -> list[ReceivedSpan]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.spans) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"expected {n} span(s), got {len(self.spans)}")
                self._cond.wait(left)
            return list(self.spans)
