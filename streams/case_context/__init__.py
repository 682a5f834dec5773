"""``GET /cases/{caseId}/context``: a case as Offload returns it, with the conversation so far.

What a person needs to answer a question well (the case's objective, the counterparty, the transcript) is
Offload's alone, and the worker holds the only API key: this route fetches it (``fetch``) through the
worker's one limit of Offload calls, keeps it briefly and shares concurrent fetches of a case (``cache``),
and answers in Offload's envelope (``view``). Any worker answers for any case: nothing here reads the
case table, so no request is routed.
"""
