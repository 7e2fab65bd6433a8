"""What each install of driftline puts on disk, and what importing the publisher loads.

Builds the wheel of this checkout, then installs it into fresh virtual environments (one
per extra) with pip, from the package registry (pip's cache makes reruns fast), and
measures each environment's site-packages against an empty environment's in the same run.

    python benchmarks/install_size.py [--extras base,worker,agent,reference,all]

Prints a table and writes benchmarks/results/install_size.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "install_size.json"
#: Loaded by `from driftline import Publisher`? Each would be a needless cost in serving code.
HEAVY = ("faust", "clickhouse_connect", "chdb", "pandas", "pyarrow", "scipy", "river", "rich")
IMPORT_CHECK = (
    "import sys; from driftline import Publisher, profile_from_frame; "
    f"print(','.join(m for m in {HEAVY!r} if m in sys.modules) or '-')"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--extras", default="base,worker,agent,reference,all")
    args = parser.parse_args()
    console = Console()
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        wheel = _build_wheel(work)
        empty = _site_packages_bytes(_venv(work / "empty"))
        rows = [_measure(work, wheel, extra, empty) for extra in args.extras.split(",")]
    table = Table("install", "pip install", "site-packages MB", "of it numpy", "packages",
                  "heavy modules loaded by the publisher")
    for row in rows:
        table.add_row(row["extra"], escape(str(row["requirement"])), f"{row['megabytes']:.0f}",
                      f"{row['numpy_megabytes']:.0f}", str(row["packages"]), row["publisher_loads"])
    console.print(table)
    console.print(f"(site-packages of each environment less an empty one's: {empty / 1e6:.0f} MB)")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"python": sys.version.split()[0], "rows": rows}, indent=2))


def _measure(work: Path, wheel: Path, extra: str, empty: int) -> dict[str, object]:
    requirement = "driftline" if extra == "base" else f"driftline[{extra}]"
    python = _venv(work / extra)
    _run(python, "-m", "pip", "install", "--quiet", f"{requirement} @ {wheel.as_uri()}")
    frozen = _run(python, "-m", "pip", "freeze", "--quiet").split()
    loads = _run(python, "-c", IMPORT_CHECK, cwd=work).strip()
    return {"extra": extra, "requirement": requirement, "packages": len(frozen),
            "megabytes": (_site_packages_bytes(python) - empty) / 1e6,
            "numpy_megabytes": _site_packages_bytes(python, ("numpy", "numpy.libs")) / 1e6,
            "publisher_loads": loads}


def _build_wheel(work: Path) -> Path:
    out = work / "wheel"
    _run(Path(sys.executable), "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(out),
         str(ROOT))
    (wheel,) = out.glob("driftline-*.whl")
    return wheel


def _venv(path: Path) -> Path:
    _run(Path(sys.executable), "-m", "venv", str(path))
    return path / "bin" / "python"


def _site_packages_bytes(python: Path, only: tuple[str, ...] = ()) -> int:
    """Bytes under site-packages, or under its ``only`` folders."""
    site = Path(_run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])")
                .strip())
    roots = [site / name for name in only] if only else [site]
    return sum(f.stat().st_size for root in roots for f in root.rglob("*")
               if f.is_file() and not f.is_symlink())


def _run(python: Path, *args: str, cwd: Path | None = None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([str(python), *args], check=True, capture_output=True, text=True,
                          cwd=cwd, env=env).stdout


if __name__ == "__main__":
    main()
