"""Shared test setup: the fault-injecting engine is importable by worker processes; `--allowed-skips FILE` (CI) fails
the run when a test is skipped that the file does not allow, module-level skips included."""
from __future__ import annotations

import fnmatch
import os
from pathlib import Path

import pytest

TESTS = Path(__file__).parent / "tests"
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(TESTS), os.environ.get("PYTHONPATH", "")) if p)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--allowed-skips", metavar="FILE",
                     help="fail the run when a test (or a whole module) is skipped and FILE has no line allowing it: "
                          "'<node id pattern> | <why this skip is allowed>' (fnmatch patterns, # comments)")


def read_allowed_skips(path: Path) -> list[tuple[str, str]]:
    """(node id pattern, reason) per line; a line without a reason is an error (a skip is allowed for a reason)."""
    allowed = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.split("#", 1)[0].strip() if not line.lstrip().startswith("#") else ""
        if not line:
            continue
        pattern, _, reason = (part.strip() for part in line.partition("|"))
        if not pattern or not reason:
            raise pytest.UsageError(f"{path}:{number}: expected '<node id pattern> | <reason>', got {line!r}")
        allowed.append((pattern, reason))
    return allowed


class SkipGate:
    """Collects every skip (tests and collectors: a module-level skip hides all its tests) and, at the end, fails the
    session on those no pattern allows."""

    def __init__(self, allowed: list[tuple[str, str]]):
        self.allowed = allowed
        self.skips: dict[str, str] = {}  # node id -> skip reason

    @staticmethod
    def _reason(report) -> str:
        longrepr = report.longrepr
        return str(longrepr[2] if isinstance(longrepr, tuple) else longrepr).removeprefix("Skipped: ")

    def pytest_collectreport(self, report) -> None:
        if report.skipped:
            self.skips[report.nodeid] = self._reason(report)

    def pytest_runtest_logreport(self, report) -> None:
        if report.skipped and not hasattr(report, "wasxfail"):
            self.skips[report.nodeid] = self._reason(report)

    def unexpected(self) -> dict[str, str]:
        return {node: why for node, why in self.skips.items()
                if not any(fnmatch.fnmatchcase(node, pattern) for pattern, _ in self.allowed)}

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus) -> None:
        if self.unexpected() and session.exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter) -> None:
        unexpected = self.unexpected()
        terminalreporter.write_sep("=", f"skips: {len(self.skips) - len(unexpected)} allowed, {len(unexpected)} not allowed")
        for node, why in sorted(unexpected.items()):
            terminalreporter.write_line(f"NOT ALLOWED {node}: {why}", red=True)


def pytest_configure(config: pytest.Config) -> None:
    path = config.getoption("allowed_skips")
    if path and not hasattr(config, "workerinput"):  # under xdist the controller sees every report
        config.pluginmanager.register(SkipGate(read_allowed_skips(Path(config.invocation_params.dir, path))), "skip-gate")
