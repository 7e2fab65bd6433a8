"""MLflow registry documents as registry records: a version and its run, aliases and stages
as deployments, versions the records refuse, and the same records on every import.

The documents are responses an MLflow 3.17 tracking server gave (``model-versions/search``,
``registered-models/search``, ``model-versions/get`` and ``runs/get``), pasted as they came
but for the artifact path."""

from __future__ import annotations

import copy
import string
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from driftline.models.events.wire import MAX_EVENT_TIME_MS, MIN_EVENT_TIME_MS
from driftline.models.registry.mlflow import (
    aliases_by_version,
    deployments,
    model_version,
    training_data,
    version_records,
)
from driftline.models.registry.records import (
    Deployment,
    ModelVersion,
    RecordError,
    decode_record,
)

# GET /api/2.0/mlflow/model-versions/search?filter=name='fraud-detector'
VERSIONS_SEARCH = orjson.loads("""
{"model_versions": [
  {"name": "fraud-detector", "version": "1", "creation_timestamp": 1796606583597,
   "last_updated_timestamp": 1796606587566, "current_stage": "Production",
   "description": "first", "source": "runs:/7f171d2c39ae49f5af7264a35070271e/model",
   "run_id": "7f171d2c39ae49f5af7264a35070271e", "status": "READY",
   "tags": [{"key": "driftline.reference_id", "value": "p-1"}], "run_link": ""},
  {"name": "fraud-detector", "version": "2", "creation_timestamp": 1796606583619,
   "last_updated_timestamp": 1796606583619, "current_stage": "None", "description": "",
   "source": "s3://models/fraud/2", "run_id": "", "status": "READY", "run_link": ""}]}
""")

# GET /api/2.0/mlflow/registered-models/search?max_results=1
MODELS_SEARCH = orjson.loads("""
{"registered_models": [
  {"name": "fraud-detector", "creation_timestamp": 1796606583577,
   "last_updated_timestamp": 1796606587566, "description": "flags fraud",
   "latest_versions": [
     {"name": "fraud-detector", "version": "2", "creation_timestamp": 1796606583619,
      "last_updated_timestamp": 1796606583619, "current_stage": "None", "description": "",
      "source": "s3://models/fraud/2", "run_id": "", "status": "READY", "run_link": ""},
     {"name": "fraud-detector", "version": "1", "creation_timestamp": 1796606583597,
      "last_updated_timestamp": 1796606587566, "current_stage": "Production",
      "description": "first", "source": "runs:/7f171d2c39ae49f5af7264a35070271e/model",
      "run_id": "7f171d2c39ae49f5af7264a35070271e", "status": "READY",
      "tags": [{"key": "driftline.reference_id", "value": "p-1"}], "run_link": ""}],
   "aliases": [{"alias": "challenger", "version": "2"}, {"alias": "champion", "version": "1"}]}],
 "next_page_token": "eyJvZmZzZXQiOiAxfQ=="}
""")

# GET /api/2.0/mlflow/model-versions/get?name=fraud-detector&version=1
VERSION_GET = orjson.loads("""
{"model_version": {
  "name": "fraud-detector", "version": "1", "creation_timestamp": 1796606583597,
  "last_updated_timestamp": 1796606587566, "current_stage": "Production",
  "description": "first", "source": "runs:/7f171d2c39ae49f5af7264a35070271e/model",
  "run_id": "7f171d2c39ae49f5af7264a35070271e", "status": "READY",
  "tags": [{"key": "driftline.reference_id", "value": "p-1"}], "run_link": "",
  "aliases": ["champion"]}}
""")

# GET /api/2.0/mlflow/runs/get?run_id=7f171d2c39ae49f5af7264a35070271e
RUN_GET = orjson.loads("""
{"run": {
  "info": {"run_uuid": "7f171d2c39ae49f5af7264a35070271e", "experiment_id": "2",
           "run_name": "delicate-frog-327", "user_id": "unknown", "status": "FINISHED",
           "start_time": 1796606583437, "end_time": 1796606583519,
           "artifact_uri": "/srv/mlflow/artifacts/2/7f171d2c39ae49f5af7264a35070271e/artifacts",
           "lifecycle_stage": "active", "run_id": "7f171d2c39ae49f5af7264a35070271e"},
  "data": {
    "metrics": [{"key": "auc", "value": 0.94, "timestamp": 1796606583480, "step": 1},
                {"key": "loss", "value": 0.2, "timestamp": 1796606583492, "step": 0}],
    "params": [{"key": "max_depth", "value": "8"}, {"key": "lr", "value": "0.1"}],
    "tags": [{"key": "mlflow.source.git.commit", "value": "3f2a9c1e"},
             {"key": "mlflow.runName", "value": "delicate-frog-327"}]},
  "inputs": {"dataset_inputs": [
    {"tags": [{"key": "mlflow.data.context", "value": "training"}],
     "dataset": {"name": "features_2026_11", "digest": "a1b2c3d4", "source_type": "s3",
                 "source": "{\\"uri\\": \\"s3://features/2026-11\\"}"}}]},
  "outputs": {}}}
""")

