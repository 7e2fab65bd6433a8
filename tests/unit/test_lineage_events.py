"""OpenLineage run events built and serialised by the openlineage-python client, decoded.

Every event here is what a real producer sends: the client's own classes, turned into JSON
by its own serialiser (the one its Kafka transport uses), so a change in the client's
output shows up here rather than in production.
"""

from __future__ import annotations

import dataclasses
import re
import sys
import types
import uuid
import warnings
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from openlineage.client import event_v2
from openlineage.client.facet_v2 import error_message_run, parent_run
from openlineage.client.generated.base import RunFacet
from openlineage.client.serde import Serde
from openlineage.client.transport.kafka import KafkaConfig, KafkaTransport

from driftline.models.events.wire import BadMessage
from driftline.models.lineage.events import RunEvent, decode_run_event

PRODUCER = "https://github.com/apache/airflow/tree/providers-openlineage/2.3.0"
RUN_ID = "0195f3a4-1c2b-7d3e-8f40-5a6b7c8d9e0f"
PARENT_RUN_ID = "0195f3a4-0000-7000-8000-000000000001"
ROOT_RUN_ID = "0195f3a4-0000-7000-8000-000000000002"
#: 2025-11-27T08:00:00Z
T0_MS = 1_764_230_400_000


def _event(event_type: event_v2.RunState | None, event_time: str = "2025-11-27T08:00:00Z",
           *, facets: dict[str, Any] | None = None, run_id: str = RUN_ID,
           inputs: list[event_v2.InputDataset] | None = None,
           outputs: list[event_v2.OutputDataset] | None = None) -> event_v2.RunEvent:
    return event_v2.RunEvent(
        eventType=event_type,
        eventTime=event_time,
        run=event_v2.Run(runId=run_id, facets=facets or {}),
        job=event_v2.Job(namespace="airflow", name="daily_sales.load"),
        inputs=inputs or [],
        outputs=outputs or [],
        producer=PRODUCER,
    )


def _decoded(event: Any) -> RunEvent:
    return decode_run_event(Serde.to_json(event).encode())


def _expected(**changes: Any) -> RunEvent:
    base = RunEvent(event_type="START", event_time_ms=T0_MS, job_namespace="airflow",
                    job_name="daily_sales.load", run_id=RUN_ID, parent_run_id=None,
                    parent_job_namespace=None, parent_job_name=None, inputs=(), outputs=(),
                    error_message=None, producer=PRODUCER)
    return dataclasses.replace(base, **changes)


def test_a_run_from_start_to_complete_with_its_datasets() -> None:
    inputs = [event_v2.InputDataset(namespace="postgres://db:5432", name="shop.public.orders"),
              event_v2.InputDataset(namespace="s3://raw", name="sales/2025-11-27")]
    outputs = [event_v2.OutputDataset(namespace="bigquery", name="analytics.sales.daily")]
    start = _decoded(_event(event_v2.RunState.START, inputs=inputs, outputs=outputs))
    complete = _decoded(_event(event_v2.RunState.COMPLETE, "2025-11-27T08:05:30.250Z",
                               inputs=inputs, outputs=outputs))

    datasets = {"inputs": (("postgres://db:5432", "shop.public.orders"),
                           ("s3://raw", "sales/2025-11-27")),
                "outputs": (("bigquery", "analytics.sales.daily"),)}
    assert start == _expected(**datasets)
    assert complete == _expected(event_type="COMPLETE", event_time_ms=T0_MS + 330_250,
                                 **datasets)


def test_a_failed_run_carries_its_error_message() -> None:
    error = error_message_run.ErrorMessageRunFacet(
        message="psycopg2.errors.UndefinedTable: relation \"orders\" does not exist",
        programmingLanguage="python", stackTrace="Traceback (most recent call last):\n  ...")
    event = _decoded(_event(event_v2.RunState.FAIL, facets={"errorMessage": error}))
    assert event == _expected(
        event_type="FAIL",
        error_message="psycopg2.errors.UndefinedTable: relation \"orders\" does not exist")


