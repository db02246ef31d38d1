"""Hub sources: the forms a matrix may use, one resolution before the cells, and the three ways a hub source cannot
be had (offline and not cached, unreachable, gated) as fast usage errors naming the variable to set.

What is faked, and why: there is no hub here (no network). The cache is a real huggingface_hub cache layout
(HF_HOME/hub/models--owner--name/{refs/main,snapshots/<rev>/...}) written by hand, read by the real
huggingface_hub; "unreachable" is a real refused connection (HF_ENDPOINT=http://127.0.0.1:9); "gated" is a tiny
local HTTP server answering 401 with the hub's X-Error-Code header. Cells run the fault-injecting engine (no torch).
Each case runs in its own process because huggingface_hub reads HF_HOME / HF_ENDPOINT / HF_HUB_OFFLINE at import.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from pytest_qcompat.hub import HubSource, parse_hub_source
from pytest_qcompat.matrix import is_hub_id, load_matrix

REV = "0123456789abcdef0123456789abcdef01234567"


def fake_cache(home: Path, repo: str = "owner/tiny", files: dict[str, str] | None = None) -> Path:
    """A huggingface_hub cache holding `repo` at revision main, as the library lays it out."""
    folder = home / "hub" / f"models--{repo.replace('/', '--')}"
    snapshot = folder / "snapshots" / REV
    snapshot.mkdir(parents=True)
    for name, text in (files or {"config.json": json.dumps({"model_type": "llama"}), "model.safetensors": "x"}).items():
        (snapshot / name).write_text(text)
    (folder / "refs").mkdir()
    (folder / "refs" / "main").write_text(REV)
    return snapshot


def resolve_in_subprocess(source: str, env: dict[str, str], download: bool = True) -> dict:
    code = textwrap.dedent(f"""
        import json, time
        from pytest_qcompat.hub import HubError, parse_hub_source, resolve
        t = time.perf_counter()
        try:
            out = {{"path": resolve(parse_hub_source({source!r}), download={download!r})}}
        except HubError as exc:
            out = {{"problem": exc.problem, "text": str(exc)}}
        out["seconds"] = time.perf_counter() - t
        print(json.dumps(out))
    """)
    clean = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**clean, **env}, timeout=120)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_hub_forms_are_told_apart_from_paths_and_embedded_models():
    assert parse_hub_source("owner/name") == HubSource("owner/name")
    assert parse_hub_source("TheBloke/Llama-2-7B-GGUF:llama-2-7b.Q4_K_M.gguf", "main") == \
        HubSource("TheBloke/Llama-2-7B-GGUF", "llama-2-7b.Q4_K_M.gguf", "main")
    for not_hub in ("./models/x", "/abs/x", "~/x", "tiny:llama", "real:smollm2-135m", "a/b/c", "name", "model.gguf",
                    "owner/name:weights.bin"):
        assert parse_hub_source(not_hub) is None, not_hub
    assert is_hub_id("owner/name:file.gguf") and not is_hub_id("./owner/name")


def test_cached_checkpoint_and_gguf_resolve_offline(tmp_path):
    snapshot = fake_cache(tmp_path, "owner/tiny")
    gguf = fake_cache(tmp_path, "owner/tiny-gguf", {"tiny.Q4_K_M.gguf": "GGUF", "README.md": "x"})
    env = {"HF_HOME": str(tmp_path), "HF_HUB_OFFLINE": "1"}
    assert resolve_in_subprocess("owner/tiny", env)["path"] == str(snapshot)
    assert resolve_in_subprocess("owner/tiny-gguf:tiny.Q4_K_M.gguf", env)["path"] == str(gguf / "tiny.Q4_K_M.gguf")


def test_offline_and_not_cached_names_the_variables_fast(tmp_path):
    out = resolve_in_subprocess("owner/missing", {"HF_HOME": str(tmp_path), "HF_HUB_OFFLINE": "1"})
    assert out["problem"] == "offline-not-cached" and "HF_HUB_OFFLINE" in out["text"] and "HF_HOME" in out["text"]
    assert out["seconds"] < 5


def test_unreachable_hub_fails_fast_or_uses_the_cache(tmp_path):
    env = {"HF_HOME": str(tmp_path), "HF_ENDPOINT": "http://127.0.0.1:9"}  # port 9 (discard): connection refused
    out = resolve_in_subprocess("owner/x:f.Q4_K_M.gguf", env)
    # huggingface_hub alone retries a refused download 5 times with backoff (~25 s); one probe decides instead.
    assert out["problem"] == "unreachable" and out["seconds"] < 5
    assert "HF_HUB_OFFLINE=1" in out["text"] and "HF_ENDPOINT" in out["text"]
    snapshot = fake_cache(tmp_path, "owner/tiny")
    assert resolve_in_subprocess("owner/tiny", env)["path"] == str(snapshot)  # the cache still serves


GATED_SERVER = textwrap.dedent("""
    import http.server, sys
    class Gated(http.server.BaseHTTPRequestHandler):
        def answer(self):
            body = b'{"error": "Access to model owner/gated is restricted."}'
            self.send_response(401)
            self.send_header("X-Error-Code", "GatedRepo")
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
        do_GET = do_HEAD = answer
        def log_message(self, *args):
            pass
    server = http.server.HTTPServer(("127.0.0.1", 0), Gated)
    print(server.server_address[1], flush=True)
    server.serve_forever()
