"""offload-bridge: the streams worker, one package per feature (state, answers, case_requests, reconcile).

Words used the same way in every feature: a *decision* is what a pure policy concludes about a reply or
a record and so what the feature does next (``decide_answer() -> AnswerDecision``,
``decide_case_request()``, ``decide_reconcile()``); an *outcome* is only what we publish on an outcome
topic (``AnswerOutcome``, ``CaseRequestOutcome``); a *result* is what one step returned (an Offload call,
``FoldResult`` of the fold, ``FetchResult`` of a reconcile lookup).
"""