@pytest.mark.parametrize("state", list(event_v2.RunState))
def test_every_run_state(state: event_v2.RunState) -> None:
    assert _decoded(_event(state)).event_type == state.value


def test_the_parent_run_not_the_root() -> None:
    # A task's run: its parent is the DAG run; the root (here another DAG) is not the parent.
    parent = parent_run.ParentRunFacet(
        run=parent_run.Run(runId=PARENT_RUN_ID),
        job=parent_run.Job(namespace="airflow", name="daily_sales"),
        root=parent_run.Root(run=parent_run.RootRun(runId=ROOT_RUN_ID),
                             job=parent_run.RootJob(namespace="airflow", name="nightly")))
    event = _decoded(_event(event_v2.RunState.RUNNING, facets={"parent": parent}))
    assert event == _expected(event_type="RUNNING", parent_run_id=PARENT_RUN_ID,
                              parent_job_namespace="airflow", parent_job_name="daily_sales")


@pytest.mark.parametrize(("event_time", "ms"), [
    ("2025-11-27T13:30:00+05:30", T0_MS),
    ("2025-11-27T00:00:00.001-08:00", T0_MS + 1),
    ("2025-11-27T09:00:00+01:00", T0_MS),
    # Java producers (Spark, Flink) write nanoseconds; below a millisecond is dropped.
    ("2025-11-27T08:00:00.123456789Z", T0_MS + 123),
    # Airflow has sent FAIL events without an offset: read as UTC.
    ("2025-11-27T08:00:00.999999", T0_MS + 999),
    ("2025-11-27T08:00:00+00:00", T0_MS),
])
def test_event_time_offsets(event_time: str, ms: int) -> None:
    assert _decoded(_event(event_v2.RunState.START, event_time)).event_time_ms == ms


def test_an_event_without_an_event_type_reports_other() -> None:
    # The 2.x spec makes eventType optional; the client then leaves it out of the JSON.
    event = _event(None)
    assert "eventType" not in orjson.loads(Serde.to_json(event))
    assert _decoded(event).event_type == "OTHER"


def test_the_1x_client_classes_decode_the_same() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the 1.x modules say they are old
        from openlineage.client import facet as facet_v1
        from openlineage.client import run as run_v1
    event = run_v1.RunEvent(
        eventType=run_v1.RunState.FAIL,
        eventTime="2025-11-27T08:00:00.000Z",
        run=run_v1.Run(runId=RUN_ID, facets={
            "parent": facet_v1.ParentRunFacet.create(PARENT_RUN_ID, "airflow", "daily_sales"),
            "errorMessage": facet_v1.ErrorMessageRunFacet(message="boom",
                                                          programmingLanguage="python")}),
        job=run_v1.Job(namespace="airflow", name="daily_sales.load"),
        producer=PRODUCER,
        inputs=[run_v1.InputDataset(namespace="s3://raw", name="sales")],
        outputs=[run_v1.OutputDataset(namespace="bigquery", name="analytics.sales")],
    )
    assert "/spec/1-" in event.schemaURL
    assert _decoded(event) == _expected(
        event_type="FAIL", parent_run_id=PARENT_RUN_ID, parent_job_namespace="airflow",
        parent_job_name="daily_sales", inputs=(("s3://raw", "sales"),),
        outputs=(("bigquery", "analytics.sales"),), error_message="boom")


def test_unknown_fields_and_facets_are_ignored() -> None:
    custom = error_message_run.ErrorMessageRunFacet(
        message="late", programmingLanguage="sql").with_additional_properties(retries=3)
    spark = RunFacet().with_additional_properties(appName="sales", executors=8)
    event = _event(event_v2.RunState.COMPLETE, facets={"errorMessage": custom, "spark": spark})
    doc = orjson.loads(Serde.to_json(event))
    doc["futureField"] = {"anything": [1, 2]}
    doc["job"]["facets"] = {"jobType": {"processingType": "BATCH", "integration": "AIRFLOW"}}
    assert decode_run_event(orjson.dumps(doc)) == _expected(event_type="COMPLETE",
                                                           error_message="late")


