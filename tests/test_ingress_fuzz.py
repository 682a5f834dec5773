"""Property-based fuzzing of the ingress as a real process on the real broker.

Over two thousand generated requests per run: valid and mutated envelopes, random JSON, deep nesting,
invalid UTF-8 and lone surrogates, huge strings; random content types and headers; valid and invalid
tokens; raw HTTP framing (chunked bodies, duplicate or conflicting Content-Length, truncated bodies).
For every one: no 5xx while Kafka is up, every non-2xx answer is Offload's error envelope, and an invalid
token is never published. At the end, the records on case-events and case-events.invalid are exactly the
ones the 2xx answers named: nothing refused was published.

Examples are derandomized (the same every run, so CI does not flake on a new example) and no example
database is kept.
"""

from __future__ import annotations

import itertools
import json
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from offload_bridge.settings import Settings
from offload_bridge.testing import delete_topics_with_prefix, unique_prefix
from offload_bridge.topics import CASE_EVENTS, CASE_EVENTS_INVALID
from tests.ingress_support import Ingress, read_topic, running_ingress

TOKEN = "tok-fuzz-6d2e81c4"
MAX_BYTES = 1024 * 1024
# Per test; their sum is the number of generated requests of one run (at least 2,000).
BODY_EXAMPLES = 1000
HEADER_EXAMPLES = 400
RAW_EXAMPLES = 700

FUZZ = settings(
    deadline=None,
    derandomize=True,
    database=None,
    # Every example makes an HTTP request (some of a megabyte) against the module's one ingress.
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)


@dataclass
class Ledger:
    """What the ingress answered 2xx for (topic, partition, offset), and how many requests were made."""

    acknowledged: set[tuple[str, int, int]] = field(default_factory=set)
    requests: int = 0
    # Requests with a valid token whose connection closed before an answer.
    unanswered: int = 0
    suites: set[str] = field(default_factory=set)


LEDGER = Ledger()


@pytest.fixture(scope="module")
def fuzz_settings(kafka_broker: str) -> Iterator[Settings]:
    settings = Settings(
        kafka_bootstrap_servers=kafka_broker,
        offload_topic_prefix=unique_prefix("ing-fuzz"),
        offload_webhook_tokens=SecretStr(TOKEN),
    )
    yield settings
    delete_topics_with_prefix(settings)


@pytest.fixture(scope="module")
def ingress(fuzz_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ingress]:
    with running_ingress(fuzz_settings, tmp_path_factory.mktemp("ingress-fuzz")) as running:
        yield running


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=60) as shared:
        yield shared


# --- strategies ---

STATUSES = ["CREATED", "RUNNING", "INPUT_NEEDED", "COMPLETED", "FAILED"]
EVENT_TYPES = ["case.completed", "case.failed", "case.input_needed", "case.reassigned"]
json_leaves = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
random_json = st.recursive(
    json_leaves,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
# Lone surrogates: json.dumps writes them as \udXXX escapes, or (ensure_ascii=False, surrogatepass) as
# bytes that are not UTF-8.
surrogate_text = st.builds(
    lambda head, surrogate, tail: head + surrogate + tail,
    st.text(max_size=6),
    st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF),
    st.text(max_size=6),
)
huge_text = st.integers(min_value=200, max_value=MAX_BYTES + 4096).map(lambda size: "c" * size)


@st.composite
def valid_envelopes(draw: st.DrawFn) -> dict[str, Any]:
    event_type = draw(st.sampled_from(EVENT_TYPES))
    case_id = str(draw(st.uuids()))
    timestamp = draw(st.integers(min_value=0, max_value=2**45))
    data: dict[str, Any] = {"caseId": case_id, "status": draw(st.sampled_from(STATUSES))}
    if event_type == "case.input_needed":
        data |= {"inputRequest": draw(st.text(max_size=40)), "inputRequestId": str(draw(st.uuids()))}
    if draw(st.booleans()):
        data["metadata"] = draw(random_json)
    return {
        "event_id": f"evt_{case_id}_{event_type.replace('.', '_')}_{timestamp}",
        "event_type": event_type,
        "timestamp": timestamp,
        "data": data,
    }


@st.composite
def mutated_envelopes(draw: st.DrawFn) -> dict[str, Any]:
    envelope = draw(valid_envelopes())
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        data = envelope.get("data")
        target: dict[str, Any] = data if isinstance(data, dict) and draw(st.booleans()) else envelope
        key = draw(st.sampled_from(sorted(target)) | st.text(max_size=8) if target else st.text(max_size=8))
        replacement = draw(
            st.sampled_from(["delete", "json", "surrogate", "huge", "deep", "empty"]).flatmap(
                lambda kind: (
                    st.just((kind, None))
                    if kind in ("delete", "empty")
                    else st.tuples(
                        st.just(kind),
                        {
                            "json": random_json,
                            "surrogate": surrogate_text,
                            "huge": huge_text,
                            # Past the ingress limit (128) but within what json.dumps here can write.
                            "deep": st.integers(min_value=100, max_value=300).map(_nested_value),
                        }[kind],
                    )
                )
            )
        )
        kind, value = replacement
        if kind == "delete":
            target.pop(key, None)
        elif kind == "empty":
            target[key] = ""
        else:
            target[key] = value
    return envelope