# GET /api/2.0/mlflow/runs/get of a deleted run that logged NaN and inf (MLflow keeps inf
# as the largest double) and nothing else.
DELETED_RUN_GET = orjson.loads("""
{"run": {
  "info": {"run_uuid": "7a4b6126964a4d58a3966c7252b1c3ca", "experiment_id": "2",
           "run_name": "fun-finch-681", "user_id": "unknown", "status": "RUNNING",
           "start_time": 1796606620691,
           "artifact_uri": "/srv/mlflow/artifacts/2/7a4b6126964a4d58a3966c7252b1c3ca/artifacts",
           "lifecycle_stage": "deleted", "run_id": "7a4b6126964a4d58a3966c7252b1c3ca"},
  "data": {
    "metrics": [{"key": "loss", "value": "NaN", "timestamp": 1796606620741, "step": 0},
                {"key": "big", "value": 1.7976931348623157e+308, "timestamp": 1796606620756,
                 "step": 0},
                {"key": "n", "value": 3.0, "timestamp": 1796606620772, "step": 0}],
    "tags": [{"key": "mlflow.runName", "value": "fun-finch-681"}]},
  "inputs": {}, "outputs": {}}}
""")

V1, V2 = VERSIONS_SEARCH["model_versions"]
RUN = RUN_GET["run"]
MODEL = MODELS_SEARCH["registered_models"][0]


def test_a_version_and_its_run_become_a_model_version() -> None:
    assert model_version(V1, RUN) == ModelVersion(
        "fraud-detector", "1", created_at_ms=1796606583597,
        training_run_id="7f171d2c39ae49f5af7264a35070271e", code_revision="3f2a9c1e",
        training_data="features_2026_11@a1b2c3d4 (s3://features/2026-11)",
        reference_profile_id="p-1", parameters={"lr": "0.1", "max_depth": "8"},
        training_metrics={"auc": 0.94, "loss": 0.2}, description="first")


def test_a_version_without_a_run_or_with_a_deleted_one_keeps_what_there_is() -> None:
    assert model_version(V2) == ModelVersion("fraud-detector", "2",
                                             created_at_ms=1796606583619)
    # The run id is kept though the run is gone; only finite metrics are numbers here.
    gone = model_version(V1, None)
    assert (gone.training_run_id, gone.code_revision, gone.parameters,
            gone.training_data) == ("7f171d2c39ae49f5af7264a35070271e", "", {}, "")
    deleted = model_version(V1, DELETED_RUN_GET["run"])
    assert deleted.training_metrics == {"n": 3.0} and deleted.training_data == ""


def test_aliases_and_stages_become_deployments_at_the_versions_last_update() -> None:
    aliases = aliases_by_version(MODEL)
    assert aliases == {"1": ["champion"], "2": ["challenger"]}
    # An alias and a stage on one version share a key: one record lists both.
    assert deployments(V1, aliases["1"]) == [Deployment(
        "fraud-detector", "1", "deployed", 1796606587566,
        environment="champion, production", note="MLflow alias champion, stage Production")]
    # model-versions/get lists the version's aliases itself.
    assert deployments(VERSION_GET["model_version"]) == deployments(V1, ["champion"])
    assert deployments(V2, aliases["2"]) == [Deployment(
        "fraud-detector", "2", "deployed", 1796606583619, environment="challenger",
        note="MLflow alias challenger")]
    assert deployments(V2) == []  # stage "None", no alias
    staging = deployments({**V2, "current_stage": "Staging"})
    assert [(d.event, d.environment) for d in staging] == [("deployed", "staging")]
    archived = deployments({**V1, "current_stage": "Archived"}, ["champion"])
    assert [(d.event, d.environment, d.note) for d in archived] == [
        ("deployed", "champion", "MLflow alias champion"),
        ("retired", "", "MLflow stage Archived")]
    assert [type(r) for r in version_records(V1, RUN, ["champion"])] == [ModelVersion,
                                                                         Deployment]


def test_training_data_is_the_training_dataset_named_with_its_digest_and_location() -> None:
    def run(*inputs: dict[str, Any]) -> dict[str, Any]:
        return {**RUN, "inputs": {"dataset_inputs": list(inputs)}}

    def dataset(context: str, **fields: str) -> dict[str, Any]:
        return {"tags": [{"key": "mlflow.data.context", "value": context}],
                "dataset": {"source_type": "local", **fields}}

    evaluation = dataset("eval", name="holdout", digest="e1", source='{"uri": "/d/holdout"}')
    train = dataset("training", name="train", digest="t1", source='{"path": "/d/train"}')
    assert training_data(run(evaluation, train)) == "train@t1 (/d/train)"
    assert training_data(run(evaluation)) == "holdout@e1 (/d/holdout)"
    assert training_data(run(dataset("training", name="t"))) == "t"
    assert training_data(run(dataset("training", source='{"table_name": "db.t"}'))) == "db.t"
    assert training_data(run(dataset("training", digest="d", source="not json"))) \
        == "d (not json)"
    assert training_data(run()) == "" and training_data(DELETED_RUN_GET["run"]) == ""