@pytest.mark.parametrize("facets", [
    {"parent": "daily_sales"},
    {"parent": {"run": None, "job": ["airflow"]}},
    {"parent": {"run": {"runId": 7}, "job": {"namespace": "", "name": None}}},
    {"errorMessage": {"message": ["boom"]}},
    "not an object",
])
def test_a_facet_of_the_wrong_shape_reads_as_absent(facets: Any) -> None:
    doc = orjson.loads(Serde.to_json(_event(event_v2.RunState.FAIL)))
    doc["run"]["facets"] = facets
    assert decode_run_event(orjson.dumps(doc)) == _expected(event_type="FAIL")


def test_str_input_is_accepted() -> None:
    assert decode_run_event(Serde.to_json(_event(event_v2.RunState.START))) == _expected()


def test_job_and_dataset_events_are_not_run_events() -> None:
    job_event = event_v2.JobEvent(eventTime="2025-11-27T08:00:00Z", producer=PRODUCER,
                                  job=event_v2.Job(namespace="airflow", name="daily_sales"))
    dataset_event = event_v2.DatasetEvent(
        eventTime="2025-11-27T08:00:00Z", producer=PRODUCER,
        dataset=event_v2.StaticDataset(namespace="bigquery", name="analytics.sales"))
    with pytest.raises(BadMessage, match=r"a job event .*only run events"):
        _decoded(job_event)
    with pytest.raises(BadMessage, match=r"a dataset event .*only run events"):
        _decoded(dataset_event)


def _valid() -> dict[str, Any]:
    doc: dict[str, Any] = orjson.loads(Serde.to_json(_event(
        event_v2.RunState.START,
        inputs=[event_v2.InputDataset(namespace="s3://raw", name="sales")])))
    return doc


def _without(*path: str | int) -> dict[str, Any]:
    doc = _valid()
    *parents, last = path
    target: Any = doc
    for key in parents:
        target = target[key]
    del target[last]
    return doc


def _with(value: Any, *path: str | int) -> dict[str, Any]:
    doc = _valid()
    *parents, last = path
    target: Any = doc
    for key in parents:
        target = target[key]
    target[last] = value
    return doc


@pytest.mark.parametrize(("value", "reason"), [
    (b"", "not valid JSON"),
    (b"{\"eventType\": \"START\"", "not valid JSON"),
    (b"\xff\xfe", "not valid JSON"),
    (b"[1, 2]", "expected a JSON object, got list"),
    (b"\"START\"", "expected a JSON object, got str"),
    (b"{}", "'run' is missing"),
    (_without("run"), "'run' is missing"),
    (_with("r1", "run"), "'run' must be an object"),
    (_without("run", "runId"), "run lacks a non-empty string 'runId'"),
    (_with(42, "run", "runId"), "run lacks a non-empty string 'runId'"),
    (_without("job"), "'job' must be an object"),
    (_without("job", "namespace"), "job lacks a non-empty string 'namespace'"),
    (_with("", "job", "name"), "job lacks a non-empty string 'name'"),
    (_without("eventTime"), "'eventTime' must be"),
    (_with(1764230400000, "eventTime"), "'eventTime' must be"),
    (_with("yesterday", "eventTime"), "not an ISO 8601"),
    (_with("2025-11-27T25:00:00Z", "eventTime"), "not an ISO 8601"),
    (_with("2025-11-27", "eventTime"), "has no time of day"),
    (_with("1970-01-01T00:00:00Z", "eventTime"), "outside 2000-01-01 to 2200-01-01"),
    (_with("9999-12-31T23:59:59-23:59", "eventTime"), "outside"),
    (_with("DONE", "eventType"), "unknown eventType 'DONE'"),
    (_with("start", "eventType"), "unknown eventType 'start'"),
    (_with(["START"], "eventType"), "unknown eventType"),
    (_with({"name": "x"}, "inputs"), "'inputs' must be a list"),
    (_with("s3://raw/sales", "inputs", 0), "each input dataset must be an object"),
    (_without("inputs", 0, "name"), "input lacks a non-empty string 'name'"),
    (_with([{"name": "t"}], "outputs"), "output lacks a non-empty string 'namespace'"),
    (_with(7, "producer"), "'producer' must be a string"),
])
def test_what_is_not_a_run_event(value: bytes | dict[str, Any], reason: str) -> None:
    data = value if isinstance(value, bytes) else orjson.dumps(value)
    with pytest.raises(BadMessage, match=re.escape(reason)) as caught:
        decode_run_event(data)
    assert "\n" not in str(caught.value)


