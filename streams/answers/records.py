"""Turn a raw ``answers`` / ``answers.retry`` record into an answer, or say in one line why it is not one."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from pydantic import ValidationError

from offload_bridge.kafka.partitioning import partition_for
from offload_bridge.schemas.answers import Answer, default_answer_id
from offload_bridge.schemas.validation import describe_validation_error

AnswerT = TypeVar("AnswerT", bound=Answer)


class InvalidAnswer(ValueError):
    """A record that is no answer; ``case_id`` and ``answer_id`` are whatever could still be read."""

    def __init__(self, reason: str, case_id: str | None, answer_id: str) -> None:
        super().__init__(reason)
        self.case_id = case_id
        self.answer_id = answer_id


def decode_answer(
    model: type[AnswerT],
    key: bytes | None,
    value: bytes | None,
    position: tuple[str, int, int],
    partitions: int | None = None,
) -> AnswerT:
    """The answer a record carries. Raises InvalidAnswer.

    The key must be the answer's caseId: the case-state table is partitioned by it, and the agent may only
    touch the table partition its record came from. With ``partitions``, the record must also sit in the
    partition Kafka's default partitioner gives the caseId: elsewhere the worker holding it has no state
    of the case.
    """
    try:
        if value is None:
            raise ValueError("record has no value")
        answer = model.model_validate_json(value)
    except ValidationError as error:
        first = error.errors()[0]
        reason = "schema: " + describe_validation_error(error, first_only=True)
        if first["type"] == "json_invalid":
            reason = f"not JSON: {first['msg']}"
        raise _invalid(reason, key, value, position) from None
    except ValueError as error:
        raise _invalid(str(error), key, value, position) from None
    if key != answer.caseId.encode():
        shown = key.decode(errors="replace") if key is not None else None
        reason = f"record key {shown!r} is not the answer's caseId {answer.caseId!r}"
        raise InvalidAnswer(reason, answer.caseId, answer.answer_id)
    if partitions is not None and (expected := partition_for(answer.caseId, partitions)) != position[1]:
        reason = (
            f"record in partition {position[1]}, but Kafka's default partitioner puts caseId "
            f"{answer.caseId!r} in partition {expected}: produce with Kafka's default (murmur2) partitioner "
            "(librdkafka: partitioner=murmur2_random)"
        )
        raise InvalidAnswer(reason, answer.caseId, answer.answer_id)
    return answer


def _invalid(
    reason: str, key: bytes | None, value: bytes | None, position: tuple[str, int, int]
) -> InvalidAnswer:
    body = _json_object(value)
    case_id = _text(body.get("caseId")) or (key.decode(errors="replace").strip() if key else None) or None
    answer_id = _text(body.get("answerId"))
    if answer_id is None:
        fields = [_text(body.get(name)) for name in ("caseId", "inputRequestId", "providedContext")]
        if all(fields):
            answer_id = default_answer_id(*(field or "" for field in fields))
        else:
            topic, partition, offset = position
            answer_id = f"invalid_{topic}_{partition}_{offset}"
    return InvalidAnswer(reason, case_id, answer_id)


def _json_object(value: bytes | None) -> dict[str, Any]:
    if value is None:
        return {}
    try:
        body = json.loads(value)
    except (ValueError, UnicodeDecodeError):
        return {}
    return body if isinstance(body, dict) else {}


def _text(value: Any) -> str | None:
    return value.strip() or None if isinstance(value, str) else None
