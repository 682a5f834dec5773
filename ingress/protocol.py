"""Uvicorn's HTTP/1.1 protocol, answering requests it cannot parse in Offload's error envelope.

A request whose framing is broken (conflicting Content-Length, bad chunk sizes, a header it cannot read)
never reaches the application: uvicorn answers 400 itself, in plain text. Offload and our tests read every
refusal as ``{"ok": false, "error": {...}}``, so this subclass changes only that answer's body.
"""

from __future__ import annotations

import json

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

# What uvicorn's own answer says, in the envelope: the parser does not tell which part was wrong.
_MESSAGE = "the HTTP request is malformed (framing or headers)"


class EnvelopeHttpToolsProtocol(HttpToolsProtocol):
    def send_400_response(self, msg: str) -> None:
        body = json.dumps(
            {"ok": False, "error": {"code": "INVALID_REQUEST", "message": _MESSAGE}}, separators=(",", ":")
        ).encode()
        content = [b"HTTP/1.1 400 Bad Request\r\n"]
        for name, value in self.server_state.default_headers:
            content.extend([name, b": ", value, b"\r\n"])
        content.extend(
            [
                b"content-type: application/json\r\n",
                b"content-length: " + str(len(body)).encode("ascii") + b"\r\n",
                b"connection: close\r\n",
                b"\r\n",
                body,
            ]
        )
        self.transport.write(b"".join(content))
        self.transport.close()
