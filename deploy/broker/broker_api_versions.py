"""Exit 0 when the Kafka broker at --bootstrap-server answers an ApiVersions request (v0) without error.

The health check of the broker image: the image has no Kafka command-line tools, and this is the request
apache/kafka's kafka-broker-api-versions.sh starts with.
"""

from __future__ import annotations

import argparse
import socket
import struct
import sys

API_VERSIONS = 18
CORRELATION_ID = 7


def probe(host: str, port: int, timeout_s: float) -> str | None:
    """None when the broker answered without error, else what went wrong."""
    client_id = b"health-check"
    body = struct.pack(">hhih", API_VERSIONS, 0, CORRELATION_ID, len(client_id)) + client_id
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as connection:
            connection.sendall(struct.pack(">i", len(body)) + body)
            header = _read(connection, 4)
            (size,) = struct.unpack(">i", header)
            response = _read(connection, size)
    except OSError as error:
        return f"{type(error).__name__}: {error}"
    correlation_id, error_code = struct.unpack(">ih", response[:6])
    if correlation_id != CORRELATION_ID:
        return f"answer to another request ({correlation_id})"
    return None if error_code == 0 else f"error code {error_code}"


def _read(connection: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = connection.recv(size - len(data))
        if not chunk:
            raise ConnectionError("the broker closed the connection")
        data += chunk
    return data


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bootstrap-server", required=True, help="host:port")
    parser.add_argument("--timeout", type=float, default=5.0)
    args = parser.parse_args()
    host, _, port = args.bootstrap_server.rpartition(":")
    problem = probe(host, int(port), args.timeout)
    if problem is not None:
        print(f"{args.bootstrap_server}: {problem}", file=sys.stderr)
        return 1
    print(f"{args.bootstrap_server}: ApiVersions answered")
    return 0


if __name__ == "__main__":
    sys.exit(main())
