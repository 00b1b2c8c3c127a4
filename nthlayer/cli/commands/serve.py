"""``nthlayer serve``: the REST API over HTTP (docs/api.md), the one process that owns the state database."""
from __future__ import annotations

import argparse
import os

from generators.errors import UserError
from nthlayer.integrations import prometheus as prom
from nthlayer.state.db import add_state_argument


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="port (default: 8080; 0 picks a free one)")
    parser.add_argument("--services", metavar="DIR", default="services", help="spec folder (default: services/)")
    parser.add_argument("--out", metavar="DIR", default="out", help="build output folder (default: out/)")
    add_state_argument(parser)
    prom.add_arguments(parser)
    parser.add_argument("--rate-limit", type=int, default=1000, metavar="N",
                        help="requests per key and window (default: 1000)")
    parser.add_argument("--rate-window", type=float, default=60.0, metavar="SECONDS",
                        help="the rate limit's window (default: 60)")
    parser.add_argument("--auth-failure-limit", type=int, default=30, metavar="N",
                        help="requests without a valid key (missing, wrong, revoked) per client address and "
                             "window; past it, that address gets 429 until the window ends (default: 30)")
    parser.add_argument("--max-body", type=int, default=1024 * 1024, metavar="BYTES",
                        help="largest request body accepted (default: 1048576)")
    parser.add_argument("--oidc-jwks", metavar="FILE|URL",
                        help="accept OAuth2/OIDC bearer tokens (JWTs) signed by a key of this JWKS file or URL "
                             "(https; http only to 127.0.0.1), fetched at start and again when a token names "
                             "an unknown key")
    parser.add_argument("--oidc-issuer", metavar="ISS", help="the tokens' required iss claim")
    parser.add_argument("--oidc-audience", metavar="AUD", help="the tokens' required aud claim")
    parser.add_argument("--access-log", action="store_true", help="log every request (method, path, status)")


def run(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from nthlayer.api.app import ServerConfig, create_app
    except ImportError as exc:
        raise UserError(f"nthlayer serve needs the api extra ({exc.name} is missing): "
                        "pip install 'nthlayer-slo[api]'") from None
    for name, value in (("--rate-limit", args.rate_limit), ("--auth-failure-limit", args.auth_failure_limit),
                        ("--max-body", args.max_body)):
        if value < 1:
            raise UserError(f"{name} must be at least 1")
    if args.rate_window <= 0:
        raise UserError("--rate-window must be more than 0 seconds")
    reachable = "127.0.0.1" if args.host == "0.0.0.0" else f"[{args.host}]" if ":" in args.host else args.host
    config = ServerConfig(
        services_dir=args.services, out_dir=os.path.abspath(args.out), workdir=os.getcwd(),
        state=args.state, prometheus_url=args.prometheus, prometheus_timeout=args.prometheus_timeout,
        prometheus_deadline=args.prometheus_deadline, prometheus_retries=args.prometheus_retries,
        rate_limit=args.rate_limit, rate_window=args.rate_window, auth_failure_limit=args.auth_failure_limit,
        max_body_bytes=args.max_body, url=f"http://{reachable}:{args.port}",
        oidc_jwks=args.oidc_jwks, oidc_issuer=args.oidc_issuer, oidc_audience=args.oidc_audience)
    app = create_app(config)
    # One process: it alone holds the DuckDB file (workers would fight over it).
    uvicorn.run(app, host=args.host, port=args.port, log_level="info", access_log=args.access_log,
                server_header=False, timeout_graceful_shutdown=10)
    return 0
