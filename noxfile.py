"""Project automation: `nox` runs the default sessions CI guards; `nox -s bench` the benchmarks."""

from __future__ import annotations

import nox
from packaging.requirements import Requirement

nox.options.default_venv_backend = "virtualenv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["tests", "tests_lowest", "tests_newest", "lint", "typecheck", "docs"]

PYPROJECT = nox.project.load_toml("pyproject.toml")
# The ends of the supported range: requires-python's floor, and the newest CPython.
OLDEST_PYTHON, NEWEST_PYTHON = "3.10", "3.13"
EXTRAS = ("cli", "redis", "otel", "test")


def install_group(session: nox.Session, group: str, *more: str) -> None:
    """Install a dependency group and ``more`` requirements in one pip run (one resolution)."""
    session.install(*nox.project.dependency_groups(PYPROJECT, group), *more)


def lowest_pins() -> list[str]:
    """``name==floor`` for every dependency and extra with a ``>=`` floor in pyproject.toml.

    What uv's ``--resolution lowest-direct`` picks: the project's own requirements at their
    declared minimums, whatever they need in turn at its newest that fits.
    """
    project = PYPROJECT["project"]
    declared = project["dependencies"] + [
        r for extra in EXTRAS for r in project["optional-dependencies"][extra]
    ]
    pins = []
    for requirement in map(Requirement, declared):
        floors = [s.version for s in requirement.specifier if s.operator == ">="]
        if floors:
            pins.append(f"{requirement.name}=={floors[0]}")
    return pins


# What the ends of the range leave to `tests`: the pacing simulator runs the pacing policy on
# a virtual clock (heapq, math and random.Random(seed).random(), whose sequence Python keeps
# the same across versions; no I/O, no event loop, no dependency), so neither the oldest nor
# the newest Python and dependencies can change what it checks, and it is a tenth of the
# suite's CPU (a third under coverage). The pacer on a real loop and over real HTTP
# (test_adaptive, test_transport, ...) still runs at both ends.
SAME_AT_EVERY_VERSION = ["--ignore=tests/test_pacing_simulated.py"]


def run_suite(session: nox.Session) -> None:
    """Run pytest over every core, less what no version can change; xdist_group keeps a group together."""
    parallel = ["-n", "auto", "--dist", "loadgroup"]
    session.run("python", "-m", "pytest", *parallel, *SAME_AT_EVERY_VERSION, *session.posargs)


@nox.session
def tests(session: nox.Session) -> None:
    """Run the test suite with coverage; fail under 90%."""
    install_group(session, "test", "-e", ".[cli,redis,otel]")
    session.run("coverage", "erase")
    # xdist's workers are measured too: coverage patches subprocess to start in them.
    parallel = ["-n", "auto", "--dist", "loadgroup"]
    session.run("coverage", "run", "-m", "pytest", *parallel, *session.posargs)
    session.run("coverage", "combine", success_codes=[0, 1])
    session.run("coverage", "report", "--fail-under=90")


@nox.session(python=OLDEST_PYTHON)
def tests_lowest(session: nox.Session) -> None:
    """Run the suite on the oldest Python with every dependency at its declared minimum."""
    test_group = nox.project.dependency_groups(PYPROJECT, "test")
    session.install(*test_group, "-e", f".[{','.join(EXTRAS)}]", *lowest_pins())
    run_suite(session)


@nox.session(python=NEWEST_PYTHON)
def tests_newest(session: nox.Session) -> None:
    """Run the suite on the newest Python with the newest version of every dependency."""
    extras = f".[{','.join(EXTRAS)}]"
    install_group(session, "test", "--upgrade", "--upgrade-strategy", "eager", "-e", extras)
    run_suite(session)


@nox.session
def lint(session: nox.Session) -> None:
    """Check style and common bugs with ruff."""
    install_group(session, "lint")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """Type-check the package and tests with mypy --strict."""
    install_group(session, "typecheck", "-e", ".[cli,redis,otel]")
    session.run("mypy")


@nox.session
def docs(session: nox.Session) -> None:
    """Build the documentation site with mkdocs --strict (warnings fail)."""
    install_group(session, "docs", "-e", ".[cli]")
    session.run("mkdocs", "build", "--strict", "--site-dir", "site")


@nox.session
def bench(session: nox.Session) -> None:
    """Run the benchmarks; print tables, write benchmarks/results/latest.json and the chart."""
    install_group(session, "bench", "-e", ".[cli,redis,otel]")
    session.run("python", "-m", "benchmarks", *session.posargs)
