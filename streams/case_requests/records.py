"""Turn a raw ``case-requests`` record into a case request, or say in one line why it is not one."""

from __future__ import annotations

from pydantic import ValidationError

from offload_bridge.kafka.partitioning import partition_for
from offload_bridge.schemas.case_requests import CaseRequest
from offload_bridge.schemas.validation import describe_validation_error


class InvalidCaseRequest(ValueError):
    """Not a case request; the message says why in one line."""


def decode_request(
    key: bytes | None, value: bytes | None, partition: int | None = None, partitions: int | None = None
) -> CaseRequest:
    """The request a record carries. Raises InvalidCaseRequest.

    With ``partition`` and ``partitions``, the record must sit where Kafka's default partitioner puts
    its requestId: elsewhere another worker could hold the request's history.
    """
    if value is None:
        raise InvalidCaseRequest("record has no value")
    try:
        request = CaseRequest.model_validate_json(value)
    except ValidationError as error:
        raise InvalidCaseRequest("schema: " + describe_validation_error(error, first_only=True)) from None
    if key != request.requestId.encode():
        shown = key.decode(errors="replace") if key is not None else None
        raise InvalidCaseRequest(f"record key {shown!r} is not the requestId {request.requestId!r}")
    if partition is not None and partitions is not None:
        expected = partition_for(request.requestId, partitions)
        if expected != partition:
            raise InvalidCaseRequest(
                f"record in partition {partition}, but Kafka's default partitioner puts requestId "
                f"{request.requestId!r} in partition {expected}: produce with Kafka's default (murmur2) "
                "partitioner (librdkafka: partitioner=murmur2_random)"
            )
    return request
