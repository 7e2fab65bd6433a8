"""Turn batches of prediction messages into closed windows, drift scores and alerts,
checkpointed per partition.

One call of :meth:`FeatureWindowProcessor.process` handles the messages Faust buffered
(``stream.take_events``), partition by partition, in this order:

1. keep each offset once (:mod:`~driftline.streams.worker.batches`), and skip those at or
   below the checkpoint's applied offset (a replay after a crash);
2. decode each message; bad ones become dead letters;
3. apply the rest to the partition's
   :class:`~driftline.models.windows.feature_windows.PartitionWindows`;
4. close the windows event time has passed, and judge them
   (:class:`~driftline.models.drift.monitor.Monitor`): drift scores against the version's reference,
   alert rules, incidents;
5. store the predictions for the label join; judge the quality of windows whose labels
   are due (:class:`~driftline.models.quality.monitor.PerformanceMonitor`);
6. write rows (ClickHouse), dead letters and alerts (their topics) and wait for them;
7. checkpoint the state to the ``window_states`` changelog and wait for it.

Faust acks the messages only after this returns, so a committed offset always lies inside
a durable checkpoint, and a replay of anything after it is skipped or re-applied exactly.
Steps 1–7 of a partition are one step for :class:`~driftline.streams.worker.retry.Patience`:
when ClickHouse or Kafka fails, the cached state is dropped and the step runs again from
the last checkpoint until it goes through.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Collection, Mapping, Sequence, Set

import faust
from faust.types import EventT, TableT

from driftline.models import state_codec
from driftline.models.alerting.rules import RulesConfig
from driftline.models.data_quality.monitor import Registered
from driftline.models.data_quality.silence import SilenceWatch
from driftline.models.drift.monitor import MonitorConfig, MonitorResult
from driftline.models.events.wire import BadMessage, EventBlock, decode
from driftline.models.outcomes.monitor import OutcomeConfig
from driftline.models.partition import PartitionModels, PartitionState
from driftline.models.quality.monitor import PerformanceConfig
from driftline.models.windows.feature_profiles import ReferenceLookup
from driftline.models.windows.feature_windows import WindowConfig
from driftline.sinks.clickhouse import DeadLetter, SinkBatch
from driftline.sinks.performance_store import WindowKey
from driftline.streams.settings import Settings
from driftline.streams.worker import batches
from driftline.streams.worker.batches import applied_through
from driftline.streams.worker.checkpoint import Checkpointer, WriteRows
from driftline.streams.worker.commits import DurableOffsets
from driftline.streams.worker.idle import Backlog, IdleWatch
from driftline.streams.worker.label_join import LabelJoiner
from driftline.streams.worker.outcomes import OutcomeJoiner, OutcomeTracker, judge_due
from driftline.streams.worker.performance import PerformanceTracker
from driftline.streams.worker.retry import PartitionSteps, Patience

log = logging.getLogger(__name__)

#: Messages of a batch are decoded and applied in parts of at most this many bytes (per
#: partition; the partitions of a batch are processed side by side, so 16 MB in all).
DECODE_CHUNK_BYTES = 4 * 1024 * 1024


def window_config(settings: Settings) -> WindowConfig:
    return WindowConfig(
        window_ms=settings.window_ms,
        allowed_lateness_ms=settings.allowed_lateness_ms,
        histogram_bins=settings.histogram_bins,
        fine_histogram_bins=settings.fine_histogram_bins,
        edge_sample_size=settings.edge_sample_size,
        fixed_edges=settings.bin_edges,
        top_k_categories=settings.top_k_categories,
        max_tracked_categories=settings.max_tracked_categories,
        relative_accuracy=settings.quantile_relative_accuracy,
    )


def monitor_config(settings: Settings) -> MonitorConfig:
    return MonitorConfig(window_ms=settings.window_ms,
                         baseline_windows=settings.baseline_windows,
                         baseline_mode=settings.baseline_mode,
                         detectors=settings.detector_names,
                         detector_streams=settings.detector_stream_names,
                         top_k_categories=settings.top_k_categories)


def performance_config(settings: Settings) -> PerformanceConfig:
    def judge_after_ms(model: str) -> int:
        return int(settings.for_model(model, "judge_after_seconds")) * 1000

    return PerformanceConfig(enabled=settings.label_join, window_ms=settings.window_ms,
                             baseline_windows=settings.baseline_windows,
                             judge_after_ms=judge_after_ms)


def outcome_config(settings: Settings) -> OutcomeConfig:
    def judge_after_ms(model: str) -> int:
        return int(settings.for_model(model, "outcome_judge_after_seconds")) * 1000

    def champion(model: str) -> str | None:
        return settings.for_model(model, "champion")  # type: ignore[no-any-return]

    return OutcomeConfig(window_ms=settings.window_ms, baseline_windows=settings.baseline_windows,
                         judge_after_ms=judge_after_ms, confidence=settings.outcome_confidence,
                         champion=champion)


def load_rules(settings: Settings) -> RulesConfig:
    return (RulesConfig.default() if settings.rules_file is None
            else RulesConfig.from_file(settings.rules_file))


class ProcessorStats:
    """Running totals since the worker started, for logs and progress."""

    def __init__(self) -> None:
        self.messages = 0
        self.events = 0
        self.dead_letters = 0
        self.late_events = 0
        self.windows_written = 0
        self.scores_written = 0
        self.alerts = 0
        self.replayed_messages = 0
        self.repeated_offsets = 0
        self.skipped_offsets = 0
        self.rereads = 0

    def as_dict(self) -> dict[str, int]:
        return dict(vars(self))


class FeatureWindowProcessor:
    def __init__(self, settings: Settings, table: TableT[bytes, bytes],
                 dead_letter_topic: faust.TopicT, alerts_topic: faust.TopicT,
                 write_rows: WriteRows, references: ReferenceLookup,
                 rules: RulesConfig) -> None:
        self.settings = settings
        self.config = window_config(settings)
        self.monitor_config = monitor_config(settings)
        self.rules = rules
        self.references = references
        self.table = table
        self.checkpointer = Checkpointer(table, dead_letter_topic, alerts_topic, write_rows,
                                         settings.max_message_bytes)
        self.stats = ProcessorStats()
        #: Stores predictions for the label join; set once the worker's services start.
        self.joiner: LabelJoiner | None = None
        #: Computes performance rows of windows labels changed or that are due to be judged.
        self.performance: PerformanceTracker | None = None
        #: The outcome join and the ``outcomes`` rows; set with the two above.
        self.outcomes: OutcomeJoiner | None = None
        self.outcome_tracker: OutcomeTracker | None = None
        self.outcome_config = outcome_config(settings)
        #: Whether a version is registered (the worker's registry, once it is read).
        self.registry: Registered | None = None
        self.performance_config = performance_config(settings)
        self._states: dict[int, PartitionModels] = {}
        self.idle = IdleWatch(settings.idle_close_seconds, "partition-")
        #: Knows the consumer's high watermarks once the agent sets ``backlog.highwater``.
        self.backlog = Backlog()
        #: What the consumer commits (one per worker, shared with the telemetry processor).
        self.offsets = DurableOffsets()
        waiting = patience(settings)
        self.steps = PartitionSteps(waiting, self._states, "predictions")
        self.label_steps = PartitionSteps(waiting, self._states, "labels")
        self.gaps = batches.Gaps()
        self._rereads: dict[tuple[str, int], int] = {}  # (topic, partition) -> offset
        self._labels_moved: dict[str, float] = {}  # model -> monotonic time its labels advanced
        self._started = time.monotonic()

    async def process(self, events: Sequence[EventT[bytes]]) -> None:
        runs, repeats = batches.by_partition(events)
        self.stats.repeated_offsets += repeats
        # Partitions share nothing but the event loop: while one waits for ClickHouse and
        # the changelog, the next one computes.
        async with asyncio.TaskGroup() as group:
            for partition, run in runs.items():
                group.create_task(self._process_run(partition, run))

    async def _process_run(self, partition: int, run: list[EventT[bytes]]) -> None:
        step = functools.partial(self._process_partition, partition, run)
        if self.joiner is None:
            await self.steps.run(partition, step)
        else:
            async with self.joiner.locks[partition]:  # labels of this partition wait
                await self.steps.run(partition, step)
        await self._reread(self.settings.predictions_topic, partition)

    async def _reread(self, topic: str, partition: int) -> None:
        """Seek back to a hole found in the partition's last run
        (:class:`~driftline.streams.worker.batches.Gaps`)."""
        offset = self._rereads.pop((topic, partition), None)
        if offset is None:
            return
        self.stats.rereads += 1
        await self.offsets.reread(topic, partition, offset)

    async def process_labels(self, partition: int, events: list[EventT[bytes]]) -> None:
        """Join a partition's label messages (one offset each, offset order), rewrite the
        performance rows they change, judge what that makes due. Call under its lock."""
        joiner, performance = self.joiner, self.performance
        if joiner is None or performance is None:
            raise RuntimeError("FeatureWindowProcessor.joiner is not set: start the worker "
                               "services before processing labels")
        topic = self.settings.labels_topic
        durable = self.offsets.next_offset(topic, partition)
        if durable is not None:  # known once sought to the committed offset
            events, reread_from = self.gaps.split(topic, partition,
                                                  batches.after(events, durable - 1),
                                                  durable - 1, self.offsets.can_reread)
            if reread_from is not None:
                self._rereads[(topic, partition)] = reread_from
        if not events:
            await self._reread(topic, partition)
            return
        last = events[-1].message.offset

        async def step() -> None:
            read = await joiner.on_labels(events)
            outcomes, names = (await self.outcomes.on_reports(read.outcomes)
                               if self.outcomes is not None else (set(), {}))
            # Before the offsets are acked: a crash replays the labels, which touch the
            # same windows again.
            await performance.refresh(read.labelled)
            if self.outcome_tracker is not None:
                await self.outcome_tracker.refresh(outcomes)
            await self.labels_read(partition, read.clock, read.dead_letters, names)
            self.offsets.applied(topic, partition, last)

        await self.label_steps.run(partition, step)
        await self._reread(topic, partition)

    async def _process_partition(self, partition: int, events: list[EventT[bytes]]) -> None:
        models = self._state(partition)
        fresh = batches.after(events, models.applied_offset)
        self.stats.replayed_messages += len(events) - len(fresh)
        fresh, reread_from = self.gaps.split(self.settings.predictions_topic, partition, fresh,
                                             models.applied_offset, self.offsets.can_reread)
        if reread_from is not None:
            # After this step (what precedes the hole is made durable first).
            self._rereads[(self.settings.predictions_topic, partition)] = reread_from
        if not fresh:
            return
        self.stats.skipped_offsets += batches.skipped(fresh, models.applied_offset)
        batch = SinkBatch(revision=fresh[-1].message.offset, partition=partition)
        health, touched, labelled = MonitorResult(), set[str](), set[WindowKey]()
        reported = set[WindowKey]()  # windows whose outcomes changed
        events_applied, seen = 0, dict[str, None]()
        # Decoded in parts of bounded size: a batch of large envelopes decoded at once held
        # ~5x its bytes in Python lists (1.3 GB for 100 envelopes of 400 features).
        for part in batches.chunks(fresh, DECODE_CHUNK_BYTES):
            blocks = self._decode(models, part, batch)
            late, rows, part_health, part_touched = models.apply(blocks)
            batch.late += late
            batch.windows += rows
            health.extend(part_health)
            touched |= part_touched
            if self.joiner is not None and self.settings.label_join:
                predictions = [block for _, block in blocks]
                labelled |= await self.joiner.on_predictions(predictions, clock=models.event_time)
                if self.outcomes is not None:  # after the predictions are stored
                    reported |= await self.outcomes.on_predictions(predictions,
                                                                   clock=models.event_time)
            for _, block in blocks:
                if block.kind == "prediction":
                    events_applied += len(block)
                    seen[block.model] = None
        models.applied_offset = max(models.applied_offset, fresh[-1].message.offset)
        batch.scores, batch.alerts, batch.references = (health.scores, health.alerts,
                                                        health.baselines)
        batch.service, batch.data_quality = health.service, health.data_quality
        if self.joiner is not None and self.settings.label_join:
            touched |= await self._judge(models, labelled, batch, reported)
        await self._make_durable(partition, models, touched, batch)
        self._count(events_applied, batch, len(fresh))
        now = time.monotonic()
        for model in seen:
            self.idle.seen(partition, model, now)

    def _stalled_labels(self, models: PartitionModels) -> set[str]:
        """Models whose labels have not moved on for ``judge_after_seconds`` of wall time
        (or none came since this worker started): judged without waiting for them."""
        now = time.monotonic()
        return {model for model in models.event_time
                if now - self._labels_moved.get(model, self._started)
                > self.settings.for_model(model, "judge_after_seconds")}

    async def labels_read(self, partition: int, clock: Mapping[str, int],
                          dead_letters: Sequence[DeadLetter] = (),
                          outcome_names: Mapping[str, Collection[str]] | None = None) -> None:
        """The labels agent read labels (and outcomes: ``outcome_names`` per model) up to
        ``clock`` (event time per model): judge the windows that makes due, and write the
        label messages it could not read. Call under the partition's lock."""
        models = self._state(partition)
        now = time.monotonic()
        # A model may be labelled before its first prediction reaches this partition.
        moved = {model for model, t in clock.items()
                 if t > models.state(model).performance.label_clock.get(model, t - 1)
                 } if self.settings.label_join else set()
        named = {model for model, names in (outcome_names or {}).items()
                 if set(names) - set(models.state(model).outcomes.names.get(model, ()))}
        if not moved and not dead_letters and not named:
            return  # nothing can have become due
        for model in named:
            models.states[model].outcomes.reported(model, (outcome_names or {})[model])
        batch = SinkBatch(revision=models.applied_offset, partition=partition,
                          dead_letters=list(dead_letters))
        if moved:
            self._labels_moved.update(dict.fromkeys(moved, now))
            for model in moved:
                state = models.states[model]
                state.performance.advance_label_clock({model: clock[model]})
                state.outcomes.advance_clock({model: clock[model]})
            moved |= await self._judge(models, set(), batch)
        moved |= named
        # Checkpointed even without alerts: the label clock must survive a restart.
        await self._make_durable(partition, models, moved, batch)
        self.stats.alerts += len(batch.alerts)
        self.stats.dead_letters += len(batch.dead_letters)

    async def _judge(self, models: PartitionModels, touched: set[WindowKey],
                     batch: SinkBatch, reported: Collection[WindowKey] = ()) -> set[str]:
        """Rows of windows whose labels (or outcomes: ``reported``) changed or that close;
        quality and outcome verdicts of windows now due. Returns the models whose state
        this changed."""
        stalled = self._stalled_labels(models)
        changed = await self._judge_quality(models, touched, batch, stalled)
        if self.outcome_tracker is not None:
            closing: dict[WindowKey, int] = {}
            for row in batch.windows:
                key = (row.model, row.version, row.window_start)
                closing[key] = max(closing.get(key, 0), row.count)
            changed |= await judge_due(self.outcome_tracker, models, stalled, closing, reported,
                                       batch)
        return changed

    async def _judge_quality(self, models: PartitionModels, touched: set[WindowKey],
                             batch: SinkBatch, stalled: set[str]) -> set[str]:
        due = [window for state in models.states.values()
               for window in state.performance.due(state.windows.event_time, stalled)]
        # Windows closing now get a row with their prediction count (coverage) at once.
        predicted: dict[WindowKey, int] = {}
        for row in batch.windows:
            key = (row.model, row.version, row.window_start)
            predicted[key] = max(predicted.get(key, 0), row.count)
        predicted.update({(d.model, d.version, d.window_start): d.n_predicted for d in due})
        if self.performance is None or not (predicted or touched):
            return set()
        batch.performance, summaries = await self.performance.compute(
            touched | predicted.keys(), predicted)
        for window in due:
            batch.alerts += models.states[window.model].performance.judge(
                window, summaries[(window.model, window.version, window.window_start)])
        return {window.model for window in due}

    def _decode(self, models: PartitionModels, events: list[EventT[bytes]],
                batch: SinkBatch) -> list[tuple[int, EventBlock]]:
        blocks: list[tuple[int, EventBlock]] = []
        received_ms = int(time.time() * 1000)
        for event in events:
            message = event.message
            try:
                block = decode(message.key, message.value, self.settings.max_message_bytes)
                models.settle_kinds(block)
                if message.timestamp and message.timestamp > 0:  # Faust: seconds, float
                    block.broker_time_ms = round(message.timestamp * 1000)
                    block.received_ms = received_ms
            except BadMessage as exc:
                batch.dead_letters.append(DeadLetter(message.topic, message.partition,
                                                     message.offset, str(exc), message.key,
                                                     message.value))
                continue
            blocks.append((message.offset, block))
        return blocks

    async def _make_durable(self, partition: int, models: PartitionModels, changed: set[str],
                            batch: SinkBatch) -> None:
        """Write the batch, the records of the models it changed, and last the partition's
        own record (how far it got)."""
        records = [(model_key(partition, model), models.states[model].to_bytes())
                   for model in sorted(changed)]
        records.append((partition_key(partition),
                        state_codec.encode({"applied_offset": models.applied_offset})))
        await self.checkpointer.commit(partition, records, batch)
        self.offsets.applied(self.settings.predictions_topic, partition, models.applied_offset)

    def _count(self, events: int, batch: SinkBatch, messages: int) -> None:
        self.stats.messages += messages
        self.stats.events += events
        self.stats.dead_letters += len(batch.dead_letters)
        self.stats.late_events += sum(r.count for r in batch.late)
        self.stats.windows_written += len(batch.windows)
        self.stats.scores_written += len(batch.scores)
        self.stats.alerts += len(batch.alerts)
        if batch.dead_letters:
            log.warning("%d message(s) sent to %s, first: %s", len(batch.dead_letters),
                        self.settings.dead_letter_topic, batch.dead_letters[0].reason)

    def _state(self, partition: int) -> PartitionModels:
        models = self._states.get(partition)
        if models is None:
            models = self._load(partition)
            log.info("predictions partition %d: state of %d model(s) loaded from its "
                     "checkpoint (%s)", partition, len(models.states),
                     applied_through(models.applied_offset))
            self.offsets.applied(self.settings.predictions_topic, partition,
                                 models.applied_offset)
            self.idle.loaded(partition, list(models.event_time))
            self._states[partition] = models
        return models

    def _registered(self, model: str, version: str) -> bool | None:
        return None if self.registry is None else self.registry(model, version)

    def _new_state(self) -> PartitionState:
        return PartitionState.new(self.config, self.monitor_config, self.rules,
                                  self.references, self.performance_config, self.outcome_config,
                                  self._registered)

    def _load(self, partition: int) -> PartitionModels:
        models = PartitionModels(self._new_state, SilenceWatch(self.rules, self.config.window_ms))
        data = self.table.data
        stored = data.get(partition_key(partition))
        prefix = model_key(partition, "")
        try:
            if stored is not None:
                models.applied_offset = int(state_codec.decode(stored)["applied_offset"])
            for key in [k for k in data if k.startswith(prefix)]:
                models.states[key[len(prefix):].decode()] = PartitionState.from_bytes(
                    data[key], self.config, self.monitor_config, self.rules, self.references,
                    self.performance_config, self.outcome_config, self._registered)
        except state_codec.StateFormatError as exc:
            raise state_codec.StateFormatError(
                f"predictions partition {partition}: its checkpoint cannot be read ({exc}); "
                "a checkpoint of an earlier driftline is not carried over: reset the "
                "worker's consumer group and state to start this partition afresh") from exc
        return models

    def forget(self, partitions: set[int]) -> None:
        """Drop cached state of revoked partitions; their next owner reads the checkpoint."""
        for partition in partitions:
            self._states.pop(partition, None)
        self.steps.revoked(partitions)
        self.label_steps.revoked(partitions)
        self.idle.forget(partitions)
        self.backlog.forget(partitions)
        for topic in (self.settings.predictions_topic, self.settings.labels_topic):
            self.offsets.forget(topic, partitions)
            self.gaps.forget(topic, partitions)
            for partition in partitions:
                self._rereads.pop((topic, partition), None)

    def idle_watermarks(self, now: float | None = None) -> list[tuple[int, str, int]]:
        """(partition, model, event time) to send for quiet models that have open windows."""
        now = time.monotonic() if now is None else now
        self.idle.adopt_restored(self.table.data, self._states, self._state)

        def closing_time(partition: int, source: str) -> int | None:
            models = self._states.get(partition)
            return None if models is None else models.idle_watermark(source)

        def caught_up(partitions: Set[int]) -> Set[int]:
            return self.backlog.caught_up(partitions, lambda p: self._state(p).applied_offset)

        return self.idle.due(now, closing_time, caught_up)


def patience(settings: Settings) -> Patience:
    """How a processor waits out its sink: the secrets it must never log are redacted."""
    return Patience(secrets=(settings.clickhouse_password, settings.kafka_sasl_password or ""))


def partition_key(partition: int) -> bytes:
    """The record that says how far a predictions partition got."""
    return f"partition-{partition}".encode()


def model_key(partition: int, model: str) -> bytes:
    """The record of one model's state on a predictions partition."""
    return f"partition-{partition}/{model}".encode()