def _nested_value(depth: int) -> Any:
    value: Any = "deep"
    for level in range(depth):
        value = [value] if level % 2 else {"n": value}
    return value


def _dumps(payload: Any, style: str) -> bytes:
    if style == "compact":
        return json.dumps(payload, separators=(",", ":")).encode()
    if style == "raw-unicode":  # a lone surrogate becomes bytes that are not UTF-8
        return json.dumps(payload, ensure_ascii=False).encode("utf-8", "surrogatepass")
    return json.dumps(payload, indent=1).encode()


def _deep_body(depth: int, kind: str) -> bytes:
    return (b"[" * depth + b"]" * depth) if kind == "array" else (b'{"a":' * depth + b"0" + b"}" * depth)


@st.composite
def bodies(draw: st.DrawFn, huge: bool = True) -> bytes:
    """Request bodies, from valid webhooks to garbage."""
    kind = draw(st.sampled_from(["valid", "mutated", "json", "deep", "bytes", "flipped", "encoding", "huge"]))
    if kind == "huge" and not huge:
        kind = "valid"
    style = draw(st.sampled_from(["compact", "raw-unicode", "indent"]))
    if kind == "valid":
        return _dumps(draw(valid_envelopes()), style)
    if kind == "mutated":
        return _dumps(draw(mutated_envelopes()), style)
    if kind == "json":
        return _dumps(draw(random_json | st.dictionaries(st.text(max_size=8), random_json)), style)
    if kind == "deep":
        depth = draw(st.integers(min_value=100, max_value=100_000) | st.sampled_from([128, 129, 999, 1001]))
        return _deep_body(depth, draw(st.sampled_from(["array", "object"])))
    if kind == "bytes":
        return draw(st.binary(max_size=300))
    if kind == "flipped":  # a valid webhook with bytes overwritten: broken UTF-8, broken syntax
        body = bytearray(_dumps(draw(valid_envelopes()), "compact"))
        for _ in range(draw(st.integers(min_value=1, max_value=4))):
            body[draw(st.integers(min_value=0, max_value=len(body) - 1))] = draw(st.integers(0, 255))
        return bytes(body)
    if kind == "encoding":  # BOMs, UTF-16/32 (json.loads guesses these), raw surrogates
        text = json.dumps(draw(valid_envelopes()))
        codec = draw(st.sampled_from(["utf-8-sig", "utf-16", "utf-16-le", "utf-32", "latin-1"]))
        return text.encode(codec, "replace")
    # Huge strings where the key and headers come from, around the body limit.
    envelope = draw(valid_envelopes())
    where = draw(st.sampled_from(["caseId", "event_id", "event_type", "padding"]))
    text = draw(huge_text)
    if where == "caseId":
        envelope["data"]["caseId"] = text
    elif where == "event_type":
        envelope["event_type"] = "case." + text
    else:
        envelope[where] = text
    return _dumps(envelope, "compact")


VALID_TOKEN_PATH = f"/webhooks/offload/{TOKEN}"
bad_tokens = st.sampled_from(["wrong", TOKEN + "x", TOKEN[:-1], TOKEN.upper(), " " + TOKEN]) | st.text(
    st.characters(codec="utf-8"), min_size=1, max_size=30
).filter(lambda token: token != TOKEN)
# (path, whether its token is valid)
paths = st.one_of(
    st.just((VALID_TOKEN_PATH, True)),
    bad_tokens.map(lambda token: (f"/webhooks/offload/{quote(token, safe='')}", False)),
    st.just(("/webhooks/offload", False)),
    st.just(("/webhooks/offload/", False)),
)
content_types = st.sampled_from(
    [
        "application/json",
        "application/json; charset=utf-8",
        "APPLICATION/JSON",
        "application/cloudevents+json",
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/json;;;",
        "",
        ";",
    ]
) | st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"), max_size=40)
# httpx sets these itself; the raw-socket property varies the framing ones.
_FRAMING_HEADERS = {"content-length", "transfer-encoding", "host", "content-type", "connection"}
header_names = st.from_regex(r"\A[A-Za-z0-9!#$%&'*+.^_`|~-]{1,20}\Z").filter(
    lambda name: (
        name.lower() not in {"content-length", "transfer-encoding", "host", "content-type", "connection"}
    )
)
header_values = st.binary(max_size=60).map(
    lambda raw: bytes(b for b in raw if b >= 0x20 and b != 0x7F).strip()
)


