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


def install_group(session: nox.Session, *groups: str) -> None:
    for group in groups:
        session.install(*nox.project.dependency_groups(PYPROJECT, group))


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


def run_suite(session: nox.Session) -> None:
    """Run pytest over every core; a test marked xdist_group shares its worker with its group."""
    parallel = ["-n", "auto", "--dist", "loadgroup"]
    session.run("python", "-m", "pytest", *parallel, *session.posargs)


@nox.session
def tests(session: nox.Session) -> None:
    """Run the test suite with coverage; fail under 90%."""
    install_group(session, "test")
    session.install("-e", ".[cli,redis,otel]")
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
    install_group(session, "test")
    session.install("--upgrade", "--upgrade-strategy", "eager", "-e", f".[{','.join(EXTRAS)}]")
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
    install_group(session, "typecheck")
    session.install("-e", ".[cli,redis,otel]")
    session.run("mypy")


@nox.session
def docs(session: nox.Session) -> None:
    """Build the documentation site with mkdocs --strict (warnings fail)."""
    install_group(session, "docs")
    session.install("-e", ".[cli]")
    session.run("mkdocs", "build", "--strict", "--site-dir", "site")


@nox.session
def bench(session: nox.Session) -> None:
    """Run the benchmarks; print tables, write benchmarks/results/latest.json and the chart."""
    install_group(session, "bench")
    session.install("-e", ".[cli,redis,otel]")
    session.run("python", "-m", "benchmarks", *session.posargs)
