"""pytest entry point, kept thin: options and markers, then pytest_configure registers ONE plugin object for
this process's role (roles.py: SerialRun, ShardWriter or ShardMerger), whose methods are the matrix hooks.
Here too: the fixtures and markers for users' own tests against cells."""
from __future__ import annotations

import shutil
import signal
import threading
from pathlib import Path
from typing import Any, Callable

import pytest

from .cells import Cell
from .hardware import DeviceSpecError, Runner, package_versions, probe_runner
from .items import MatrixItem, session_key, session_of
from .matrix import MatrixError, load_matrix
from .names import marker_name
from .plan import Requirements, check, marker_specs
from .results import CellResult
from .roles import SerialRun, ShardMerger, ShardWriter
from .runner.pinning import pin_gpus
from .session import QcompatSession

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
    group.addoption("--qcompat-update", metavar="REPORT",
                    help="run the selected cells (-k, -m, --lf) and write the full table: REPORT's records for the "
                         "others, the re-run cells replaced (REPORT may be the report this run rewrites)")
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
    controller = workerinput is None and getattr(config.option, "dist", "no") != "no" and not config.option.collectonly
    if workerinput is None and not config.option.collectonly:
        shutil.rmtree(report_dir / "shards", ignore_errors=True)  # shards of an earlier xdist run
    qs = QcompatSession(matrix, report_dir,
                        isolation=config.getoption("qcompat_isolation"), timeout=config.getoption("qcompat_timeout"),
                        runner=_runner(config), emulate=not config.getoption("qcompat_no_emulate"),
                        fixes=not config.getoption("qcompat_no_fixes"))
    _check_inputs(qs, download=not config.option.collectonly)
    if config.getoption("qcompat_resume"):
        from .store import ReportFormatError
        try:
            qs.load_resume(Path(config.invocation_params.dir, config.getoption("qcompat_resume")))
        except ReportFormatError as exc:
            raise pytest.UsageError(f"--qcompat-resume: {exc}") from None
    if config.getoption("qcompat_update") and workerinput is None:  # read before this run rewrites it
        from .store import ReportFormatError
        try:
            qs.load_update(Path(config.invocation_params.dir, config.getoption("qcompat_update")))
        except ReportFormatError as exc:
            raise pytest.UsageError(f"--qcompat-update: {exc}") from None
    if workerinput is not None:
        # An xdist worker writes its own shard; the controller merges them (roles.ShardMerger).
        qs.shard = workerinput["workerid"]
        qs.runs.folder = report_dir / "shards" / "references"  # the workers' runs, read by each other as references
        qs.gpu_share = pin_gpus(int(workerinput.get("workercount", 1)), int(qs.shard.lstrip("gw") or 0),
                                [str(g.index) for g in qs.runner.gpus])
    config.stash[session_key] = qs
    role = ShardWriter(qs) if workerinput is not None else ShardMerger(qs) if controller else SerialRun(qs)
    config.pluginmanager.register(role, "qcompat-session")
    names = {marker_name(v) for c in qs.cells for v in (c.model, c.dtype, c.quantization, c.engine, c.target)}
    for name in sorted(names):
        config.addinivalue_line("markers", f"{name}: pytest-qcompat axis value")
    if threading.current_thread() is threading.main_thread():
        # SIGTERM (CI cancel) ends the session like Ctrl-C, so the report is finished and workers are stopped.
        config.stash[sigterm_key] = signal.signal(signal.SIGTERM, _raise_interrupt)


sigterm_key = pytest.StashKey[Any]()


def _check_inputs(qs: QcompatSession, download: bool) -> None:
    """What would otherwise fail or skip every cell is a usage error up front: an engine interpreter that is not
    there (a typo must not turn CI green with every cell skipped), a hub source that cannot be had (offline and
    not cached, unreachable, gated) with the variable to set. Hub sources are resolved here, once."""
    problems = qs.missing_interpreters()
    if not problems:
        errors = qs.resolve_hub(download)
        problems = [str(e) for e in errors if download or e.problem != "offline-not-cached"]
    if problems:
        raise pytest.UsageError("qcompat: " + "\n".join(problems))


def pytest_unconfigure(config: pytest.Config) -> None:
    if sigterm_key in config.stash and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, config.stash[sigterm_key])


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


# ---------------------------------------------------------------- user tests against cells


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "qcompat_cell" not in metafunc.fixturenames:
        return
    qs = session_of(metafunc.config)
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
    qs = session_of(request.config)
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