# --- checks ---


def _check(status: int, body: bytes, token_valid: bool, where: str) -> None:
    """The properties every answer has; records what a 2xx answer says was published."""
    LEDGER.requests += 1
    assert status < 500, f"{where}: {status} {body[:300]!r}"
    if 200 <= status < 300:
        assert token_valid, f"{where}: {status} for an invalid token"
        answer = json.loads(body)
        assert answer["ok"] is True
        topic = CASE_EVENTS.name if status == 200 else CASE_EVENTS_INVALID.name
        assert status == 200 or answer["data"]["quarantined"] is True
        LEDGER.acknowledged.add((topic, answer["data"]["partition"], answer["data"]["offset"]))
        return
    answer = json.loads(body)
    assert answer["ok"] is False, f"{where}: {body[:300]!r}"
    error = answer["error"]
    assert set(error) == {"code", "message"}, f"{where}: {body[:300]!r}"
    assert isinstance(error["code"], str) and isinstance(error["message"], str)
    if not token_valid and error["code"] != "INVALID_REQUEST":
        # Anything the app sees with a bad token is refused before its body is looked at.
        refusals = {(401, "UNAUTHORIZED"), (404, "NOT_FOUND"), (405, "METHOD_NOT_ALLOWED")}
        assert (status, error["code"]) in refusals, f"{where}: {body!r}"


# --- the properties ---


@settings(FUZZ, max_examples=BODY_EXAMPLES)
@given(body=bodies(), token_valid=st.booleans())
def test_any_body_is_answered_below_500_in_the_envelope(
    ingress: Ingress, client: httpx.Client, body: bytes, token_valid: bool
) -> None:
    LEDGER.suites.add("bodies")
    path = VALID_TOKEN_PATH if token_valid else "/webhooks/offload/not-the-token"
    response = client.post(ingress.url + path, content=body, headers={"content-type": "application/json"})
    _check(response.status_code, response.content, token_valid, f"body {body[:120]!r}")


@settings(FUZZ, max_examples=HEADER_EXAMPLES)
@given(
    path=paths,
    content_type=st.none() | content_types,
    extra=st.lists(st.tuples(header_names, header_values), max_size=6),
    body=bodies(huge=False),
)
def test_any_headers_token_and_content_type_are_answered_below_500_in_the_envelope(
    ingress: Ingress,
    client: httpx.Client,
    path: tuple[str, bool],
    content_type: str | None,
    extra: list[tuple[str, bytes]],
    body: bytes,
) -> None:
    LEDGER.suites.add("headers")
    url, token_valid = path
    headers = [(name.encode(), value) for name, value in extra]
    if content_type is not None:
        headers.append((b"content-type", content_type.encode("latin-1")))
    response = client.post(ingress.url + url, content=body, headers=headers)
    _check(response.status_code, response.content, token_valid, f"{url} {content_type!r} {extra!r}")


FRAMINGS = [
    "length",
    "chunked",
    "chunked-extensions",
    "duplicate-length",
    "conflicting-length",
    "length-and-chunked",
    "short-length",
    "no-length",
    "bad-chunk-size",
    "truncated-length",
    "truncated-chunked",
]


def _chunked(body: bytes, cuts: list[int], extensions: bool) -> bytes:
    points = sorted({0, len(body), *(cut % (len(body) + 1) for cut in cuts)})
    framed = b""
    for start, end in itertools.pairwise(points):
        size = f"{end - start:X}".encode() + (b";ext=1" if extensions else b"")
        framed += size + b"\r\n" + body[start:end] + b"\r\n"
    return framed


