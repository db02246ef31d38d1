"""report.html in a real browser: headless Chromium driven by selenium through the system chromedriver
(Debian: apt-get install chromium chromium-driver; scripts/setup.sh does it when run as root). Nothing here
downloads a browser or a driver: both paths are given explicitly and Selenium Manager is kept offline.

Opened at 1400x900 as a user would: the grid is in the first viewport, a click on a failed cell shows its
class, hint, verbatim message and the tried fix, hostile text stays text, and first paint is fast, also for a
generated 20,000-cell report. Screenshots go to each test's tmp dir.

README screenshots from the published table (docs/img/grid.png, docs/img/cell.png):
    QCOMPAT_SCREENSHOTS=docs/img .venv/bin/pytest tests/test_report_html_browser.py -k published
"""
from __future__ import annotations

import io
import json
import os
import shutil
import time
from pathlib import Path

import pytest

from pytest_qcompat.report.html import render_html
from test_report_html import EVIL, synthetic_20k, synthetic_doc

ROOT = Path(__file__).resolve().parents[1]
WIDTH, HEIGHT = 1400, 900


def _find(names: list[str], paths: list[str]) -> str | None:
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    return next((p for p in paths if os.access(p, os.X_OK)), None)


CHROMIUM = os.environ.get("QCOMPAT_CHROMIUM") or _find(
    ["chromium", "chromium-browser", "google-chrome", "google-chrome-stable"], ["/usr/lib/chromium/chromium"])
CHROMEDRIVER = os.environ.get("QCOMPAT_CHROMEDRIVER") or _find(["chromedriver"], ["/usr/lib/chromium/chromedriver"])


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM or not CHROMEDRIVER:
        pytest.skip("no Chromium and chromedriver on this machine (Debian: apt-get install chromium chromium-driver; "
                    "scripts/setup.sh installs them when run as root)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e '.[test]')")
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager must never fetch a browser or a driver
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars",
                "--force-device-scale-factor=1", f"--window-size={WIDTH},{HEIGHT}", "--lang=en-US", "--no-first-run"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)
    try:
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                               {"width": WIDTH, "height": HEIGHT, "deviceScaleFactor": 1, "mobile": False})
        yield driver
    finally:
        driver.quit()


def write_page(doc: dict, folder: Path, name: str = "report.html") -> Path:
    path = folder / name
    path.write_text(render_html(doc), encoding="utf-8")
    return path


def open_page(driver, path: Path, fragment: str = "") -> dict:
    """Load the page as a user would (file://); wait for the grids; return its timings in ms from navigation."""
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get("about:blank")
    driver.get(path.resolve().as_uri() + fragment)
    WebDriverWait(driver, 30).until(lambda d: d.execute_script(
        "return !!(window.qcompat && window.qcompat.ready) && performance.getEntriesByName('first-contentful-paint').length > 0"))
    return driver.execute_script("""
        const paint = {}; performance.getEntriesByType('paint').forEach(p => paint[p.name] = p.startTime);
        const nav = performance.getEntriesByType('navigation')[0] || {};
        return {fcp: paint['first-contentful-paint'], ready: window.qcompat.readyAt, build: window.qcompat.buildMs,
                dcl: nav.domContentLoadedEventEnd, errors: window.__errors || []};""")


def cell_element(driver, cell_id: str):
    from selenium.webdriver.common.by import By

    index = driver.execute_script("return window.qcompat.find(arguments[0])", cell_id)
    assert index >= 0, cell_id
    return driver.find_element(By.CSS_SELECTOR, f'td.x[data-i="{index}"]')


def wait_for(driver, script: str, timeout: float = 10):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(lambda d: d.execute_script(script))


def in_first_viewport(driver, css: str) -> dict:
    return driver.execute_script("""
        const el = document.querySelector(arguments[0]); if (!el) return null;
        const r = el.getBoundingClientRect();
        return {top: r.top, bottom: r.bottom, left: r.left, right: r.right, width: r.width, height: r.height, scrollY: window.scrollY};""", css)


def details_text(driver) -> str:
    from selenium.webdriver.common.by import By

    wait_for(driver, "return !document.getElementById('details').hidden")
    return driver.find_element(By.ID, "details").text


def js_errors(driver) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if e.get("level") == "SEVERE"]


