"""The pieces every fake of a SaaS API shares: a self-signed certificate for 127.0.0.1 and a threaded JSON
server over TLS that hands each request to a ``handle`` function (PagerDuty, Vault and ArgoCD fakes)."""
from __future__ import annotations

import datetime
import ipaddress
import json
import os
import re
import ssl
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit

# handle(method, path, query, headers, body) -> (status, JSON-able answer or None[, extra response headers])
Handle = Callable[[str, str, "dict[str, list[str]]", Any, bytes], "tuple[int, Any]"]


@dataclass
class Fault:
    """An injected failure: answer ``status`` to matching requests, ``times`` times (None: always)."""
    method: str
    path: str  # regular expression on the path
    status: int = 500
    times: int | None = 1
    delay: float = 0.0
    after_commit: bool = False  # do the work, then answer the error anyway
    headers: dict[str, str] = field(default_factory=dict)  # sent with the error (rate-limit headers)

    def matches(self, method: str, path: str) -> bool:
        return self.method in (method, "*") and re.fullmatch(self.path, path) is not None


def make_certificate(directory: str, name: str = "nthlayer test API") -> tuple[str, str]:
    """A self-signed certificate for 127.0.0.1 and localhost; returns (cert.pem, key.pem)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                                    x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    os.makedirs(directory, exist_ok=True)
    cert_path, key_path = os.path.join(directory, "cert.pem"), os.path.join(directory, "key.pem")
    with open(cert_path, "wb") as handle:
        handle.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(key_path, "wb") as handle:
        handle.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    return cert_path, key_path


def wrap_tls(server: ThreadingHTTPServer, cert: str, key: str) -> str:
    """Serve ``server`` over TLS with ``cert``; returns its https URL."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    return f"https://127.0.0.1:{server.server_address[1]}"


class TlsJsonServer:
    """A JSON API on a free port of 127.0.0.1 over TLS; ``requests`` logs (method, path, status)."""

    def __init__(self, handle: Handle, cert_dir: str, name: str) -> None:
        self.requests: list[tuple[str, str, int]] = []
        self.lock = threading.Lock()
        cert, key = make_certificate(cert_dir, name)
        self.ca_file = cert
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self, handle))
        self.url = wrap_tls(self.server, cert, key)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02},
                                       daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    @property
    def writes(self) -> int:
        return sum(1 for method, _, _ in self.requests if method not in ("GET", "HEAD"))


def _handler(owner: TlsJsonServer, handle: Handle) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def _serve(self, method: str) -> None:
            url = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            status, answer, *extra = handle(method, url.path, parse_qs(url.query, keep_blank_values=True),
                                            self.headers, body)
            with owner.lock:
                owner.requests.append((method, url.path, status))
            data = json.dumps(answer).encode() if answer is not None else b""
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in (extra[0] if extra else {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass

        def do_GET(self) -> None:
            self._serve("GET")

        def do_POST(self) -> None:
            self._serve("POST")

        def do_PUT(self) -> None:
            self._serve("PUT")

        def log_message(self, format: str, *args: Any) -> None:
            return

    return Handler


class TlsFake:
    """Base of the stateful fakes: ``serve`` starts a :class:`TlsJsonServer` on ``self.handle``; a fake is a
    context manager, and ``requests``/``writes`` tell what it was asked."""

    http: TlsJsonServer

    def serve(self, cert_dir: str, name: str) -> None:
        self.http = TlsJsonServer(self.handle, cert_dir, name)  # type: ignore[attr-defined]
        self.url, self.ca_file = self.http.url, self.http.ca_file

    def __enter__(self) -> Any:
        self.http.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.http.stop()

    @property
    def requests(self) -> list[tuple[str, str, int]]:
        """(method, path, status) of every request answered."""
        return self.http.requests

    @property
    def writes(self) -> int:
        return self.http.writes