""")


@pytest.fixture
def gated_endpoint():
    proc = subprocess.Popen([sys.executable, "-c", GATED_SERVER], stdout=subprocess.PIPE, text=True)
    try:
        yield f"http://127.0.0.1:{proc.stdout.readline().strip()}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_gated_repository_asks_for_hf_token(tmp_path, gated_endpoint):
    out = resolve_in_subprocess("owner/gated", {"HF_HOME": str(tmp_path), "HF_ENDPOINT": gated_endpoint})
    assert out["problem"] == "gated" and "set HF_TOKEN" in out["text"] and "401" in out["text"]
    out = resolve_in_subprocess("owner/gated:m.gguf", {"HF_HOME": str(tmp_path), "HF_ENDPOINT": gated_endpoint})
    assert out["problem"] == "gated"


# ---------------------------------------------------------------- through pytest

HUB_MATRIX = """\
models:
  - {id: hubm, source: owner/tiny}
engines:
  probe: {kind: "fault_engines:FaultEngine", args: {fault: ok, echo_env: HF_HUB_OFFLINE, sleep_once: 0.01, sleep_once_tag: hub}}
"""


def run_pytest(pytester, env: dict[str, str], *args: str):
    for key in [k for k in os.environ if k.startswith("HF_")]:
        pytester._monkeypatch.delenv(key)
    for key, value in env.items():
        pytester._monkeypatch.setenv(key, value)
    t = time.perf_counter()
    result = pytester.runpytest_subprocess("--qcompat-matrix", "matrix.yaml", *args)
    return result, time.perf_counter() - t


def test_hub_source_is_resolved_once_and_cells_run_offline_on_the_snapshot(pytester, tmp_path):
    snapshot = fake_cache(tmp_path / "hf", "owner/tiny")
    (pytester.path / "matrix.yaml").write_text(HUB_MATRIX)
    result, _ = run_pytest(pytester, {"HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"})
    result.assert_outcomes(passed=1)
    doc = json.loads((pytester.path / "qcompat-report" / "report.json").read_text())
    cell = doc["cells"][0]
    assert cell["outputs"][0]["text"] == "1"  # the worker ran with HF_HUB_OFFLINE=1: no hub calls per cell
    assert (snapshot / ".slept-hub").exists()  # the engine loaded the snapshot folder, not the hub id
    assert doc["environment"]["models"][0] == {"id": "hubm", "source": "owner/tiny", "trust_remote_code": False,
                                               "local": str(snapshot)}


@pytest.mark.parametrize("case", ["offline", "unreachable", "gated"])
def test_unusable_hub_source_is_one_usage_error_not_failed_cells(pytester, tmp_path, case, gated_endpoint):
    (pytester.path / "matrix.yaml").write_text(HUB_MATRIX)
    env = {"HF_HOME": str(tmp_path / "hf"), **{"offline": {"HF_HUB_OFFLINE": "1"},
                                               "unreachable": {"HF_ENDPOINT": "http://127.0.0.1:9"},
                                               "gated": {"HF_ENDPOINT": gated_endpoint}}[case]}
    result, seconds = run_pytest(pytester, env)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    text = result.stderr.str()
    wanted = {"offline": "HF_HUB_OFFLINE", "unreachable": "HF_ENDPOINT", "gated": "HF_TOKEN"}[case]
    assert "owner/tiny" in text and wanted in text
    assert not (pytester.path / "qcompat-report" / "report.json").exists()  # no cell recorded as failed
    assert seconds < 30  # one resolution, no retries per cell (a subprocess pytest start included)


def test_model_that_exists_only_quantized_is_judged_as_its_method(tmp_path):
    (tmp_path / "awq-ckpt").mkdir()
    (tmp_path / "m.yaml").write_text(textwrap.dedent("""\
        models:
          - {id: base, source: tiny:llama}
          - {id: mine-awq, source: ./awq-ckpt, method: awq}
        quantization: [none, bnb-4bit]
        dtypes: [float16, bfloat16]
        exclude:
          - {dtype: bfloat16, model: mine-awq}
    """))
    from pytest_qcompat.cells import expand

    matrix = load_matrix(tmp_path / "m.yaml")
    cells = expand(matrix)
    mine = [c for c in cells if c.model == "mine-awq"]
    assert [(c.quantization, c.dtype) for c in mine] == [("awq", "float16")]  # awq only; the user's exclude holds
    assert {c.quantization for c in cells if c.model == "base"} == {"none", "bnb-4bit"}
    assert matrix.model("mine-awq").variants["awq"] == str(tmp_path / "awq-ckpt")


def test_request_carries_the_local_snapshot_for_producers(tmp_path, monkeypatch):
    """A produced method (bnb prequant, awq, gguf-*) needs a local base: the request names the snapshot folder."""
    from pytest_qcompat.cells import expand
    from pytest_qcompat.hardware import probe_runner
    from pytest_qcompat.session import QcompatSession

    (tmp_path / "m.yaml").write_text("models:\n  - {id: h, source: owner/tiny}\nquantization: [bnb-4bit-prequant]\n")
    qs = QcompatSession(load_matrix(tmp_path / "m.yaml"), tmp_path / "r", runner=probe_runner("cpu"))
    qs.hub_paths["owner/tiny"] = str(tmp_path / "snap")  # what resolve_hub found (resolution itself: tests above)
    cell = expand(qs.matrix)[0]
    request = qs.request(cell, qs.plan(cell))
    assert request["model"]["source"] == str(tmp_path / "snap")