@pytest.mark.parametrize(("change", "message"), [
    ({"name": "m" * 257}, "model must be a non-empty string of at most 256 characters"),
    ({"version": ""}, "version must be a non-empty string"),
    ({"name": None}, "the MLflow document has no 'name'"),
    ({"creation_timestamp": 1796606583}, "created_at_ms must be UTC epoch milliseconds"),
    ({"creation_timestamp": "soon"}, "'creation_timestamp' must be epoch milliseconds"),
    ({"description": ["x"]}, "'description' is not text"),
])
def test_what_the_records_refuse_raises_their_own_error_in_one_line(
        change: dict[str, Any], message: str) -> None:
    with pytest.raises(RecordError, match=message) as refused:
        version_records({**V1, **change}, RUN, ["champion"])
    assert "\n" not in str(refused.value)


def test_int64_fields_sent_as_digits_are_read_as_numbers() -> None:
    as_text = {**V1, "creation_timestamp": "1796606583597",
               "last_updated_timestamp": "1796606587566"}
    assert version_records(as_text, RUN, ["champion"]) == version_records(V1, RUN, ["champion"])


def encoded(records: list[ModelVersion | Deployment]) -> list[tuple[bytes, bytes]]:
    return [(r.key, r.to_json()) for r in records]


def import_once(versions: dict[str, Any], model: dict[str, Any],
                run: dict[str, Any]) -> list[tuple[bytes, bytes]]:
    aliases = aliases_by_version(model)
    return [pair for v in versions["model_versions"]
            for pair in encoded(version_records(v, run if v["run_id"] else None,
                                                aliases.get(v["version"], [])))]


def test_importing_twice_publishes_byte_identical_records() -> None:
    first = import_once(VERSIONS_SEARCH, MODEL, RUN)
    # The second import parses fresh responses, which may list params, metrics, tags and
    # aliases in another order.
    again = orjson.loads(orjson.dumps(RUN_GET))["run"]
    for listed in (again["data"]["params"], again["data"]["metrics"], again["data"]["tags"]):
        listed.reverse()
    model = copy.deepcopy(MODEL)
    model["aliases"].reverse()
    second = import_once(orjson.loads(orjson.dumps(VERSIONS_SEARCH)), model, again)
    assert second == first
    assert [key for key, _ in first] == [
        b"version:fraud-detector/1", b"deployment:fraud-detector/1/1796606587566/deployed",
        b"version:fraud-detector/2", b"deployment:fraud-detector/2/1796606583619/deployed"]
    assert len({key for key, _ in first}) == len(first)
    assert all(decode_record(value).key == key for key, value in first)


names = st.text(string.ascii_letters + string.digits + "-_.", min_size=1, max_size=30)
pairs = st.lists(st.fixed_dictionaries({"key": names, "value": st.text(max_size=20)}),
                 max_size=6)
times = st.one_of(st.integers(MIN_EVENT_TIME_MS, MAX_EVENT_TIME_MS), st.integers(0, 2**53))
metric_values = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(),
                          st.just("NaN"), st.just("Infinity"), st.booleans(), st.none())


@given(name=names, version=st.integers(1, 10**6).map(str),
       created=times, updated=times,
       stage=st.sampled_from(["None", "Staging", "Production", "Archived", None]),
       aliases=st.lists(names, max_size=4), params=pairs, tags=pairs,
       metrics=st.lists(st.fixed_dictionaries({"key": names, "value": metric_values}),
                        max_size=6),
       data=st.data())
def test_any_version_document_maps_to_records_that_round_trip_or_a_record_error(
        name: str, version: str, created: int, updated: int, stage: str | None,
        aliases: list[str], params: list[dict[str, str]], tags: list[dict[str, str]],
        metrics: list[dict[str, Any]], data: st.DataObject) -> None:
    doc = {**V1, "name": name, "version": version, "creation_timestamp": created,
           "last_updated_timestamp": updated, "current_stage": stage, "tags": tags}
    run = {**RUN, "data": {"params": params, "metrics": metrics, "tags": tags}}
    try:
        records = version_records(doc, run, aliases)
    except RecordError as refused:
        assert "\n" not in str(refused)
        in_range = [MIN_EVENT_TIME_MS <= t <= MAX_EVENT_TIME_MS for t in (created, updated)]
        assert not all(in_range), refused  # only times out of range are refused here
        return
    v = records[0]
    assert isinstance(v, ModelVersion) and (v.model, v.version) == (name, version)
    assert all(isinstance(x, float) for x in v.training_metrics.values())
    assert len({r.key for r in records}) == len(records)
    for record in records:
        assert decode_record(record.to_json()) == record
    # The same document in any order of its lists gives the same bytes.
    shuffled = {**run, "data": {k: data.draw(st.permutations(listed)) for k, listed
                                in run["data"].items()}}
    if len({p["key"] for p in params}) == len(params) \
            and len({m["key"] for m in metrics}) == len(metrics) \
            and len({t["key"] for t in tags}) == len(tags):
        assert encoded(version_records(doc, shuffled, data.draw(st.permutations(aliases)))) \
            == encoded(records)
