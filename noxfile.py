"""Project automation: `nox` runs the default sessions CI guards; `nox -s bench` the benchmarks."""

from __future__ import annotations

import nox

nox.options.default_venv_backend = "virtualenv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["tests", "lint", "typecheck", "docs"]

PYPROJECT = nox.project.load_toml("pyproject.toml")


def install_group(session: nox.Session, *groups: str) -> None:
    for group in groups:
        session.install(*nox.project.dependency_groups(PYPROJECT, group))


@nox.session
def tests(session: nox.Session) -> None:
    """Run the test suite with coverage; fail under 90%."""
    install_group(session, "test")
    session.install("-e", ".[cli,redis,otel]")
    session.run("coverage", "erase")
    # Spread over every core (xdist's workers are measured too: coverage patches subprocess);
    # a test marked xdist_group shares its worker with the rest of its group.
    parallel = ["-n", "auto", "--dist", "loadgroup"]
    session.run("coverage", "run", "-m", "pytest", *parallel, *session.posargs)
    session.run("coverage", "combine", success_codes=[0, 1])
    session.run("coverage", "report", "--fail-under=90")


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
    session.install("-e", ".[cli,redis]")
    session.run("python", "-m", "benchmarks", *session.posargs)