def test_optional_parts_may_be_absent() -> None:
    doc = _valid()
    for field in ("inputs", "outputs", "producer", "eventType", "schemaURL"):
        doc.pop(field)
    assert decode_run_event(orjson.dumps(doc)) == _expected(event_type="OTHER", producer="")
    doc.update(inputs=None, outputs=None, producer=None, eventType=None)
    assert decode_run_event(orjson.dumps(doc)) == _expected(event_type="OTHER", producer="")


class _RecordingProducer:
    """Stands in for ``confluent_kafka.Producer``: keeps what the transport produces."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.sent: list[dict[str, Any]] = []

    def produce(self, **message: Any) -> None:
        self.sent.append(message)

    def flush(self, timeout: float = -1) -> int:
        return 0


def test_what_the_kafka_transport_produces_decodes(monkeypatch: pytest.MonkeyPatch) -> None:
    # The transport imports confluent_kafka when it is built; a stand-in keeps the bytes.
    monkeypatch.setitem(sys.modules, "confluent_kafka",
                        types.SimpleNamespace(Producer=_RecordingProducer))
    transport = KafkaTransport(KafkaConfig.from_dict(
        {"config": {"bootstrap.servers": "kafka:9092"}, "topic": "openlineage.events"}))
    parent = parent_run.ParentRunFacet(run=parent_run.Run(runId=PARENT_RUN_ID),
                                       job=parent_run.Job(namespace="airflow",
                                                          name="daily_sales"))
    transport.emit(_event(event_v2.RunState.START))
    transport.emit(_event(event_v2.RunState.START, facets={"parent": parent}))

    assert isinstance(transport.producer, _RecordingProducer)
    plain, child = transport.producer.sent
    # Keyed by job (the parent's, when there is one), so a job's runs stay in order.
    assert (plain["topic"], plain["key"]) == ("openlineage.events", "run:airflow/daily_sales.load")
    assert child["key"] == "run:airflow/daily_sales"
    assert decode_run_event(plain["value"]) == _expected()
    assert decode_run_event(child["value"]) == _expected(
        parent_run_id=PARENT_RUN_ID, parent_job_namespace="airflow",
        parent_job_name="daily_sales")


# --- properties ---------------------------------------------------------------------------

FUZZ = settings(max_examples=300, deadline=None)

#: Text JSON can carry both ways (the client's serialiser escapes lone surrogates, which no
#: JSON parser that checks UTF-8 reads back).
names = st.text(st.characters(codec="utf-8"), min_size=1, max_size=30)
offsets = st.integers(-(23 * 60 + 59), 23 * 60 + 59).map(
    lambda minutes: timezone(timedelta(minutes=minutes)))
# A day inside the accepted range on each side, whatever the offset.
moments = st.builds(lambda naive, tz: naive.replace(tzinfo=tz),
                    st.datetimes(datetime(2000, 1, 2), datetime(2199, 12, 30)), offsets)
datasets = st.lists(st.tuples(names, names), max_size=3)


@FUZZ
@given(st.sampled_from(list(event_v2.RunState)), moments, names, names, st.uuids(),
       st.none() | st.tuples(st.uuids(), names, names), datasets, datasets,
       st.none() | names)
def test_any_client_built_event_decodes_to_what_it_says(
        state: event_v2.RunState, moment: datetime, namespace: str, name: str, run_id: uuid.UUID,
        parent: tuple[uuid.UUID, str, str] | None, inputs: list[tuple[str, str]],
        outputs: list[tuple[str, str]], error: str | None) -> None:
    facets: dict[str, RunFacet] = {}
    if parent is not None:
        facets["parent"] = parent_run.ParentRunFacet(
            run=parent_run.Run(runId=str(parent[0])),
            job=parent_run.Job(namespace=parent[1], name=parent[2]))
    if error is not None:
        facets["errorMessage"] = error_message_run.ErrorMessageRunFacet(
            message=error, programmingLanguage="python")
    event = event_v2.RunEvent(
        eventType=state, eventTime=moment.isoformat(),
        run=event_v2.Run(runId=str(run_id), facets=facets),
        job=event_v2.Job(namespace=namespace, name=name),
        inputs=[event_v2.InputDataset(namespace=n, name=d) for n, d in inputs],
        outputs=[event_v2.OutputDataset(namespace=n, name=d) for n, d in outputs],
        producer=PRODUCER)
    assert _decoded(event) == RunEvent(
        event_type=state.value,
        event_time_ms=(moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1),
        job_namespace=namespace, job_name=name, run_id=str(run_id),
        parent_run_id=None if parent is None else str(parent[0]),
        parent_job_namespace=None if parent is None else parent[1],
        parent_job_name=None if parent is None else parent[2],
        inputs=tuple(inputs), outputs=tuple(outputs), error_message=error, producer=PRODUCER)


json_values = st.recursive(
    # Integers within what JSON parsers carry (64 bits); floats without NaN, which JSON lacks.
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats(allow_nan=False)
    | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=3),
    max_leaves=12)


def _maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """The strategy's value, or any JSON value in its place."""
    return strategy | json_values


