"""Reference profiles on Kafka and in ClickHouse: publish them, and follow the live ones.

* :func:`publish_profiles` produces each profile's JSON, keyed ``model/version``, to the
  compacted ``settings.references_topic`` (created with one partition if missing) and
  inserts one row per profile into ClickHouse ``{db}.references``. What was published last
  for a key is live, on the topic (compaction keeps the last message) and in ClickHouse
  (the row with the latest ``published_at`` wins), so republishing an old file rolls back.
* :class:`ReferenceStore` reads the whole topic with a consumer that has no group, so every
  worker sees every profile, keeps the last profile per key, and follows the topic.
* :func:`build_command` and :func:`publish_command` are ``driftline reference build`` and
  ``driftline reference publish``; ``driftline.streams.cli`` declares their arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import logging
import re
import time
from collections.abc import Sequence
from pathlib import Path

import clickhouse_connect
from aiokafka import AIOKafkaProducer
from rich.console import Console
from rich.table import Table

from driftline.models.drift.reference import FeatureReference, NumericReference, ReferenceProfile
from driftline.models.drift.reference_build import build_profile, load_columns
from driftline.sinks.clickhouse_options import clickhouse_client_options
from driftline.sinks.schema import statements
from driftline.streams.compacted import CompactedReader, ensure_compacted_topic
from driftline.streams.kafka_options import kafka_client_options
from driftline.streams.settings import Settings

__all__ = [
    "ReferenceStore",
    "build_command",
    "ensure_references_topic",
    "publish_command",
    "publish_profile",
    "publish_profiles",
]

log = logging.getLogger(__name__)



_COLUMNS = ["model", "model_version", "source", "profile_id", "created_at", "published_at",
            "features", "profile"]


# -- publishing -------------------------------------------------------------------


async def ensure_references_topic(settings: Settings) -> list[int]:
    """Create the compacted references topic if missing; return its partition ids."""
    return await ensure_compacted_topic(settings, settings.references_topic)


async def publish_profile(settings: Settings, profile: ReferenceProfile) -> None:
    """Publish one profile; see :func:`publish_profiles`."""
    await publish_profiles(settings, [profile])


async def publish_profiles(settings: Settings, profiles: Sequence[ReferenceProfile]) -> None:
    """Produce the profiles to the references topic, then insert them into ClickHouse.

    Both steps are idempotent per key, so a failed publish is simply run again.
    """
    if not profiles:
        return
    published_ms = time.time_ns() // 1_000_000
    await ensure_references_topic(settings)
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap, acks="all", compression_type="gzip",
        max_request_size=settings.max_message_bytes, client_id="driftline-references",
        **kafka_client_options(settings))
    await producer.start()
    try:
        sent = [await producer.send(settings.references_topic, p.to_json(), key=p.key,
                                    timestamp_ms=published_ms) for p in profiles]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()
    await _insert_rows(settings, profiles, published_ms)


async def _insert_rows(settings: Settings, profiles: Sequence[ReferenceProfile],
                       published_ms: int) -> None:
    client = await clickhouse_connect.get_async_client(**clickhouse_client_options(settings))
    try:
        db = settings.clickhouse_database
        for ddl in statements(db):
            await client.command(ddl)
        rows = [[p.model, p.version, p.source, p.profile_id, p.created_at_ms, published_ms,
                 len(p.features), p.to_json().decode()] for p in profiles]
        await client.insert("references", rows, column_names=_COLUMNS, database=db)
    finally:
        await client.close()


# -- following --------------------------------------------------------------------


class ReferenceStore(CompactedReader):
    """The live reference profile of every model version, read from the references topic
    (a :class:`~driftline.streams.compacted.CompactedReader`): the last profile per key
    wins, as compaction would have it, and a tombstone (null value) removes its key.
    Malformed messages are logged and skipped.

    Parameters
    ----------
    settings
        Kafka connection and ``references_topic``. On a tansu broker, install
        :mod:`driftline.streams.embedded.tansu_compat` first, or the end offsets may be short.
    poll_timeout_ms
        How long one poll waits for new records.

    Examples
    --------
    ::

        async with ReferenceStore(settings) as store:
            with contextlib.suppress(TimeoutError):  # start without them if Kafka is slow
                async with asyncio.timeout(10):
                    await store.wait_ready()
            profile = store.get("fraud", "v3")  # None if no reference was published
    """

    def __init__(self, settings: Settings, poll_timeout_ms: int = 500) -> None:
        super().__init__(settings, settings.references_topic, "driftline-reference-store",
                         poll_timeout_ms)
        self._profiles: dict[bytes, ReferenceProfile] = {}

    def get(self, model: str, version: str) -> ReferenceProfile | None:
        """The live profile of ``model`` / ``version``, or None."""
        return self._profiles.get(f"{model}/{version}".encode())

    def profiles(self) -> dict[tuple[str, str], ReferenceProfile]:
        """A snapshot of every live profile by (model, version)."""
        return {(p.model, p.version): p for p in self._profiles.values()}

    def __len__(self) -> int:
        return len(self._profiles)

    def _apply(self, key: bytes | None, value: bytes | None, offset: int) -> bool:
        if key is not None and value is None:  # tombstone: the version has no reference
            self._profiles.pop(key, None)
            return True
        try:
            profile = _checked(ReferenceProfile.from_json(value or b""))
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            log.warning("skipping malformed reference profile at offset %d (key %r): %s",
                        offset, key, exc)
            return False
        if key != profile.key:
            log.warning("skipping reference profile at offset %d: key %r is not %r",
                        offset, key, profile.key)
            return False
        self._profiles[key] = profile
        return True


def _checked(profile: ReferenceProfile) -> ReferenceProfile:
    """``profile`` if its histograms are shaped as the worker expects; else ValueError."""
    for name, f in profile.features.items():
        if isinstance(f, NumericReference):
            for edges, counts in ((f.edges, f.counts), (f.fine_edges, f.fine_counts)):
                if (len(counts) != len(edges) + 1 or len(edges) < 2
                        or any(not b > a for a, b in itertools.pairwise(edges))):
                    raise ValueError(f"feature {name!r}: bad edges or counts")
        elif len(f.categories) != len(f.counts):
            raise ValueError(f"feature {name!r}: {len(f.categories)} categories, "
                             f"{len(f.counts)} counts")
    return profile


# -- commands ---------------------------------------------------------------------


def build_command(args: argparse.Namespace, settings: Settings, console: Console) -> int:
    exclude = {name.strip() for names in args.exclude for name in names.split(",")} - {""}
    started = time.perf_counter()
    loaded = load_columns(args.input)
    columns = {name: values for name, values in loaded.items() if name not in exclude}
    profile = build_profile(
        args.model, args.version, columns,
        coarse_bins=args.bins or settings.histogram_bins,
        fine_bins=args.fine_bins or settings.fine_histogram_bins,
        top_k=settings.top_k_categories if args.top_k is None else args.top_k,
        categorical_max_distinct=args.categorical_max_distinct)
    elapsed = time.perf_counter() - started
    out: Path = args.out or Path(_file_name(f"{args.model}-{args.version}") + ".reference.json")
    out.write_bytes(profile.to_json())
    rows = len(next(iter(columns.values()))) if columns else 0
    console.print(summary_table(profile))
    skipped = [name for name in columns if name not in profile.features]
    if skipped:
        console.print(f"skipped (every value missing): {', '.join(skipped)}", highlight=False)
    unknown = sorted(exclude.difference(loaded))
    if unknown:
        console.print(f"[yellow]--exclude names no column: {', '.join(unknown)}[/]",
                      highlight=False)
    console.print(f"{rows} rows, {len(profile.features)} features in {elapsed:.2f} s: wrote "
                  f"{out} (profile {profile.profile_id}); make it live with "
                  f"`driftline reference publish {out}`", highlight=False)
    return 0


def publish_command(args: argparse.Namespace, settings: Settings, console: Console) -> int:
    profiles = [_read_profile(path) for path in args.files]
    asyncio.run(publish_profiles(settings, profiles))
    for path, p in zip(args.files, profiles, strict=True):
        console.print(f"published {p.model}/{p.version} from {path} (profile {p.profile_id}, "
                      f"{len(p.features)} features) to {settings.references_topic} and "
                      f"{settings.clickhouse_database}.references", highlight=False)
    return 0


def summary_table(profile: ReferenceProfile) -> Table:
    """One row per feature: kind, count, missing, and its edges or top categories."""
    table = Table(title=f"reference {profile.model}/{profile.version} ({profile.source})")
    for name in ("feature", "kind", "count", "missing"):
        table.add_column(name, justify="right" if name in ("count", "missing") else "left")
    table.add_column("edges / categories", overflow="fold")
    for name, feature in profile.features.items():
        table.add_row(name, feature.kind, str(feature.count), str(feature.missing_count),
                      _describe(feature))
    return table


def _describe(feature: FeatureReference, shown: int = 5) -> str:
    if isinstance(feature, NumericReference):
        edges = [f"{e:.4g}" for e in feature.edges]
        if len(edges) > 2 * shown:
            edges = [*edges[:shown], "…", *edges[-shown:]]
        return f"{len(feature.edges) - 1} bins: {' '.join(edges)}"
    parts = [f"{c} ({n})" for c, n in zip(feature.categories[:shown], feature.counts,
                                           strict=False)]
    more = len(feature.categories) - shown
    if more > 0:
        parts.append(f"+{more} more")
    if feature.other_count:
        parts.append(f"other ({feature.other_count})")
    return ", ".join(parts)


def _read_profile(path: Path) -> ReferenceProfile:
    try:
        return ReferenceProfile.from_json(path.read_bytes())
    except ValueError as exc:  # orjson's decode error is one too
        raise ValueError(f"{path}: {exc}") from None


def _file_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)