def _frame(framing: str, body: bytes, cuts: list[int]) -> tuple[bytes, bytes]:
    """The framing headers and the bytes that follow the head."""
    length = str(len(body)).encode()
    if framing == "length":
        return b"Content-Length: " + length + b"\r\n", body
    if framing in ("chunked", "chunked-extensions"):
        chunks = _chunked(body, cuts, framing == "chunked-extensions")
        return b"Transfer-Encoding: chunked\r\n", chunks + b"0\r\n\r\n"
    if framing == "duplicate-length":
        return b"Content-Length: " + length + b"\r\nContent-Length: " + length + b"\r\n", body
    if framing == "conflicting-length":
        return b"Content-Length: " + length + b"\r\nContent-Length: 1\r\n", body
    if framing == "length-and-chunked":
        return b"Content-Length: " + length + b"\r\nTransfer-Encoding: chunked\r\n", body
    if framing == "short-length":  # the rest reads as a second, garbage request
        return b"Content-Length: " + str(len(body) // 2).encode() + b"\r\n", body
    if framing == "no-length":
        return b"", body
    if framing == "bad-chunk-size":
        return b"Transfer-Encoding: chunked\r\n", b"zz\r\n" + body + b"\r\n0\r\n\r\n"
    if framing == "truncated-length":  # declares more than is ever sent
        return b"Content-Length: " + str(len(body) + 10).encode() + b"\r\n", body
    return b"Transfer-Encoding: chunked\r\n", _chunked(body, cuts, False)  # no last chunk


def _exchange(port: int, request: bytes, truncated: bool) -> bytes:
    """Send a request and read its first answer; empty when the server closed the connection first."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
        answer = b""
        try:
            connection.sendall(request)
            if truncated:
                # The server waits for the rest of the body; end the request so it stops waiting.
                connection.shutdown(socket.SHUT_WR)
            while not _complete(answer):
                chunk = connection.recv(65536)
                if not chunk:
                    break
                answer += chunk
        except (ConnectionResetError, BrokenPipeError):
            # A request the parser refused is answered and closed at once; the rest of what we sent
            # then makes the server's kernel reset the connection, which may swallow the answer.
            pass
        return answer


def _complete(answer: bytes) -> bool:
    head, found, rest = answer.partition(b"\r\n\r\n")
    if not found:
        return False
    for line in head.split(b"\r\n")[1:]:
        if line.lower().startswith(b"content-length:"):
            return len(rest) >= int(line.split(b":", 1)[1])
    return False


def _first_response(answer: bytes) -> tuple[int, bytes]:
    head, _, rest = answer.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ")[1])
    length = next(
        (int(line.split(b":", 1)[1]) for line in lines[1:] if line.lower().startswith(b"content-length:")),
        len(rest),
    )
    return status, rest[:length]


# Framings a server must answer (the others it may also refuse by closing the connection).
WELL_FORMED = {"length", "chunked", "chunked-extensions"}


@settings(FUZZ, max_examples=RAW_EXAMPLES)
@given(
    method=st.sampled_from(["POST"] * 6 + ["GET", "PUT", "DELETE", "OPTIONS"]),
    path=paths,
    framing=st.sampled_from(FRAMINGS),
    body=bodies(huge=False),
    cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=5),
    content_type=st.sampled_from([b"application/json", b"text/plain", b"application/json; charset=utf-8"]),
)
def test_any_http_framing_is_answered_below_500_in_the_envelope(
    ingress: Ingress,
    method: str,
    path: tuple[str, bool],
    framing: str,
    body: bytes,
    cuts: list[int],
    content_type: bytes,
) -> None:
    LEDGER.suites.add("raw")
    url, token_valid = path
    framing_headers, payload = _frame(framing, body, cuts)
    head = (
        f"{method} {url} HTTP/1.1\r\nHost: 127.0.0.1\r\n".encode()
        + b"Content-Type: "
        + content_type
        + b"\r\n"
        + framing_headers
        + b"\r\n"
    )
    truncated = framing.startswith("truncated")
    answer = _exchange(ingress.port, head + payload, truncated)
    may_publish = token_valid and method == "POST"
    if not answer:
        assert framing not in WELL_FORMED, f"no answer to {framing} {method} {url} {body[:80]!r}"
        LEDGER.requests += 1
        # With pipelined garbage after a complete request (short-length), the parser's refusal closes the
        # connection while the first request may still be published: its answer is lost, not its record.
        LEDGER.unanswered += may_publish
        return
    status, response_body = _first_response(answer)
    # Another method reaches no webhook handler (405), so it may never publish either.
    _check(status, response_body, may_publish, f"{framing} {method} {url} {body[:80]!r}")


def test_nothing_was_published_but_what_a_2xx_answer_named(ingress: Ingress, fuzz_settings: Settings) -> None:
    """Run after the properties (file order): every record on either topic was acknowledged by a 2xx
    answer (or came from a valid-token request whose connection closed before its answer), so no refusal
    and no invalid token published anything; and the ingress never took the unexpected-error path."""
    landed = {
        (spec.name, record.partition, record.offset)
        for spec in (CASE_EVENTS, CASE_EVENTS_INVALID)
        for record in read_topic(fuzz_settings, spec)
    }
    missing = LEDGER.acknowledged - landed
    assert not missing, f"acknowledged but not on the topics: {sorted(missing)[:5]}"
    unacknowledged = landed - LEDGER.acknowledged
    assert len(unacknowledged) <= LEDGER.unanswered, f"published without a 2xx: {sorted(unacknowledged)[:5]}"
    print(
        f"fuzzed {LEDGER.requests} requests: {len(LEDGER.acknowledged)} acknowledged, "
        f"{LEDGER.unanswered} valid-token requests unanswered"
    )
    log = ingress.log()
    assert "unexpected error" not in log and "Exception in ASGI application" not in log, log[-3000:]
    if LEDGER.suites == {"bodies", "headers", "raw"}:
        assert LEDGER.requests >= 2000, LEDGER.requests
