"""Child-process entry point: a ClickHouse HTTP server out of chdb-core's private ``_chdb``.

Run by :class:`driftline.streams.embedded.clickhouse.EmbeddedClickHouse` as
``python -m driftline.streams.embedded._clickhouse_server --port P --data-dir D --work-dir W``.

chdb's public API cannot listen on a port; its low-level ``_chdb.query`` can, when a
``config.xml`` with ``http_port`` sits in the working directory. The one query it runs
starts the HTTP listener and then blocks reading a FIFO; writing a line to the FIFO ends the
query, and with it the listener and this process. ``_chdb.query`` runs once per process
(a second call fails), and reports most failures, such as a data directory locked by
another server, on stderr only.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path

CONFIG = (
    "<clickhouse><http_port>{port}</http_port><listen_host>127.0.0.1</listen_host></clickhouse>\n"
)
FIFO_NAME = "control.fifo"
#: Exit codes the parent turns into messages.
EXIT_NO_CHDB = 3
EXIT_QUERY_FAILED = 4


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    work_dir: Path = args.work_dir
    work_dir.mkdir(parents=True, exist_ok=True)
    (work_dir / "config.xml").write_text(CONFIG.format(port=args.port))
    fifo = work_dir / FIFO_NAME
    fifo.unlink(missing_ok=True)
    os.mkfifo(fifo)
    os.chdir(work_dir)  # chdb reads config.xml from the working directory
    try:
        # By name: the type stubs chdb ships for _chdb leave query() out.
        _chdb = importlib.import_module("chdb._chdb")
    except ImportError:
        sys.stderr.write("chdb is missing: pip install chdb-core==26.9.0\n")
        return EXIT_NO_CHDB
    # TabSeparated becomes the server's default HTTP format; clickhouse-connect needs it.
    result = _chdb.query(_serve_until_fifo_line(fifo), "TabSeparated", path=str(args.data_dir))
    # Stopped through the FIFO, the result holds the count; a failed start leaves it empty.
    return 0 if result.bytes() else EXIT_QUERY_FAILED


def _serve_until_fifo_line(fifo: Path) -> str:
    literal = str(fifo).replace("\\", "\\\\").replace("'", "\\'")
    return (
        "SYSTEM START LISTEN HTTP; "
        f"SELECT count() FROM file('{literal}', 'LineAsString') "
        "SETTINGS storage_file_read_method='read' FORMAT Null"
    )


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--work-dir", type=Path, required=True)
    return parser.parse_args(argv)


if __name__ == "__main__":
    sys.exit(main())
