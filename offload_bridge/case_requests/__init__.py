"""For the teams that create cases: publish case requests and wait for their outcomes."""

from offload_bridge.case_requests.client import CaseRequestSubmitter, OutcomeTimeout, default_request_id

__all__ = ["CaseRequestSubmitter", "OutcomeTimeout", "default_request_id"]
