"""pytest hooks, kept thin: options, markers, collecting matrix cells, running them, the terminal summary."""
from __future__ import annotations

import shutil
import signal
import threading
from pathlib import Path
from typing import Any, Callable

import pytest

from .cells import Cell
from .hardware import DeviceSpecError, Runner, package_versions, probe_runner
from .matrix import MatrixError, load_matrix
from .names import marker_name
from .plan import Requirements, check, marker_specs
from .results import CellResult
from .runner.pinning import pin_gpus
from .session import QcompatSession

session_key = pytest.StashKey[QcompatSession]()
runner_key = pytest.StashKey[Runner]()

MARKERS = (
    "qcompat: a pytest-qcompat matrix cell",
    "qcompat_target(target): the test is about this exact target (cpu or sm_XY); skipped where the runner has no such GPU",
    "qcompat_requires(capability=None, gpus=0, vram_gb=None, packages=()): minimum GPU capability ('8.0'), GPU count, "
    "GPU memory in GiB and packages; skipped with the reason where the runner lacks any of them",
)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("qcompat", "quantized-model compatibility matrix (pytest-qcompat)")
    group.addoption("--qcompat-matrix", metavar="PATH", help="matrix.yaml to expand into load-and-generate cells")
    group.addoption("--qcompat-device", metavar="SPEC", default="auto",
                    help="runner hardware: auto (probe), cpu, sm_80, 2xsm_90 or sm_75,sm_86 (simulated; for skip logic)")
    group.addoption("--qcompat-report", metavar="DIR", default="qcompat-report",
                    help="folder for report.json, report.md, report.html and cell logs (default: qcompat-report)")
    group.addoption("--qcompat-isolation", choices=("fork", "spawn"), default="fork",
                    help="fork: warm worker per engine environment, one forked process per cell (default); "
                         "spawn: a fresh interpreter per cell")
    group.addoption("--qcompat-timeout", type=float, metavar="SECONDS", help="override the matrix's per-cell timeout")
    group.addoption("--qcompat-resume", metavar="REPORT", help="do not rerun cells that have a run result in this report.json")
    group.addoption("--qcompat-no-emulate", action="store_true",
                    help="on GPU runners, skip (and predict) lower targets instead of running them with the capability emulated")
    group.addoption("--qcompat-no-fixes", action="store_true",
                    help="do not retry failed cells once with the known fix for their failure class")


def _runner(config: pytest.Config) -> Runner:
    if runner_key not in config.stash:
        config.stash[runner_key] = probe_runner(config.getoption("qcompat_device"))
    return config.stash[runner_key]


def pytest_configure(config: pytest.Config) -> None:
    for line in MARKERS:
        config.addinivalue_line("markers", line)
    try:
        if config.getoption("qcompat_device") != "auto":
            _runner(config)  # validate the spec early
    except DeviceSpecError as exc:
        raise pytest.UsageError(str(exc)) from None
    path = config.getoption("qcompat_matrix")
    if not path:
        return
    try:
        matrix = load_matrix(Path(config.invocation_params.dir, path))
    except MatrixError as exc:
        raise pytest.UsageError(str(exc)) from None
    report_dir = Path(config.invocation_params.dir, config.getoption("qcompat_report"))
    workerinput = getattr(config, "workerinput", None)
    if workerinput is None and not config.option.collectonly:
        shutil.rmtree(report_dir / "shards", ignore_errors=True)  # shards of an earlier xdist run
    qs = QcompatSession(matrix, report_dir,
                        isolation=config.getoption("qcompat_isolation"), timeout=config.getoption("qcompat_timeout"),
                        runner=_runner(config), emulate=not config.getoption("qcompat_no_emulate"),
                        fixes=not config.getoption("qcompat_no_fixes"))
    if config.getoption("qcompat_resume"):
        from .results import ReportFormatError
        try:
            qs.load_resume(Path(config.invocation_params.dir, config.getoption("qcompat_resume")))
        except ReportFormatError as exc:
            raise pytest.UsageError(f"--qcompat-resume: {exc}") from None
    if workerinput is not None:
        # An xdist worker writes its own shard; the controller merges them (see pytest_sessionfinish).
        qs.shard = workerinput["workerid"]
        qs.gpu_share = pin_gpus(int(workerinput.get("workercount", 1)), int(qs.shard.lstrip("gw") or 0),
                                [str(g.index) for g in qs.runner.gpus])
    config.stash[session_key] = qs
    names = {marker_name(v) for c in qs.cells for v in (c.model, c.dtype, c.quantization, c.engine, c.target)}
    for name in sorted(names):
        config.addinivalue_line("markers", f"{name}: pytest-qcompat axis value")
    if threading.current_thread() is threading.main_thread():
        # SIGTERM (CI cancel) ends the session like Ctrl-C, so the report is finished and workers are stopped.
        config.stash[sigterm_key] = signal.signal(signal.SIGTERM, _raise_interrupt)


