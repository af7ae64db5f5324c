"""The listing endpoints: a workflow's job summaries, the workflows a key can see, an estimate.

HTTP only, like a job fetch, and through the same ``get_json`` (retries, deadline, body cap, error
classes, key redaction); what is here is what a listing's answer must be and how each item of it
becomes typed data.

* **A bad item never spoils the others.** An item that is not an object, has no string id, an id
  the id rule refuses (``archiver.ids``), names another workflow, or repeats an id already listed
  is left out and described in ``problems`` (items are counted from 0, as in the JSON array).
  Only an answer that is not the expected shape at all (not an object, an error envelope, no
  ``jobs`` list) is an ``InvalidResponseError``, naming the workflow.
* **A bad field never drops an item.** Each summary field is read as the job payload reads it
  (``archiver.archive.values``, with the lengths ``archiver.fields`` declares), so a summary's
  ``updated_at`` equals what archiving the full job stored from the same text; a value that cannot
  be read is None, and the digest, taken over the raw values, still sees it change.
* **Memory.** A listing is held once as text while it is decoded, and its items are decoded one
  at a time (``archiver.archive.jsonload.loads_streaming``), each turned into a slotted summary
  and dropped: the decoded tree of a 30 MB listing (about 110 MB) never exists at once. Past
  ``max_body_bytes`` the listing is refused with the setting to raise.
* **Pagination is bounded.** listWorkflows pages stop at the server's total, at an empty page, at
  a short page when there is no usable total, and after ``ceil(total / limit) + 1`` pages or
  ``MAX_PAGES``; a server that keeps answering is stopped with an error, never followed forever.
  A workflow listed again on a later page (offsets shift when one is created meanwhile) is
  skipped without a problem; a page holding nothing but such repeats means the server ignores
  the offset, and stops the listing with an error.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, Protocol

from archiver import fields as declared
from archiver.api.paths import checked, segment, show
from archiver.archive.jsonload import Decoded, canonical, loads_streaming
from archiver.archive.values import clean_text, parse_int, parse_timestamp
from archiver.config import Settings
from archiver.errors import InvalidResponseError
from archiver.ids import id_problem, shown_id

PAGE_LIMIT = 50  # the API's default page size for listWorkflows
MAX_PAGES = 10_000  # listWorkflows pages in one listing when the server gives no usable total
MAX_PROBLEMS = 1000  # problem lines kept per listing; ``unusable`` counts them all
# the six fields whose change makes a known job due; the digest covers their raw values
SUMMARY_FIELDS = ("status", "progress", "cost", "updated_at", "finished_at", "time_taken")

_JOB_FIELDS = {f.name: f for f in declared.JOB}
_SHORT = declared.SHORT_TEXT_MAX


class _Document(Protocol):
    @property
    def value(self) -> dict[str, Any]: ...
    @property
    def fetched_at(self) -> datetime: ...


class Getter(Protocol):
    """What the listing needs of ``archiver.api.client.ApiClient``."""

    def get_json(
        self,
        path: str,
        *,
        where: str,
        query: Mapping[str, str | int | None] | None = None,
        check: Callable[[dict[str, Any]], str | None] | None = None,
        keep_text: bool = False,
        too_big: str = "body",
        hint: str = "",
        parse: Callable[[str], Decoded] = ...,
    ) -> _Document: ...

    def redact(self, text: str) -> str: ...


@dataclass(frozen=True, slots=True)
class JobSummary:
    """One item of listJobs, checked and typed; the fields discovery compares with the archive."""

    job_id: str
    status: str | None
    progress: str | None  # as the archive's progress column holds it ("75%")
    cost: int | None  # None when absent or not an integer
    updated_at: datetime | None  # aware UTC, read like the job payload's timestamps
    finished_at: datetime | None
    time_taken: str | None  # as the archive's time_taken column holds it
    created_at: datetime | None
    created_by: str | None
    digest: str  # sha256 hex of the raw values of SUMMARY_FIELDS present in the item


@dataclass(slots=True)
class JobListing:
    workflow_id: str
    jobs: list[JobSummary]  # usable items, each id once (the first of a repeated id)
    problems: list[str]  # one line per unusable item, at most MAX_PROBLEMS (then a last count)
    fetched_at: datetime
    unusable: int = 0  # unusable items in all, listed in ``problems`` or not


@dataclass(frozen=True, slots=True)
class WorkflowInfo:
    workflow_id: str
    project_id: str | None
    legacy_project_id: str | None
    name: str | None
    description: str | None
    created_by: str | None
    created_at: datetime | None
    updated_at: datetime | None


@dataclass(slots=True)
class WorkflowPage:
    workflows: list[WorkflowInfo]
    problems: list[str]
    total: int | None  # the server's total, when it gave a usable one
    offset: int  # the offset this page was asked for
    limit: int  # the page size asked for
    fetched_at: datetime | None = None
    unusable: int = 0


# ---------------------------------------------------------------------------------------------
# listJobs


def list_jobs(client: Getter, workflow_id: str, *, max_pages: int = MAX_PAGES) -> JobListing:
    """``GET /v0/workflows/{workflow_id}/jobs``: every job summary of one workflow.

    The provider documents no pagination here: one request, one answer. Should an answer carry a
    ``pagination`` block whose ``total`` exceeds the items received (the endpoint grew paging,
    or caps its answers), the rest is asked for by ``offset``/``limit`` like listWorkflows,
    bounded the same way, rather than silently discovering only the first page.
    """
    path = f"/v0/workflows/{segment('workflow_id', workflow_id)}/jobs"
    reader = _JobReader(workflow_id, client.redact)
    query: dict[str, str | int | None] = {}
    pages, bound = 0, max_pages
    while True:
        if pages >= bound:
            raise InvalidResponseError(
                client.redact(
                    f"200 OK — invalid response: listJobs of workflow {show(workflow_id)} kept "
                    f"answering pages past its total ({pages} pages, {reader.index} jobs); "
                    "stopped"
                ),
                status=200,
            )
        reader.mark()
        where = f"(workflow {show(workflow_id)}" + (
            f", offset {query['offset']})" if query else ")"
        )
        document = client.get_json(
            path,
            where=where,
            query=query,
            check=_member_check("jobs"),
            too_big="the job listing",
            hint=_too_big_hint(),
            parse=reader.parse,
        )
        if not reader.streamed:  # decoded whole (``loads_streaming`` says when): read it now
            items = document.value.pop("jobs") or []  # null: none (Go encodes an empty slice so)
            items.reverse()  # popped from the end, in order, so each raw item is freed once read
            while items:
                reader.take(items.pop())
        pages += 1
        read = reader.index - reader.marked
        total, served = _pagination(document.value.get("pagination"), max(read, 1))
        fetched_at = document.fetched_at
        del document
        if total is None or read == 0 or reader.index >= total:
            break
        if pages == 1:
            bound = min(max_pages, math.ceil(total / served) + 1)
        query = {"offset": reader.index, "limit": served}
    problems = reader.problems
    return JobListing(workflow_id, reader.jobs, problems.lines, fetched_at, problems.count)


class _JobReader:
    """Turns listJobs items into summaries as they are decoded (``loads_streaming``)."""

    def __init__(self, workflow_id: str, redact: Callable[[str], str]) -> None:
        self.workflow_id = workflow_id
        self.redact = redact
        self.streamed = False
        self.jobs: list[JobSummary] = []
        self.problems = _Problems(self.redact)
        self.index = 0
        self.seen: dict[str, int] = {}
        self.pool: dict[str, str] = {}  # one object per distinct status, progress...: most repeat
        self.mark()

    def mark(self) -> None:
        """Where this page starts: a retried attempt, or a page decoded whole after all, goes
        back here (``_reset``), keeping what earlier pages gave."""
        self.marked = self.index
        self._kept = (len(self.jobs), len(self.problems.lines), self.problems.count)

    def _reset(self) -> None:
        jobs, lines, count = self._kept
        del self.jobs[jobs:]
        del self.problems.lines[lines:]
        self.problems.count = count
        if self.index > self.marked:
            self.seen = {k: i for k, i in self.seen.items() if i < self.marked}
        self.index = self.marked

    def parse(self, text: str) -> Decoded:
        self._reset()
        decoded, self.streamed = loads_streaming(text, "jobs", self.take)
        if not self.streamed:
            self._reset()  # it may have seen some items before the text proved unusual
        return decoded

    def take(self, item: Any) -> None:
        index = self.index
        self.index += 1
        job_id = _item_id(item, index, "job id", self.seen, self.problems)
        if job_id is None:
            return
        named = item.get("workflow_id")
        if named is not None and named != self.workflow_id:
            self.problems.add(
                f"item {index}: names workflow {{}}, not {{}}", named, self.workflow_id
            )
            return
        self.seen[job_id] = index
        self.jobs.append(_summary(job_id, item, self.pool))


def _summary(job_id: str, item: dict[str, Any], pool: dict[str, str]) -> JobSummary:
    get = item.get

    def text(name: str) -> str | None:
        value = _text(get(name), _JOB_FIELDS[name].length)
        return None if value is None else pool.setdefault(value, value)

    present = {name: item[name] for name in SUMMARY_FIELDS if name in item}
    return JobSummary(
        job_id=job_id,
        status=text("status"),
        progress=text("progress"),
        cost=parse_int(get("cost")).value,
        updated_at=parse_timestamp(get("updated_at")).value,
        finished_at=parse_timestamp(get("finished_at")).value,
        time_taken=text("time_taken"),
        created_at=parse_timestamp(get("created_at")).value,
        created_by=text("created_by"),
        digest=summary_digest(present),
    )


def summary_digest(values: Mapping[str, Any]) -> str:
    """sha256 hex of a summary's compared fields as they were received (absent ones left out)."""
    return hashlib.sha256(canonical(dict(values)).encode("ascii")).hexdigest()