def _object(**fields: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """An object with any subset of the fields (each possibly junk), or junk."""
    return _maybe(st.fixed_dictionaries({}, optional=fields))


times = st.sampled_from(["2025-11-27T08:00:00Z", "2025-11-27T08:00:00.123456789+05:30",
                         "2025-11-27T08:00:00", "2025-11-27", "2025-11-27T08:00:00+24:00",
                         "0001-01-01T00:00:00+23:59", "9999-12-31T23:59:59.999999-23:59",
                         "1999-12-31T23:59:59Z", "2025-W48-4T08:00"]) | st.text(max_size=30)
dataset_docs = st.lists(_object(namespace=names, name=names), max_size=3)
event_docs = _object(
    eventType=_maybe(st.sampled_from(["START", "RUNNING", "COMPLETE", "FAIL", "ABORT",
                                      "OTHER", "start", ""])),
    eventTime=_maybe(times),
    run=_object(runId=_maybe(names), facets=_object(
        parent=_object(run=_object(runId=_maybe(names)),
                       job=_object(namespace=_maybe(names), name=_maybe(names))),
        errorMessage=_object(message=_maybe(names)))),
    job=_object(namespace=_maybe(names), name=_maybe(names)),
    dataset=_object(namespace=names, name=names),
    inputs=_maybe(dataset_docs), outputs=_maybe(dataset_docs), producer=_maybe(names))


def _decodes_or_refuses(value: bytes | str) -> None:
    try:
        event = decode_run_event(value)
    except BadMessage as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    assert event.event_type in ("START", "RUNNING", "COMPLETE", "FAIL", "ABORT", "OTHER")
    assert 946_684_800_000 <= event.event_time_ms < 7_258_118_400_000
    assert all(isinstance(part, str) and part for part in
               (event.job_namespace, event.job_name, event.run_id))
    assert all(isinstance(part, str) and part
               for dataset in event.inputs + event.outputs for part in dataset)


@FUZZ
@given(event_docs)
def test_a_json_document_decodes_or_raises_bad_message(doc: Any) -> None:
    _decodes_or_refuses(orjson.dumps(doc))


@FUZZ
@given(st.binary() | st.text() | event_docs.map(orjson.dumps).flatmap(
    lambda data: st.integers(0, len(data)).map(lambda cut: data[:cut])))
def test_any_bytes_or_text_decode_or_raise_bad_message(value: bytes | str) -> None:
    _decodes_or_refuses(value)