sigterm_key = pytest.StashKey[Any]()


def pytest_unconfigure(config: pytest.Config) -> None:
    if sigterm_key in config.stash and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, config.stash[sigterm_key])


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def _qs(config: pytest.Config) -> QcompatSession | None:
    return config.stash.get(session_key, None)


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    # `pytest --qcompat-matrix m.yaml` runs just the matrix; name test paths to run your own tests too.
    if _qs(config) is not None and config.args_source != pytest.Config.ArgsSource.ARGS:
        return True
    return None


class CellFailed(Exception):
    def __init__(self, result: CellResult):
        super().__init__(result.message)
        self.result = result


class MatrixFile(pytest.File):
    def collect(self):
        qs = _qs(self.config)
        for cell in qs.cells:
            item = MatrixItem.from_parent(self, name=cell.id, cell=cell)
            for name, args, kwargs in marker_specs(qs.plan(cell)):
                item.add_marker(getattr(pytest.mark, name)(*args, **kwargs))
            yield item


class MatrixItem(pytest.Item):
    def __init__(self, *, cell: Cell, **kwargs: Any):
        super().__init__(**kwargs)
        self.cell = cell
        self.qcompat_result: CellResult | None = None

    def setup(self) -> None:
        qs = _qs(self.config)
        old = qs.resumed.get(self.cell.id)
        if old is not None:
            qs.record(CellResult.from_dict(old))
            self.qcompat_resumed = True
            pytest.skip(f"resumed: {old['status']} in {old['resumed_from']}")
        plan = qs.plan(self.cell)
        if plan.action == "skip":
            pytest.skip(plan.reason)

    def runtest(self) -> None:
        qs = _qs(self.config)
        result = self.qcompat_result = qs.run(self.cell)
        qs.record(result)
        if result.status == "passed":
            return
        pred = result.prediction or {}
        if pred.get("status") == "failed" and pred.get("error_class") == result.error_class:
            # A known limit, predicted from the engine's own declarations: recorded as failed, not a test failure.
            pytest.xfail(f"{result.error_class} (as predicted: {pred.get('source')})")
        raise CellFailed(result)

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, CellFailed):
            r = excinfo.value.result
            lines = [f"{r.id}: {r.status} [{r.error_class}]", f"  message: {r.message}", f"  hint: {r.hint}"]
            if r.engine_args:
                lines.append(f"  engine args: {r.engine_args}")
            if r.retry:
                lines.append(f"  tried fix: {r.retry['summary']}")
            if r.prediction:
                lines.append(f"  predicted: {r.prediction['status']} {r.prediction.get('error_class') or ''} ({r.prediction['source']})")
            if r.stderr_tail:
                lines += ["  stderr tail:"] + ["    " + s for s in r.stderr_tail.strip().splitlines()[-15:]]
            if r.log:
                lines.append(f"  log: {r.log}")
            return "\n".join(lines)
        return super().repr_failure(excinfo)

    def reportinfo(self):
        return self.path, None, f"qcompat cell {self.cell.id}"


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    qs = _qs(config)
    if qs is None:
        return
    # Cells are prepended before -k/-m/--lf deselection runs, so those work on cell ids as usual.
    collector = MatrixFile.from_parent(session, path=qs.matrix.path)
    cells = list(collector.collect())
    # Report the collection like any other file, so counts, --collect-only and --lf see the cells.
    session.ihook.pytest_collectreport(report=pytest.CollectReport(collector.nodeid, "passed", None, cells))
    items[:0] = cells


def pytest_collection_finish(session: pytest.Session) -> None:
    qs = _qs(session.config)
    if qs is not None and not session.config.option.collectonly:
        qs.start_report([i.cell for i in session.items if isinstance(i, MatrixItem)])


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call):
    outcome = yield
    report = outcome.get_result()
    # Skips from any source (the plan, user markers, skipif) land in the report with their reason.
    if isinstance(item, MatrixItem) and report.when == "setup" and report.skipped and not getattr(item, "qcompat_resumed", False):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        qs = _qs(item.config)
        qs.record(qs.skipped(item.cell, reason.removeprefix("Skipped: ")))