# ---------------------------------------------------------------------------------------------
# listWorkflows


def list_workflows(
    client: Getter,
    *,
    project_id: str | None = None,
    workflow_id: str | None = None,
    limit: int = PAGE_LIMIT,
    max_pages: int = MAX_PAGES,
) -> Iterator[WorkflowPage]:
    """``GET /v0/workflows``, page by page; ``workflow_id`` filters by ``id=``.

    The ids are checked before the first request, whatever the caller does with the iterator.
    """
    filters = {
        "project_id": None if project_id is None else checked("project_id", project_id),
        "id": None if workflow_id is None else checked("workflow_id", workflow_id),
    }
    if limit < 1 or max_pages < 1:
        raise ValueError("limit and max_pages must be at least 1")
    return _pages(client, filters, project_id, workflow_id, limit, max_pages)


def _pages(
    client: Getter,
    filters: dict[str, str | None],
    project_id: str | None,
    workflow_id: str | None,
    limit: int,
    max_pages: int,
) -> Iterator[WorkflowPage]:
    offset, pages, bound = 0, 0, max_pages
    earlier: set[str] = set()  # ids listed on earlier pages
    while True:
        if pages >= bound:
            raise _runaway(client, pages, offset, bound < max_pages)
        where = f"(listWorkflows at offset {offset})"
        document = client.get_json(
            "/v0/workflows",
            where=where,
            query={"offset": offset, "limit": limit, **filters},
            check=_member_check("workflows"),
            too_big="the workflow listing",
            hint=_too_big_hint(),
        )
        items = document.value.pop("workflows") or []
        total, served = _pagination(document.value.get("pagination"), limit)
        pages += 1
        if pages == 1 and total is not None:
            bound = min(max_pages, math.ceil(total / served) + 1)
        page = WorkflowPage([], [], total, offset, limit, document.fetched_at)
        del document
        problems = _Problems(client.redact)
        seen: dict[str, int] = {}  # on this page
        again = 0  # items listed on an earlier page
        for index, item in enumerate(items):
            if isinstance(item, dict) and item.get("id") in earlier:
                # offset paging shifts when a workflow is created meanwhile: not a bad answer
                again += 1
                continue
            info = _workflow(item, offset + index, seen, problems, project_id, workflow_id)
            if info is not None:
                page.workflows.append(info)
        earlier.update(seen)
        page.problems, page.unusable = problems.lines, problems.count
        yield page
        if not items or workflow_id is not None:
            # an id matches one workflow at most: a server that ignores the filter is not
            # followed through every page of the organisation's workflows
            return
        if again == len(items):  # the server ignores offset: it would never end
            raise InvalidResponseError(
                client.redact(
                    f"200 OK — invalid response: listWorkflows answered offset {offset} with "
                    "only workflows it had already listed, so it does not page; stopped"
                ),
                status=200,
            )
        offset += len(items)
        if (total is not None and offset >= total) or (total is None and len(items) < served):
            return


