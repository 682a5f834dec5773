"""The inbox's pages: the list of waiting questions, a case, and the answer form.

Every page is whole HTML that works without script. ``static/inbox.js`` only refreshes parts of a page when
the server-sent events say a case changed (``?fragment=...`` returns just that part), and never replaces a
form someone has typed into.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError

from offload_bridge.inbox.feed import FeedStatus
from offload_bridge.inbox.http import envelope
from offload_bridge.inbox.identity import CSRF_FIELD, CsrfTokens, Person
from offload_bridge.inbox.metrics import InboxMetrics
from offload_bridge.inbox.render import render
from offload_bridge.inbox.store import AnswerView, CaseView, InboxStore, QuestionFilter, SubmittedAnswer
from offload_bridge.ingress.publisher import Publisher, PublishFailed
from offload_bridge.schemas.answers import Answer
from offload_bridge.settings import Settings
from offload_bridge.topics import ANSWERS, topic_name
from offload_bridge.worker_client import WorkerClient, WorkerUnavailable

log = logging.getLogger(__name__)

# The age filter's choices: label and seconds.
AGE_CHOICES: tuple[tuple[str, str, int | None], ...] = (
    ("", "any age", None),
    ("1h", "over 1 hour", 3600),
    ("4h", "over 4 hours", 4 * 3600),
    ("1d", "over 1 day", 86_400),
    ("3d", "over 3 days", 3 * 86_400),
)
_AGES = {key: seconds for key, _, seconds in AGE_CHOICES}
_ANSWER_ID = re.compile(r"^ans_[0-9a-f]{32}$")
MAX_ANSWER_CHARS = 20_000
CONTEXT_TIMEOUT_S = 5.0

router = APIRouter()


@dataclass
class InboxContext:
    settings: Settings
    store: InboxStore
    publisher: Publisher
    csrf: CsrfTokens
    feed: FeedStatus

    def person(self, request: Request) -> Person:
        person: Person = request.state.person
        return person


def inbox(request: Request) -> InboxContext:
    context: InboxContext = request.app.state.inbox
    return context


def page(request: Request, template: str, status: int = 200, **values: Any) -> HTMLResponse:
    context = inbox(request)
    html = render(
        template,
        person=context.person(request),
        ready=context.feed.ready,
        csrf_field=CSRF_FIELD,
        **values,
    )
    return HTMLResponse(html, status_code=status, headers={"Cache-Control": "no-store"})


# --- the list ------------------------------------------------------------------------------------
@router.get("/", response_class=HTMLResponse)
async def waiting_questions(
    request: Request,
    age: str = "",
    field: str = "",
    value: str = "",
    page_number: int = 1,
    fragment: str = "",
) -> HTMLResponse:
    context = inbox(request)
    older_than = _AGES.get(age)
    filters = QuestionFilter(older_than, field.strip() or None, value.strip() or None)
    size = context.settings.offload_inbox_page_size
    listing = context.store.page(filters, page_number, size)
    query = {key: val for key, val in (("age", age), ("field", field), ("value", value)) if val}
    values: dict[str, Any] = dict(
        listing=listing,
        age=age,
        field=field,
        value=value,
        ages=AGE_CHOICES,
        fields=context.store.metadata_fields(),
        query=query,
        page_link=lambda number: "/?" + urlencode({**query, "page_number": number}),
        waiting=context.store.waiting_count,
    )
    if fragment == "list":
        return page(request, "_questions.html", **values)
    return page(request, "list.html", **values)


# --- a case --------------------------------------------------------------------------------------
@router.get("/cases/{case_id}", response_class=HTMLResponse)
async def case_page(request: Request, case_id: str, answer: str = "", fragment: str = "") -> HTMLResponse:
    context = inbox(request)
    view = context.store.case(case_id)
    if view is None:
        return page(request, "missing.html", status=404, case_id=case_id)
    mine = context.store.answer(answer) if _ANSWER_ID.match(answer) else None
    values = _case_values(request, view, mine, text=None, problem=None)
    if fragment == "live":
        return page(request, "_live.html", **values)
    if fragment == "form":
        return page(request, "_form.html", **values)
    values["details"] = await _details(context, case_id)
    return page(request, "case.html", **values)


def _case_values(
    request: Request, view: CaseView, mine: AnswerView | None, text: str | None, problem: str | None
) -> dict[str, Any]:
    """What the case page and its fragments show. ``mine``: the answer the person just sent, if any;
    ``text``: what the form holds (the person's words are never lost)."""
    context = inbox(request)
    person = context.person(request)
    pending = view.pending
    # The question the case asked last: waiting, or answered (by whom, shown to everyone who comes later).
    last = view.state.inputRequest if view.state is not None else None
    standing = view.standing_answer(last.id) if last is not None else None
    if mine is not None and text is None and not mine.stands:
        text = mine.answer.text  # refused: offer the same words again, for the question asked now
    # The form shows when there is a question no answer stands for, and the person is not waiting on one.
    show_form = pending is not None and standing is None and (mine is None or not mine.stands)
    return dict(
        view=view,
        state=view.state,
        pending=pending,
        last_question=last,
        standing=standing,
        mine=mine,
        show_form=show_form,
        form_question=view.question(pending.inputRequestId) if pending is not None else None,
        text=text or "",
        problem=problem,
        answer_id=f"ans_{uuid.uuid4().hex}",
        csrf=context.csrf.issue(person),
        case_url="/cases/" + quote(view.case_id, safe=""),
    )


async def _details(context: InboxContext, case_id: str) -> dict[str, Any]:
    """The case as Offload knows it (objective, counterparty, conversation), through a worker: only the
    workers hold the API key. A failure is shown on the page, never raised."""
    settings = context.settings
    problems: list[str] = []
    for url in settings.worker_urls:
        client = WorkerClient(url, CONTEXT_TIMEOUT_S, token=settings.worker_client_token)
        try:
            found = await asyncio.to_thread(client.context, case_id)
        except WorkerUnavailable as error:
            problems.append(str(error))
            continue
        if found is None:
            return {"case": None, "problem": "Offload knows no such case"}
        return {"case": found, "problem": None}
    return {"case": None, "problem": "; ".join(problems) or "no worker is configured (OFFLOAD_WORKER_URLS)"}


# --- answering -----------------------------------------------------------------------------------
@router.post("/cases/{case_id}/answers", response_class=HTMLResponse)
async def post_answer(request: Request, case_id: str) -> Response:
    context = inbox(request)
    person = context.person(request)
    metrics: InboxMetrics = request.app.state.metrics

    def count(result: str) -> None:
        metrics.answers.labels(result=result).inc()

    form = await request.form()
    text = str(form.get("text") or "")
    input_request_id = str(form.get("inputRequestId") or "").strip()
    answer_id = str(form.get("answerId") or "").strip()
    refusal = context.csrf.check(person, str(form.get(CSRF_FIELD) or "") or None)
    view = context.store.case(case_id)
    if view is None:
        return page(request, "missing.html", status=404, case_id=case_id)

    def again(status: int, problem: str) -> HTMLResponse:
        count("refused" if status < 500 else "failed")
        values = _case_values(request, view, None, text=text, problem=problem)
        values["show_form"] = True
        values["form_question"] = view.question(input_request_id) or values["form_question"]
        return page(request, "case.html", status=status, details=None, **values)

    if refusal is not None:
        if refusal.startswith("the form is too old"):
            return again(400, refusal)
        count("refused")
        return _forbidden(refusal)
    if not _ANSWER_ID.match(answer_id) or not input_request_id:
        return again(400, "the form is incomplete: reload the page and send it again (your text is kept)")
    if not text.strip():
        return again(400, "write an answer before sending it")
    if len(text) > MAX_ANSWER_CHARS:
        return again(400, f"an answer holds at most {MAX_ANSWER_CHARS} characters")
    if context.store.answer(answer_id) is not None:
        return _see(case_id, answer_id)  # sent already (a second click, a reload): nothing twice
    standing = view.standing_answer(input_request_id)
    if standing is not None:
        values = _case_values(request, view, None, text=text, problem=None)
        values["show_form"] = False
        values["taken"] = standing
        count("refused")
        return page(request, "case.html", status=409, details=None, **values)
    try:
        answer = Answer(
            caseId=case_id,
            inputRequestId=input_request_id,
            providedContext=text,
            answerId=answer_id,
            submittedBy=person.name,
        )
    except ValidationError as error:
        return again(400, f"the answer cannot be sent: {error.errors()[0]['msg']}")
    topic = topic_name(ANSWERS, context.settings)
    try:
        await context.publisher.publish(
            topic, case_id.encode(), answer.model_dump_json(exclude_none=True).encode(), ()
        )
    except PublishFailed as error:
        log.warning("inbox: answer %s to case %s not published: %s", answer_id, case_id, error)
        return again(503, f"the answer was not sent, Kafka did not take it ({error}); send it again")
    count("published")
    context.store.add_answer(
        SubmittedAnswer(
            case_id, answer_id, input_request_id, answer.providedContext, person.name, int(time.time() * 1000)
        )
    )
    return _see(case_id, answer_id)


def _see(case_id: str, answer_id: str) -> RedirectResponse:
    # 303: the browser fetches the case page with GET, so a reload never posts again.
    return RedirectResponse(
        f"/cases/{quote(case_id, safe='')}?{urlencode({'answer': answer_id})}#outcome", status_code=303
    )


def _forbidden(message: str) -> Response:
    return envelope(403, "CSRF_REFUSED", message)
