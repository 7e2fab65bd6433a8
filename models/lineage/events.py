"""Decode OpenLineage run events, the JSON that Airflow, Spark, dbt and Flink emit.

One message is one event, as the OpenLineage Kafka transport writes it. Only run events
are consumed: a run's state change (``START``, ``RUNNING``, ``COMPLETE``, ``FAIL``,
``ABORT``, ``OTHER``) for one job, with its parent run, its datasets and its error. The
RunEvent JSON is the same in specs 1.x and 2.x. The job and dataset events of 2.x carry
no run and are refused, as is anything that is not a run event: :class:`BadMessage` with a
one-line reason, as for every other topic's decoder.

Required parts are checked strictly; facets, being optional metadata that any producer may
add to, are read leniently: a facet of an unexpected shape reads as absent, and unknown
fields and facets are ignored.

>>> event = decode_run_event(b'{"eventType": "FAIL", "eventTime": "2025-11-27T09:00:00+01:00",'
...     b' "run": {"runId": "r1", "facets": {"errorMessage": {"message": "disk full"}}},'
...     b' "job": {"namespace": "airflow", "name": "etl.load"}, "producer": "p"}')
>>> event.event_type, event.event_time_ms, event.job_name, event.error_message
('FAIL', 1764230400000, 'etl.load', 'disk full')
>>> decode_run_event(b'{"eventTime": "2025-11-27T08:00:00Z", "job": {"namespace": "n",'
...     b' "name": "j"}}')
Traceback (most recent call last):
...
driftline.models.events.wire.BadMessage: a job event (no 'run'): only run events are consumed
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal, get_args

import orjson

from driftline.models.events.wire import MAX_EVENT_TIME_MS, MIN_EVENT_TIME_MS, BadMessage

EventType = Literal["START", "RUNNING", "COMPLETE", "FAIL", "ABORT", "OTHER"]
_EVENT_TYPES: dict[str, EventType] = {name: name for name in get_args(EventType)}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


@dataclasses.dataclass(frozen=True, slots=True)
class RunEvent:
    """One run's state change, as a job's producer reported it."""

    event_type: EventType
    #: UTC epoch milliseconds of ``eventTime`` (sub-millisecond digits dropped).
    event_time_ms: int
    job_namespace: str
    job_name: str
    run_id: str
    #: The run (and its job) that spawned this one, e.g. the DAG run of a task's run.
    parent_run_id: str | None
    parent_job_namespace: str | None
    parent_job_name: str | None
    #: (namespace, name) of each dataset read and written, in the event's order.
    inputs: tuple[tuple[str, str], ...]
    outputs: tuple[tuple[str, str], ...]
    error_message: str | None
    #: URI of the code that emitted the event ("" when the event names none).
    producer: str


def decode_run_event(value: bytes | str) -> RunEvent:
    """Decode one OpenLineage run event, or raise :class:`BadMessage` saying why not."""
    try:
        doc = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise BadMessage(f"not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise BadMessage(f"expected a JSON object, got {type(doc).__name__}")
    run = doc.get("run")
    if run is None:
        # Spec 2.x also defines events about a job or a dataset alone: no run and no
        # eventType (a document with an eventType is a run event that lost its run).
        kind = "job" if "job" in doc else "dataset" if "dataset" in doc else None
        if kind is not None and "eventType" not in doc:
            raise BadMessage(f"a {kind} event (no 'run'): only run events are consumed")
        raise BadMessage("not a run event: 'run' is missing")
    if not isinstance(run, dict):
        raise BadMessage("'run' must be an object")
    job = doc.get("job")
    if not isinstance(job, dict):
        raise BadMessage("'job' must be an object with a namespace and a name")
    facets = _object(run.get("facets"))
    parent = _object(facets.get("parent"))
    return RunEvent(
        event_type=_event_type(doc.get("eventType")),
        event_time_ms=_event_time_ms(doc.get("eventTime")),
        job_namespace=_required_str(job, "namespace", "job"),
        job_name=_required_str(job, "name", "job"),
        run_id=_required_str(run, "runId", "run"),
        parent_run_id=_optional_str(_object(parent.get("run")).get("runId")),
        parent_job_namespace=_optional_str(_object(parent.get("job")).get("namespace")),
        parent_job_name=_optional_str(_object(parent.get("job")).get("name")),
        inputs=_datasets(doc, "inputs"),
        outputs=_datasets(doc, "outputs"),
        error_message=_optional_str(_object(facets.get("errorMessage")).get("message")),
        producer=_producer(doc.get("producer")),
    )


def _event_type(value: Any) -> EventType:
    # Spec 2.x makes eventType optional; an event without one reports no transition,
    # which is what OTHER means.
    if value is None:
        return "OTHER"
    event_type = _EVENT_TYPES.get(value) if isinstance(value, str) else None
    if event_type is None:
        raise BadMessage(f"unknown eventType {value!r:.80}: expected one of "
                         + ", ".join(_EVENT_TYPES))
    return event_type


def _event_time_ms(value: Any) -> int:
    if not isinstance(value, str):
        raise BadMessage("'eventTime' must be an ISO 8601 date-time string")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise BadMessage(f"eventTime {value!r:.80} is not an ISO 8601 date-time") from None
    if _is_date_only(value):
        raise BadMessage(f"eventTime {value!r:.80} has no time of day")
    if moment.tzinfo is None:
        # Some producers (Airflow's FAIL events among them) omit the offset; they mean UTC.
        moment = moment.replace(tzinfo=UTC)
    ms = (moment - _EPOCH) // _MS  # exact integer arithmetic, no float rounding
    if not MIN_EVENT_TIME_MS <= ms < MAX_EVENT_TIME_MS:
        raise BadMessage(f"eventTime {value!r:.80} is outside 2000-01-01 to 2200-01-01")
    return ms


def _is_date_only(value: str) -> bool:
    # fromisoformat reads a bare date as midnight; a run event's time must be a time.
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return True


def _datasets(doc: dict[str, Any], field: str) -> tuple[tuple[str, str], ...]:
    items = doc.get(field)
    if items is None:
        return ()
    if not isinstance(items, list):
        raise BadMessage(f"'{field}' must be a list of datasets")
    return tuple(_dataset(item, field[:-1]) for item in items)  # "input" / "output"


def _dataset(item: Any, where: str) -> tuple[str, str]:
    if not isinstance(item, dict):
        raise BadMessage(f"each {where} dataset must be an object with a namespace and a name")
    return _required_str(item, "namespace", where), _required_str(item, "name", where)


def _required_str(obj: dict[str, Any], field: str, where: str) -> str:
    value = obj.get(field)
    if not isinstance(value, str) or not value:
        raise BadMessage(f"{where} lacks a non-empty string '{field}'")
    return value


def _optional_str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _producer(value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise BadMessage("'producer' must be a string")
    return value