def _workflow(
    item: Any,
    index: int,
    seen: dict[str, int],
    problems: _Problems,
    project_id: str | None,
    workflow_id: str | None,
) -> WorkflowInfo | None:
    got = _item_id(item, index, "workflow id", seen, problems)
    if got is None:
        return None
    if workflow_id is not None and got != workflow_id:
        problems.add(f"item {index}: is workflow {{}}, not {{}} asked for", got, workflow_id)
        return None
    project = item.get("project_id")
    if project_id is not None and project is not None and project != project_id:
        problems.add(f"item {index}: names project {{}}, not {{}}", project, project_id)
        return None
    seen[got] = index
    get = item.get
    return WorkflowInfo(
        workflow_id=got,
        project_id=_text(project, _SHORT),
        legacy_project_id=_text(get("legacy_project_id"), _SHORT),
        name=_text(get("name"), None),
        description=_text(get("description"), None),
        created_by=_text(get("created_by"), _SHORT),
        created_at=parse_timestamp(get("created_at")).value,
        updated_at=parse_timestamp(get("updated_at")).value,
    )


def _pagination(raw: Any, asked: int) -> tuple[int | None, int]:
    """(total, page size): the total when it is a non-negative integer; the server's limit when it
    is a positive integer no larger than the one asked for (a server may serve smaller pages)."""
    if not isinstance(raw, dict):
        return None, asked
    total, served = _count(raw.get("total")), _count(raw.get("limit"))
    return total, served if served is not None and 0 < served <= asked else asked


