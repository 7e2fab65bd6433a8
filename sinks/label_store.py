"""The label join's storage in ClickHouse: predictions waiting for labels, labels waiting
for predictions, and labelled predictions, looked up per batch by request id.

What waits grows with traffic × time-to-live, so it lives in ClickHouse, not in the
worker's checkpoint. Every table replaces rows by key, so writing a batch twice (a replay
after a crash) changes nothing; the worker serialises the batches of one partition, so a
lookup always sees the writes of the batches before it.

Two orders, kept apart: a label's ``revision`` (its place in the log, which the join
compares to tell a correction from a replay) is stored as ``label_revision``; the tables'
version ``revision`` is the write version (:mod:`driftline.sinks.write_version`). The join
writes only the label that wins, so the latest write of a key is its latest label.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from clickhouse_connect.driver.asyncclient import AsyncClient

from driftline.models.events.wire import EventBlock
from driftline.models.quality.label_join import Key, Label, LabeledPrediction, Prediction
from driftline.sinks.write_version import write_versions

_LOOKUP_CHUNK = 1_000
_PREDICTION_COLUMNS = ["model", "model_version", "request_id", "event_time", "prediction",
                       "score", "probabilities"]
_LABEL_COLUMNS = ["model", "request_id", "event_time", "label", "label_revision", "settled",
                  "revision"]
_PAIR_COLUMNS = ["model", "model_version", "window_start", "request_id", "prediction_time",
                 "label_time", "delay_seconds", "prediction", "label", "score",
                 "probabilities", "label_revision", "expired", "revision"]


class LabelStore:
    def __init__(self, client: AsyncClient, database: str) -> None:
        self.client = client
        self.database = database

    async def put_predictions(self, predictions: Sequence[Prediction]) -> None:
        await self._insert("predictions", _PREDICTION_COLUMNS, [
            (p.model, p.version, p.request_id, p.event_time, _text(p.prediction), p.score,
             dict(p.probabilities or {})) for p in predictions])

    async def put_prediction_blocks(self, blocks: Sequence[EventBlock]) -> None:
        """Store prediction messages column by column, straight from their envelopes."""
        columns: list[list[Any]] = [[] for _ in _PREDICTION_COLUMNS]
        model, version, request_id, event_time, prediction, score, probabilities = columns
        for block in blocks:
            n = len(block)
            model += [block.model] * n
            version += [block.version] * n
            request_id += block.request_id
            event_time += block.event_time
            prediction += ([None] * n if block.prediction is None
                           else [None if v is None else str(v) for v in block.prediction])
            score += block.score or [None] * n
            probabilities += _probability_maps(block.probabilities, n)
        if request_id:
            await self.client.insert("predictions", columns, column_names=_PREDICTION_COLUMNS,
                                     column_oriented=True, database=self.database)

    async def put_waiting(self, labels: Sequence[Label], settled: Iterable[Label] = ()) -> None:
        """Store waiting labels; mark ``settled`` ones (their prediction came) as gone."""
        rows = [(lb.model, lb.request_id, lb.event_time, _text(lb.label), lb.revision, 0)
                for lb in labels]
        # Written again, marked settled, after the waiting row: FINAL then leaves it out.
        rows += [(lb.model, lb.request_id, lb.event_time, _text(lb.label), lb.revision, 1)
                 for lb in settled]
        await self._insert("waiting_labels", _LABEL_COLUMNS, versioned(rows))

    async def put_pairs(self, pairs: Sequence[LabeledPrediction]) -> None:
        await self._insert("labeled_predictions", _PAIR_COLUMNS, versioned([
            (r.prediction.model, r.prediction.version, r.window_start, r.request_id,
             r.prediction.event_time, r.label.event_time, r.delay_seconds,
             _text(r.prediction.prediction), _text(r.label.label), r.prediction.score,
             dict(r.prediction.probabilities or {}), r.label.revision, int(r.expired))
            for r in pairs]))

    async def predictions(self, keys: Iterable[Key]) -> dict[Key, Prediction]:
        rows = await self._lookup("predictions", _PREDICTION_COLUMNS, keys)
        return {(m, rid): Prediction(m, v, rid, t, pred, score, probs or None)
                for m, v, rid, t, pred, score, probs in rows}

    async def waiting(self, keys: Iterable[Key]) -> dict[Key, Label]:
        rows = await self._lookup("waiting_labels", _LABEL_COLUMNS[:5], keys)
        return {(m, rid): Label(m, rid, t, label, rev) for m, rid, t, label, rev in rows}

    async def pairs(self, keys: Iterable[Key], window_ms: int) -> dict[Key, LabeledPrediction]:
        columns = ["model", "model_version", "request_id", "prediction_time", "prediction",
                   "score", "probabilities", "label_time", "label", "label_revision", "expired"]
        rows = await self._lookup("labeled_predictions", columns, keys)
        out = {}
        for m, v, rid, pt, pred, score, probs, lt, label, rev, expired in rows:
            prediction = Prediction(m, v, rid, pt, pred, score, probs or None)
            out[(m, rid)] = LabeledPrediction(prediction, Label(m, rid, lt, label, rev),
                                              pt - pt % window_ms, bool(expired))
        return out

    async def _lookup(self, table: str, columns: list[str],
                      keys: Iterable[Key]) -> list[tuple[Any, ...]]:
        return await lookup(self.client, f"{self.database}.{table}", columns, keys)

    async def _insert(self, table: str, names: list[str], rows: list[tuple[Any, ...]]) -> None:
        if rows:
            await self.client.insert(table, rows, column_names=names, database=self.database)


async def lookup(client: AsyncClient, table: str, columns: list[str],
                 keys: Iterable[Key]) -> list[tuple[Any, ...]]:
    """Rows of ``table`` (FINAL) for (model, request id) ``keys``; times as epoch ms."""
    by_model: dict[str, list[str]] = {}
    for model, request_id in keys:
        by_model.setdefault(model, []).append(request_id)
    rows: list[tuple[Any, ...]] = []
    shown = ", ".join(f"toUnixTimestamp64Milli({c})" if c.endswith("time") else c
                      for c in columns)
    for model, request_ids in by_model.items():
        # Query parameters travel as an HTTP form field, whose size the server limits
        # (128 KiB by default): look up a large batch's ids in chunks.
        for at in range(0, len(request_ids), _LOOKUP_CHUNK):
            result = await client.query(
                f"SELECT {shown} FROM {table} FINAL "
                "WHERE model = {model:String} AND request_id IN {ids:Array(String)}",
                parameters={"model": model, "ids": request_ids[at:at + _LOOKUP_CHUNK]})
            rows += [tuple(row) for row in result.result_rows]
    return rows


def versioned(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Each row with its write version last; a later row of a key wins, also in one insert."""
    return [(*row, version) for row, version in zip(rows, write_versions(len(rows)),
                                                    strict=True)]


def _probability_maps(columns: dict[str, list[float | None]] | None,
                      n: int) -> list[dict[str, float]]:
    if not columns:
        return [{}] * n
    classes = list(columns)
    return [{c: v for c, v in zip(classes, row, strict=True) if v is not None}
            for row in zip(*columns.values(), strict=True)]


def _text(value: Any) -> str | None:
    return None if value is None else str(value)
