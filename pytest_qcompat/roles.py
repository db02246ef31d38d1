"""The session as plugin objects, one per role (as pytest-xdist's DSession and pytest's LogXML): pytest_configure
registers exactly one, and its methods are the hooks.

SerialRun    no xdist: collects and runs the cells, writes report/
ShardWriter  an xdist worker: runs the cells it is given, writes shards/<worker>.json
ShardMerger  the xdist controller: runs nothing, merges the workers' shards into report/
"""
from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from .items import MatrixFile, MatrixItem, fails_the_session, result_key
from .session import QcompatSession


class _Role:
    """What every role shares: the session, the report paths it wrote, the matrix printed at the end."""

    def __init__(self, qs: QcompatSession):
        self.qs = qs
        self.paths: list[Path] = []
        self.carried: list[str] = []  # failures in the report that this session did not run (resumed or kept)
        self.selected: int | None = None  # matrix cells this session runs (of len(qs.cells))

    def _agree_exit_status(self, session: pytest.Session) -> None:
        """The exit status says what the report says: a failure kept from an earlier report (--qcompat-resume,
        --qcompat-update) fails the session as it did when it ran, though pytest did not run it now."""
        doc = self.qs.document()
        if doc is None:
            return
        self.carried = [c["id"] for c in doc["cells"] if c.get("resumed_from") and fails_the_session(c)]
        if self.carried and session.exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_ignore_collect(self, collection_path: Path, config: pytest.Config) -> bool | None:
        # `pytest --qcompat-matrix m.yaml` runs just the matrix; name test paths to run your own tests too.
        return True if config.args_source != pytest.Config.ArgsSource.ARGS else None

    def pytest_terminal_summary(self, terminalreporter, exitstatus, config: pytest.Config) -> None:
        doc = self.qs.document()
        if doc is None:
            return
        from .report.terminal import summary_lines

        terminalreporter.write_sep("=", "qcompat matrix")
        for line in summary_lines(doc):
            terminalreporter.write_line(line)
        if self.carried:
            source = self.qs.kept and "--qcompat-update" or "--qcompat-resume"
            terminalreporter.write_line(
                f"exit 1: {len(self.carried)} failed cell(s) in the report were kept from an earlier report, not run "
                f"now ({source}): {', '.join(self.carried[:5])}{' ...' if len(self.carried) > 5 else ''}; "
                "re-run them into the same table with --lf --qcompat-update REPORT")
        if self.selected is not None and self.selected < len(self.qs.cells) and not self.qs.kept:
            terminalreporter.write_line(
                f"the report holds the {self.selected} selected cells of {len(self.qs.cells)}; to re-run a subset into "
                "the full table: --qcompat-update qcompat-report/report.json (the report to update)")
        if self.paths:
            terminalreporter.write_line("report: " + ", ".join(str(p) for p in self.paths))


class SerialRun(_Role):
    """Collects the matrix's cells, records each one's result once, writes the report at the end."""

    @pytest.hookimpl(tryfirst=True)
    def pytest_collection_modifyitems(self, session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
        # Cells are prepended before -k/-m/--lf deselection runs, so those work on cell ids as usual.
        collector = MatrixFile.from_parent(session, path=self.qs.matrix.path)
        cells = list(collector.collect())
        # Report the collection like any other file, so counts, --collect-only and --lf see the cells.
        session.ihook.pytest_collectreport(report=pytest.CollectReport(collector.nodeid, "passed", None, cells))
        items[:0] = cells

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        if session.config.option.collectonly:
            return
        cells = [i.cell for i in session.items if isinstance(i, MatrixItem)]
        self.selected = len(cells)
        self.qs.start_report(cells)
        self._warn_missing_requirements()

    def _warn_missing_requirements(self) -> None:
        """An engine environment without its declared requirements gives inconclusive cells: say so up front."""
        for engine in self.qs.matrix.engines:
            missing = self.qs.missing_requirements(engine.name)
            if missing:
                names = ", ".join(f"{m['requirement']} ({m['problem']})" for m in missing)
                warnings.warn(pytest.PytestWarning(
                    f"qcompat: engine {engine.name!r} lacks requirements its package declares: {names}; cells failing "
                    "on them are recorded as inconclusive (a runner gap, not the engine's limit)"), stacklevel=2)

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call):
        outcome = yield
        report = outcome.get_result()
        if not isinstance(item, MatrixItem) or report.when not in ("setup", "call"):
            return
        if result_key in item.stash:  # run, resumed or inconclusive: the cell's own record
            if report.when == "call" or report.skipped:
                self.qs.record(item.stash[result_key])
        elif report.when == "setup" and report.skipped:
            # Skips from any source (the plan, user markers, skipif) land in the report with their reason.
            reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
            item.stash[result_key] = self.qs.skipped(item.cell, reason.removeprefix("Skipped: "))
            self.qs.record(item.stash[result_key])

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        self.paths = self.qs.finish(write_reports=not session.config.option.collectonly)
        if not session.config.option.collectonly:
            self._agree_exit_status(session)


class ShardWriter(SerialRun):
    """An xdist worker: the same as a serial run, but its report is its shard (the controller merges them)."""

    def pytest_terminal_summary(self, terminalreporter, exitstatus, config: pytest.Config) -> None:
        return None  # workers have no terminal of their own; the controller prints the merged matrix


class ShardMerger(_Role):
    """The xdist controller: collects and runs nothing itself; merges the workers' shards into one report."""

    def __init__(self, qs: QcompatSession):
        super().__init__(qs)
        self.lost: dict[str, str] = {}  # cell id -> xdist's message, for cells whose worker died while running them

    @pytest.hookimpl(optionalhook=True)
    def pytest_handlecrashitem(self, crashitem: str, report, sched) -> None:
        # the dead worker's shard never got this cell's result: the controller, which saw the crash, records it
        self.lost[crashitem.rpartition("::")[2]] = str(report.longrepr)

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if not session.config.option.collectonly:
            self.paths = self.qs.merge_shards(self.lost)
            self._agree_exit_status(session)