def _count(value: Any) -> int | None:
    """A count the server gave: a non-negative JSON integer, else None."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**53:
        return value
    return None


def _runaway(client: Getter, pages: int, offset: int, by_total: bool) -> InvalidResponseError:
    why = (
        "more pages than its total allows"
        if by_total
        else "full pages with no usable total, past the page cap"
    )
    text = (
        f"200 OK — invalid response: listWorkflows kept answering {why} "
        f"({pages} pages, {offset} workflows); stopped"
    )
    return InvalidResponseError(client.redact(text), status=200)


# ---------------------------------------------------------------------------------------------
# estimate


def workflow_estimate(client: Getter, workflow_id: str) -> int | None:
    """``GET /v0/workflows/{workflow_id}/estimate``: credits, None without an integer estimate."""
    path = f"/v0/workflows/{segment('workflow_id', workflow_id)}/estimate"
    document = client.get_json(path, where=f"(estimate of workflow {show(workflow_id)})")
    return parse_int(document.value.get("estimated_cost")).value


# ---------------------------------------------------------------------------------------------
# shared


class _Problems:
    """Problem lines of one listing, with server text redacted before it is shortened."""

    __slots__ = ("count", "lines", "redact")

    def __init__(self, redact: Callable[[str], str]) -> None:
        self.redact = redact
        self.lines: list[str] = []
        self.count = 0

    def add(self, template: str, *values: Any) -> None:
        self.count += 1
        if len(self.lines) < MAX_PROBLEMS:
            shown = [shown_id(self.redact(v) if isinstance(v, str) else v) for v in values]
            self.lines.append(self.redact(template.format(*shown)))
        elif len(self.lines) == MAX_PROBLEMS:
            self.lines.append("more unusable items, not listed one by one")


def _item_id(
    item: Any, index: int, what: str, seen: Mapping[str, int], problems: _Problems
) -> str | None:
    """The item's id if the item may be used, else None with its problem recorded."""
    if not isinstance(item, dict):
        problems.add(f"item {index}: not an object")
        return None
    got = item.get("id")
    if not isinstance(got, str):
        problems.add(f"item {index}: no string id")
        return None
    problem = id_problem(got)
    if problem:
        problems.add(f"item {index}: {what} {{}} {problem}", got)
        return None
    if got in seen:
        problems.add(f"item {index}: repeats {what} {{}} (item {seen[got]} kept)", got)
        return None
    return got


def _member_check(name: str) -> Callable[[dict[str, Any]], str | None]:
    def check(data: dict[str, Any]) -> str | None:
        if name not in data:
            return f'no "{name}" member (expected {{"{name}": [...]}})'
        value = data[name]
        if value is not None and not isinstance(value, list):
            return f'"{name}" is {_json_type(value)}, not a list'
        return None

    return check


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, dict):
        return "an object"
    return "a string" if isinstance(value, str) else type(value).__name__


def _text(raw: Any, limit: int | None) -> str | None:
    return clean_text(raw, limit).value


def _too_big_hint() -> str:
    declared_setting = next(f for f in fields(Settings) if f.name == "max_body_bytes")
    setting = declared_setting.metadata["declared"]
    return f"; raise max_body_bytes ({setting.env} or {setting.flag}) to accept it"


__all__ = [
    "MAX_PAGES",
    "PAGE_LIMIT",
    "SUMMARY_FIELDS",
    "Getter",
    "JobListing",
    "JobSummary",
    "WorkflowInfo",
    "WorkflowPage",
    "list_jobs",
    "list_workflows",
    "summary_digest",
    "workflow_estimate",
]
