"""Every module's doctests, imported by its real name (``driftline.models.windows.sketch``).

pytest's ``--doctest-modules`` imports a file by its path, which here would give the
module a second name and a second copy (the repository's root is the ``driftline``
package); the README's examples are collected by ``--doctest-glob`` as usual.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import driftline


def _modules() -> list[str]:
    names = ["driftline"]
    for info in pkgutil.walk_packages(driftline.__path__, "driftline."):
        if info.name.startswith(("driftline.tests", "driftline.benchmarks")):
            continue
        names.append(info.name)
    return names


MODULES = _modules()


def test_every_package_is_found() -> None:
    assert {"driftline.models.windows.sketch", "driftline.streams.worker.assembly",
            "driftline.sinks.schema"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name: str) -> None:
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    for test in finder.find(module, name):
        runner.run(test, out=_collect)
    failed = runner.summarize(verbose=False).failed
    assert failed == 0, "".join(_REPORT)


_REPORT: list[str] = []


def _collect(text: str) -> None:
    _REPORT.append(text)
