"""Every ``driftline demo`` starts from nothing, so every run tells the same story.

The embedded broker keeps nothing between runs: its offsets start again at 0. Rows an
earlier run left in ClickHouse carry that run's offsets as their ``revision``, so under
``FINAL`` they could win over this run's rows for the same minutes, and the worker's state
would resume from offsets that no longer exist. Nothing of an earlier run can be
continued, so the demo drops it: its database (then created again, empty) and the
worker's state directory. Other databases on the embedded server are left alone.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from clickhouse_connect.driver.client import Client

from driftline.sinks.schema import statements

__all__ = ["start_fresh"]

#: ClickHouse's own databases, and the one every client lands in: never the demo's to drop.
SHARED_DATABASES = frozenset({"default", "system", "information_schema", "INFORMATION_SCHEMA"})


def start_fresh(client: Client, database: str, state_dir: Path, retention_days: int = 8) -> None:
    """Drop ``database`` and ``state_dir``, then create the database's tables, empty."""
    if database in SHARED_DATABASES:
        raise ValueError(f"the demo empties its database before each run and will not drop "
                         f"{database!r}: set DRIFTLINE_CLICKHOUSE_DATABASE to one of its own")
    ddl = statements(database, retention_days)  # checks the name before it goes into SQL
    # SYNC: the tables are gone, not queued for removal, when the new ones are created.
    client.command(f"DROP DATABASE IF EXISTS {database} SYNC")
    if state_dir.exists():
        shutil.rmtree(state_dir)
    for statement in ddl:
        client.command(statement)