def save_png(driver, path: Path, max_kb: int | None = None) -> Path:
    """A screenshot; with max_kb, quantized to a palette (Pillow) so a README image stays small."""
    png = driver.get_screenshot_as_png()
    if max_kb:
        try:
            from PIL import Image

            img = Image.open(io.BytesIO(png)).convert("RGB").quantize(colors=128, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
            buf = io.BytesIO()
            img.save(buf, format="PNG", optimize=True)
            png = buf.getvalue()
        except ImportError:
            pass
    path.write_bytes(png)
    if max_kb:
        assert len(png) < max_kb * 1024, f"{path}: {len(png) // 1024} KB"
    return path


def test_grid_first_then_a_click_shows_why_and_the_fix(browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    doc = synthetic_doc(3)
    page = write_page(doc, tmp_path)
    t = open_page(browser, page)
    print(f"synthetic {len(doc['cells'])} cells: first contentful paint {t['fcp']:.0f} ms, grids ready {t['ready']:.0f} ms")
    assert t["fcp"] < 2000 and t["ready"] < 2000, t
    # the first screen: the grid of the first model, its header, GPU columns and first rows, no scrolling
    grid = in_first_viewport(browser, "#grids table.grid")
    assert grid and grid["scrollY"] == 0 and 0 < grid["top"] < HEIGHT / 2, grid
    first_rows = browser.execute_script("""return Array.from(document.querySelectorAll('#grids table.grid')[0].tBodies[0].rows)
        .filter(r => r.getBoundingClientRect().bottom <= innerHeight).length""")
    assert first_rows >= 10, first_rows  # most of the model's 13 methods, on every target, in the first viewport
    heads = [th.text.split("\n")[0] for th in browser.find_elements(By.CSS_SELECTOR, "#grids section.model:first-child th.tg")]
    assert heads == ["cpu", "sm_70", "sm_75", "sm_80", "sm_86", "sm_89", "sm_90", "sm_120"]
    assert "T4" in browser.find_element(By.CSS_SELECTOR, "#grids th.tg[title^='sm_75']").text
    assert browser.find_element(By.CSS_SELECTOR, "#tab-cells").is_displayed() is False  # the flat list is not in front
    save_png(browser, tmp_path / "grid.png")

    # a failed cell, fixed by the tried fix: coloured, marked emulated, the fix in the cell
    failed = cell_element(browser, "tiny-llama-awq-bfloat16-vllm-sm_75")
    assert {"fail", "fixed", "ev-emulated"} <= set(failed.get_attribute("class").split())
    assert failed.text.replace("\n", " ") == "✗e→✓ fp16"
    failed.click()
    text = details_text(browser)
    assert "dtype-unsupported-by-gpu" in text
    assert "This GPU cannot run bfloat16: use dtype float16 (or float32)." in text
    assert "Bfloat16 is only supported on GPUs with compute capability of at least 8.0." in text
    assert EVIL in browser.find_element(By.CSS_SELECTOR, "#dbody pre.msg").text  # shown as text, never run
    assert "dtype=float16" in text and "fails as given; works with dtype=float16" in text  # the tried fix and its result
    assert '"max_model_len": 256' in text and "Traceback" in text and "h100" in text  # arguments, log tail, shard
    assert browser.execute_script("return window.__pwned") is None
    copy = [b for b in browser.find_elements(By.CSS_SELECTOR, "#dbody button.copy") if b.text == "Copy JSON"]
    assert copy, "no copy button for the engine arguments"
    assert any(b.text == "Copy as Python" for b in browser.find_elements(By.CSS_SELECTOR, "#dbody button.copy"))
    copy[0].click()
    wait_for(browser, "return Array.from(document.querySelectorAll('#dbody button.copy')).some(b => /Copied|Select/.test(b.textContent))")
    assert "cell=tiny-llama-awq-bfloat16-vllm-sm_75" in wait_for(browser, "return location.hash.includes('cell=') && location.hash")
    save_png(browser, tmp_path / "cell.png")

    def close():  # the panel covers the grid's right side; Esc closes it, as a user would
        browser.find_element(By.TAG_NAME, "body").send_keys(Keys.ESCAPE)
        wait_for(browser, "return document.getElementById('details').hidden")

    # a predicted cell and an inconclusive one explain themselves too
    close()
    cell_element(browser, "tiny-llama-gguf-f16-float16-vllm-sm_120").click()
    text = details_text(browser)
    assert "predicted to fail" in text and "quant-method-unknown" in text and "knowledge.py facts" in text
    close()
    cell_element(browser, "tiny-llama-awq-float16-vllm-sm_89").click()
    text = details_text(browser)
    assert "inconclusive" in text and "emulation artifact" in text and "no-kernel-image" in text
    close()
    # a passed cell: metrics (also keys this page does not know) and the output, as text
    cell_element(browser, "tiny-llama-none-float16-vllm-sm_90").click()
    text = details_text(browser)
    assert "decode_tokens_per_s" in text and "token agreement 0.75" in text and f"Paris {EVIL}" in text
    assert browser.execute_script("return window.__pwned") is None
    assert not js_errors(browser)


def test_search_model_picker_engines_and_layouts(browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    open_page(browser, write_page(synthetic_doc(3), tmp_path))
    q = browser.find_element(By.ID, "q")

    def grid_axes():
        wait_for(browser, "return document.querySelector('#grids').dataset.q === document.querySelector('#q').value.trim()")
        return browser.execute_script("""const s = document.querySelector('#grids section.model'); if (!s) return null;
            return {model: s.dataset.model, targets: Array.from(s.querySelectorAll('th.tg b'), b => b.textContent),
                    methods: Array.from(s.querySelectorAll('tbody th.m'), th => th.firstChild.textContent),
                    dtypes: Array.from(new Set(Array.from(s.querySelectorAll('thead tr.d th'), th => th.title))),
                    lit: s.querySelectorAll('td.x:not(.dim)').length, dim: s.querySelectorAll('td.x.dim').length,
                    sections: document.querySelectorAll('#grids section.model').length}""")

    q.send_keys("t4 awq")  # a GPU by its name and a method: the answer to "does AWQ work on a T4?"
    axes = grid_axes()
    assert axes["targets"] == ["sm_75"] and axes["methods"] == ["awq"] and axes["sections"] == 3
    q.clear()
    q.send_keys("model-002 bf16 quant-capability")  # a model, a dtype and free text (dims the rest)
    axes = grid_axes()
    assert axes["model"] == "model-002" and axes["sections"] == 1 and axes["dtypes"] == ["bfloat16"]
    # fp8 in bfloat16 fails for its GPU on sm_70, sm_80 and sm_86 (on sm_75 bfloat16 fails first); the rest is dimmed
    assert axes["methods"] == ["fp8"] and axes["lit"] == 3 and axes["dim"] == 5
    q.clear()
    q.send_keys(" ")
    Select(browser.find_element(By.ID, "model")).select_by_visible_text("model-001")
    axes = grid_axes()
    assert axes["sections"] == 1 and axes["model"] == "model-001"
    browser.find_element(By.CSS_SELECTOR, "#engines button[data-engine='transformers']").click()
    assert "on transformers" in browser.find_element(By.CSS_SELECTOR, "#grids section.model h2").text
    browser.find_element(By.CSS_SELECTOR, "#layout button[data-layout='detailed']").click()
    cell = cell_element(browser, "model-001-fp8-float32-transformers-sm_70")
    assert cell.text == "✗e quant-capability"  # the detailed layout names the failure class in the cell
    wait_for(browser, "return location.hash.includes('layout=detailed') && location.hash.includes('model=model-001')")  # a link to this view
    save_png(browser, tmp_path / "detailed.png")
    assert not js_errors(browser)


def test_flat_list_sorts_filters_and_opens_details(browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    doc = synthetic_doc(2)
    open_page(browser, write_page(doc, tmp_path))
    browser.find_element(By.CSS_SELECTOR, ".tabs button[data-tab='cells']").click()
    assert browser.find_element(By.ID, "lcount").text == f"{len(doc['cells'])} of {len(doc['cells'])} cells"
    rows = browser.find_elements(By.CSS_SELECTOR, "#lbody .lrow")
    assert 0 < len(rows) < 80  # only the rows in view exist
    assert max(r.size["height"] for r in rows) <= 30  # one line each: no JSON squeezed into a column
    Select(browser.find_element(By.ID, "lo")).select_by_value("fixed")
    wait_for(browser, "return document.getElementById('lcount').textContent.startsWith('52 of')")  # 13 methods x 2 engines x 2 models
    browser.find_element(By.CSS_SELECTOR, "#lhead span[data-col='9']").click()  # tok/s, fastest first
    Select(browser.find_element(By.ID, "lo")).select_by_value("ok")
    time.sleep(0.4)
    speeds = [float(r.text) for r in browser.find_elements(By.CSS_SELECTOR, "#lbody .lrow span:nth-child(10)")[:10] if r.text]
    assert speeds and speeds == sorted(speeds, reverse=True)
    browser.find_elements(By.CSS_SELECTOR, "#lbody .lrow")[0].click()
    assert "loads and generates" in details_text(browser)
    browser.find_element(By.CSS_SELECTOR, ".tabs button[data-tab='perf']").click()
    bars = browser.find_elements(By.CSS_SELECTOR, "#perf td.bar")
    assert bars, "no speed/memory bars"
    save_png(browser, tmp_path / "perf.png")
    assert not js_errors(browser)


def test_twenty_thousand_cells_stay_usable(browser, tmp_path):
    from selenium.webdriver.common.by import By

    page = write_page(synthetic_20k(), tmp_path)
    t0 = time.perf_counter()
    t = open_page(browser, page)
    load_s = time.perf_counter() - t0
    print(f"20,000 cells ({page.stat().st_size / 1e6:.1f} MB): first contentful paint {t['fcp']:.0f} ms, grids ready {t['ready']:.0f} ms "
          f"(script {t['build']:.0f} ms), loaded in {load_s:.1f} s")
    assert t["fcp"] < 2500 and t["ready"] < 4000, t
    assert in_first_viewport(browser, "#grids table.grid")["top"] < HEIGHT / 2
    # the grids below are built when scrolled to, not up front
    built = browser.execute_script("return document.querySelectorAll('#grids .gridbox.done').length")
    assert built < 10, built
    t1 = time.perf_counter()
    cell_element(browser, "tiny-llama-awq-bfloat16-vllm-sm_75").click()
    assert "dtype-unsupported-by-gpu" in details_text(browser)
    browser.find_element(By.ID, "dclose").click()
    browser.find_element(By.CSS_SELECTOR, ".tabs button[data-tab='cells']").click()
    assert browser.find_element(By.ID, "lcount").text == "20000 of 20000 cells"
    browser.execute_script("document.getElementById('list').scrollTop = 300000")
    wait_for(browser, "return document.querySelector('#lbody .lrow') && +document.querySelector('#lbody .lrow').style.top.replace('px','') > 250000")
    click_s = time.perf_counter() - t1
    assert click_s < 5, click_s
    save_png(browser, tmp_path / "list-20k.png")
    assert not js_errors(browser)


def test_published_report(browser, tmp_path):
    """docs/compatibility.json as published: the first screen answers "what works where" for a model."""
    from selenium.webdriver.common.by import By

    source = ROOT / "docs" / "compatibility.json"
    if not source.exists():
        pytest.skip("no docs/compatibility.json")
    doc = json.loads(source.read_text(encoding="utf-8"))
    page = write_page(doc, tmp_path, "compatibility.html")
    t = open_page(browser, page)
    print(f"published report ({len(doc['cells'])} cells): first contentful paint {t['fcp']:.0f} ms, grids ready {t['ready']:.0f} ms")
    assert t["fcp"] < 2000 and t["ready"] < 2000, t
    first = browser.find_element(By.CSS_SELECTOR, "#grids section.model")
    assert first.get_attribute("data-model") == doc["cells"][0]["model"]
    grid = in_first_viewport(browser, "#grids table.grid")
    assert grid["top"] < HEIGHT / 2 and grid["bottom"] < HEIGHT + 60, grid  # the whole first grid, give or take its last row
    shots = Path(os.environ["QCOMPAT_SCREENSHOTS"]) if os.environ.get("QCOMPAT_SCREENSHOTS") else tmp_path
    shots.mkdir(parents=True, exist_ok=True)
    save_png(browser, shots / "grid.png", max_kb=300)
    # the README's example: vLLM refuses bfloat16 on an emulated T4; float16, the tried fix, works
    cells = {c["id"]: c for c in doc["cells"]}
    target = cells.get("tiny-llama-none-bfloat16-vllm-sm_75") or next(
        c for c in doc["cells"] if c["status"] == "failed" and (c.get("retry") or {}).get("status") == "passed")
    browser.find_element(By.CSS_SELECTOR, f"#engines button[data-engine='{target['engine']}']").click()
    cell_element(browser, target["id"]).click()
    text = details_text(browser)
    assert target["error_class"] in text and (target.get("hint") or "") in text and "Tried fix".upper() in text.upper()
    save_png(browser, shots / "cell.png", max_kb=300)
    assert not js_errors(browser)
