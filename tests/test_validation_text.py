"""A pydantic ValidationError as one line of text, however the caller names the fields."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from offload_bridge.schemas.case_requests import CaseRequest
from offload_bridge.schemas.validation import describe_validation_error


def test_a_validation_error_reads_as_one_line() -> None:
    with pytest.raises(ValidationError) as caught:
        CaseRequest.model_validate({"requestId": " ", "channel": "FAX"})
    error = caught.value
    text = describe_validation_error(error)
    assert text.startswith("channel: Input should be 'EMAIL' or 'SMS'; goal: Field required")
    assert text.count("; ") == error.error_count() - 1
    assert describe_validation_error(error, first_only=True).endswith(f"({error.error_count()} error(s))")
    env = describe_validation_error(error, location=lambda where: "_".join(map(str, where)).upper())
    assert env.startswith("CHANNEL: ")
    with pytest.raises(ValidationError) as whole:
        CaseRequest.model_validate([])
    assert describe_validation_error(whole.value, root="(body)").startswith("(body): ")