def pytest_sessionfinish(session: pytest.Session) -> None:
    qs = _qs(session.config)
    if qs is None:
        return
    if qs.store is None and _is_xdist_controller(session.config) and not session.config.option.collectonly:
        session.config.stash[paths_key] = qs.merge_shards()
        return
    session.config.stash[paths_key] = qs.finish(write_reports=not session.config.option.collectonly)


def _is_xdist_controller(config: pytest.Config) -> bool:
    return not hasattr(config, "workerinput") and config.pluginmanager.has_plugin("dsession")


paths_key = pytest.StashKey[list]()


def pytest_terminal_summary(terminalreporter, exitstatus, config: pytest.Config) -> None:
    qs = _qs(config)
    doc = qs.document() if qs is not None else None
    if doc is None:
        return
    from .report.terminal import summary_lines

    terminalreporter.write_sep("=", "qcompat matrix")
    for line in summary_lines(doc):
        terminalreporter.write_line(line)
    paths = config.stash.get(paths_key, [])
    if paths:
        terminalreporter.write_line("report: " + ", ".join(str(p) for p in paths))


# ---------------------------------------------------------------- user tests against cells


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "qcompat_cell" not in metafunc.fixturenames:
        return
    qs = _qs(metafunc.config)
    if qs is None:
        metafunc.parametrize("qcompat_cell", [pytest.param(None, marks=pytest.mark.skip(reason="no --qcompat-matrix given"))],
                             ids=["no-matrix"])
        return
    params = []
    for cell in qs.cells:
        plan = qs.plan(cell)
        marks = [getattr(pytest.mark, n)(*a, **k) for n, a, k in marker_specs(plan)]
        if plan.action == "skip":
            marks.append(pytest.mark.skip(reason=plan.reason))
        params.append(pytest.param(cell, id=cell.id, marks=marks))
    metafunc.parametrize("qcompat_cell", params)


@pytest.fixture
def qcompat_cell(request: pytest.FixtureRequest) -> Cell:
    """The matrix cell this test instance is parametrized with."""
    return request.param


@pytest.fixture
def qcompat_run(request: pytest.FixtureRequest) -> Callable[[Cell], CellResult]:
    """Run a cell in an isolated worker (as the matrix does) and return its CellResult."""
    qs = _qs(request.config)
    if qs is None:
        pytest.skip("no --qcompat-matrix given")
    return qs.run


@pytest.fixture(scope="session")
def qcompat_runner(pytestconfig: pytest.Config) -> Runner:
    """The probed (or --qcompat-device simulated) runner hardware."""
    return _runner(pytestconfig)


def pytest_runtest_setup(item: pytest.Item) -> None:
    if isinstance(item, MatrixItem) or not any(True for _ in item.iter_markers()):
        return
    callspec = getattr(item, "callspec", None)
    if callspec is not None and "qcompat_cell" in callspec.params:
        return  # matrix-parametrized tests carry their cell's plan already
    for mark in item.iter_markers("qcompat_target"):
        reason = check(Requirements(target=str(mark.args[0])), _runner(item.config), None)
        if reason:
            pytest.skip(reason)
    for mark in item.iter_markers("qcompat_requires"):
        cap = mark.kwargs.get("capability")
        if isinstance(cap, str):
            major, _, minor = cap.removeprefix("sm_").partition(".") if "." in cap else (cap.removeprefix("sm_")[:-1], "", cap[-1])
            cap = (int(major), int(minor or 0))
        req = Requirements(min_capability=tuple(cap) if cap else None, gpus=int(mark.kwargs.get("gpus", 0)),
                           vram_gb=mark.kwargs.get("vram_gb"), packages=tuple(mark.kwargs.get("packages", ())))
        reason = check(req, _runner(item.config), package_versions() | _importable(req.packages))
        if reason:
            pytest.skip(reason)


def _importable(packages) -> dict[str, str]:
    import importlib.metadata as md
    found = {}
    for p in packages:
        for alt in p.split("|"):
            try:
                found[alt] = md.version(alt)
            except md.PackageNotFoundError:
                pass
    return found
