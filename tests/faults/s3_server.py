"""A loopback S3 endpoint (moto's server) for Tansu's `s3://` storage engine.

Run as `python -m tests.faults.s3_server PORT`. The Tansu wheel here is built
without its PostgreSQL storage (`FeatureNotEnabled { feature: "postgres" }`),
but with the object-store engine, so a broker whose data survives SIGKILL is
Tansu on S3, and S3 is moto's server on 127.0.0.1.

One fix is applied in front of moto: RFC 9110 section 13.1.3 says a server
MUST ignore If-Modified-Since when the request carries If-None-Match. moto
evaluates both, with one-second resolution, so Tansu's cached reads of a
partition's watermark object (ETag in If-None-Match) came back 304 for an
object rewritten within the same second, and end offsets lagged behind the
records actually stored.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from typing import Any

from moto.server import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import run_simple

Wsgi = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def conditional_get_per_rfc(app: Wsgi) -> Wsgi:
    def wrapped(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if "HTTP_IF_NONE_MATCH" in environ:
            environ.pop("HTTP_IF_MODIFIED_SINCE", None)
        return app(environ, start_response)

    return wrapped


def main() -> None:
    port = int(sys.argv[1])
    app = DomainDispatcherApplication(create_backend_app)
    run_simple("127.0.0.1", port, conditional_get_per_rfc(app), threaded=True,
               request_handler=MotoRequestHandler)


if __name__ == "__main__":
    main()
