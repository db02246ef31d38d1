(function () {
  "use strict";
  // pytest-qcompat report page. Everything below reads the records embedded in #qc-data; text from a record is
  // only ever inserted through esc() (or as textContent), because model output and engine messages are untrusted.
  const T0 = performance.now();
  const $ = (sel, root) => (root || document).querySelector(sel);
  const D = JSON.parse(document.getElementById("qc-data").content.textContent);
  const C = D.cells, M = D.meta || {};
  const TNAMES = M.targets || {}, MNOTES = M.methods || {};
  const SEP = "\u001f";
  const ESC = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };
  const esc = s => (s === null || s === undefined) ? "" : String(s).replace(/[&<>"']/g, ch => ESC[ch]);
  const FAIL = { failed: 1, crashed: 1, timed_out: 1 };
  const SYM = { ok: "✓", fail: "✗", unsure: "?", notrun: "–" };
  const WORD = { ok: "works", fail: "fails", unsure: "inconclusive", notrun: "not run" };
  const RANK = { ok: 0, fail: 1, unsure: 2, notrun: 3 };
  const MARK = { emulated: "<sup>e</sup>", predicted: "<sup>p</sup>" };
  const EVWORD = { verified: "verified on a real GPU", emulated: "emulated on a newer GPU", predicted: "predicted, not run", none: "not run" };
  // A cpu cell ran on the runner's CPU, not on any GPU.
  function evWord(c, ev) { return ev === "verified" && c.target === "cpu" ? "verified on the runner's CPU" + (c.isa ? " (" + c.isa + ")" : "") : EVWORD[ev]; }
  // Who wrote the message (report/html.py message_author): the engine's verbatim text, or qcompat's own words.
  const SAID = { engine: "The engine said (verbatim)", qcompat: "qcompat says (its own message, not the engine's)" };
  const SHORT = { bfloat16: "bf16", float16: "fp16", float32: "fp32", bitsandbytes: "bnb" };

  // ---- what a cell says ------------------------------------------------------------------------------------
  const J = new Array(C.length);
  function judge(i) {
    if (J[i]) return J[i];
    const c = C[i], st = c.status, p = c.prediction;
    let o, ev, cls = null, label = null;
    if (st === "skipped") {
      if (!p) { o = "notrun"; ev = "none"; }
      else { ev = "predicted"; o = p.status === "passed" ? "ok" : FAIL[p.status] ? "fail" : "unsure"; cls = p.error_class || null; }
    } else {
      ev = (c.evidence === "emulated" || c.evidence === "verified") ? c.evidence : "verified";
      o = st === "passed" ? "ok" : FAIL[st] ? "fail" : "unsure";
      cls = c.error_class || null;
    }
    label = cls;
    const deg = st === "passed" && c.quality === "degraded";  // works; quality lost against the unquantized base
    if (deg) label = "degraded";
    if (st === "skipped" && !p && c.reason_code === "not-run") label = "not run";  // never started: not "cannot run"
    if (o === "unsure" && c.reason) {  // "emulation artifact: ...", "runner problem: ..." -> its first clause
      const head = String(c.reason).split(/[:;(]/)[0].trim();
      label = head.length && head.length <= 40 ? head : (cls || "inconclusive");
    }
    let fix = null;
    const r = c.retry;
    // a retry that ran is "ok" only if the matrix's own (judged) cell for the change did not fail (judged_by)
    const judged = (r && r.judged_by) || {};
    if (o === "fail" && ev !== "predicted" && r && r.status)
      fix = { ok: r.status === "passed" && judged.status !== "failed" && judged.status !== "crashed", label: fixLabel(r.changes) };
    return (J[i] = { o, ev, cls, deg, label: label || (o === "unsure" ? "inconclusive" : null), fix });
  }
  function short(v) { return SHORT[v] || (typeof v === "object" ? JSON.stringify(v) : String(v)); }
  function fixLabel(ch) {
    if (!ch || typeof ch !== "object") return "";
    return Array.from(new Set(Object.keys(ch).map(k => short(ch[k])))).join(" + ");
  }
  function changesText(ch) {
    if (!ch || typeof ch !== "object") return "";
    return Object.keys(ch).map(k => k + "=" + (typeof ch[k] === "object" ? JSON.stringify(ch[k]) : ch[k])).join(", ");
  }
  function tip(i) {
    const c = C[i], j = judge(i), p = c.prediction;
    const lines = [SYM[j.o] + " " + WORD[j.o] + " · " + evWord(c, j.ev) + (j.cls ? " · " + j.cls : "")];
    if (j.o === "unsure" && c.reason) lines.push(c.reason);
    else if (j.ev === "predicted" && p) lines.push(p.reason || "");
    else if (j.o === "notrun") lines.push(c.reason || "");
    else if (c.hint) lines.push(c.hint);
    if (j.fix) lines.push("→ tried " + changesText(c.retry.changes) + ": " + c.retry.status);
    lines.push(c.dtype + " · " + c.quantization + " · " + c.engine + " · " + c.target + " — click for details");
    return lines.filter(Boolean).join("\n");
  }
  const HAY = new Array(C.length);
  function hay(i) {
    if (HAY[i] !== undefined) return HAY[i];
    const c = C[i], j = judge(i), p = c.prediction || {}, r = c.retry || {};
    return (HAY[i] = [c.id, c.status, j.ev, WORD[j.o], j.cls, j.fix && j.fix.ok ? "fixed" : "", c.hint, c.message, c.reason,
      p.reason, p.error_class, r.summary, c.shard, c.engine_version].filter(Boolean).join(" ").toLowerCase());
  }

  // ---- axes and index --------------------------------------------------------------------------------------
  const models = [], engines = [], allTargets = new Set(), allDtypes = new Set(), allMethods = new Set();
  const groups = new Map(), engineCells = new Map(), engineRun = new Map(), byId = new Map();
  for (let i = 0; i < C.length; i++) {
    const c = C[i], key = c.model + SEP + c.engine;
    let g = groups.get(key);
    if (!g) {
      g = []; groups.set(key, g);
      if (!models.includes(c.model)) models.push(c.model);
      if (!engines.includes(c.engine)) engines.push(c.engine);
    }
    g.push(i);
    allTargets.add(c.target); allDtypes.add(c.dtype); allMethods.add(c.quantization);
    engineCells.set(c.engine, (engineCells.get(c.engine) || 0) + 1);
    if (c.status !== "skipped") engineRun.set(c.engine, (engineRun.get(c.engine) || 0) + 1);
    byId.set(c.id, i);
  }
  const order = (list, known) => (a, b) => {
    const x = known.indexOf(a), y = known.indexOf(b);
    return (x < 0 ? 1e6 + list.indexOf(a) : x) - (y < 0 ? 1e6 + list.indexOf(b) : y);
  };
  const methodList = Array.from(allMethods), dtypeList = Array.from(allDtypes);
  const byMethod = order(methodList, M.methodOrder || []), byDtype = order(dtypeList, M.dtypeOrder || []);
  function targetKey(t) {
    if (t === "cpu") return -1;
    const m = /^sm_(\d+)$/.exec(t);
    return m ? parseInt(m[1], 10) : 1e6;
  }
  const byTarget = (a, b) => targetKey(a) - targetKey(b) || String(a).localeCompare(String(b));
  methodList.sort(byMethod); dtypeList.sort(byDtype);
  const targetList = Array.from(allTargets).sort(byTarget);
  const targetWords = {};
  for (const t of targetList) {
    const w = [String(t).toLowerCase()];
    String(TNAMES[t] || "").toLowerCase().split(/[^a-z0-9]+/).forEach(x => x && w.push(x));
    const m = /^sm_(\d)(\d+)$/.exec(t);
    if (m) w.push(m[1] + "." + m[2], "sm" + m[1] + m[2]);
    targetWords[t] = w;
  }
  const dtypeWords = {};
  for (const d of dtypeList) dtypeWords[d] = [d, SHORT[d] || d].concat(d === "float16" ? ["half"] : []);

  // ---- state (kept in the URL's #fragment, so a view or a cell can be linked) -----------------------------
  const defaultEngine = engines.slice().sort((a, b) => (engineRun.get(b) || 0) - (engineRun.get(a) || 0) || engines.indexOf(a) - engines.indexOf(b))[0];
  const S = { tab: "grid", engine: defaultEngine, model: "", q: "", layout: "compact", dtOff: new Set(), cell: null };
  function readHash() {
    const h = new URLSearchParams(location.hash.slice(1));
    if (h.get("tab")) S.tab = h.get("tab");
    if (h.get("engine") && engines.includes(h.get("engine"))) S.engine = h.get("engine");
    if (h.has("model")) S.model = models.includes(h.get("model")) ? h.get("model") : "";
    if (h.has("q")) S.q = h.get("q");
    if (h.get("layout")) S.layout = h.get("layout") === "detailed" ? "detailed" : "compact";
    S.cell = h.get("cell") && byId.has(h.get("cell")) ? byId.get(h.get("cell")) : null;
    $("#q").value = S.q;
    if (S.cell !== null && !h.get("engine")) S.engine = C[S.cell].engine;
  }
  let hashTimer = 0, qt = 0;
  function writeHash() {
    clearTimeout(hashTimer);
    hashTimer = setTimeout(() => {
      const h = new URLSearchParams();
      if (S.tab !== "grid") h.set("tab", S.tab);
      if (S.engine !== defaultEngine) h.set("engine", S.engine);
      if (S.model) h.set("model", S.model);
      if (S.q) h.set("q", S.q);
      if (S.layout !== "compact") h.set("layout", S.layout);
      if (S.cell !== null) h.set("cell", C[S.cell].id);
      const s = h.toString();
      try { history.replaceState(null, "", s ? "#" + s : location.pathname + location.search); } catch (e) { /* file:// in some browsers */ }
    }, 150);
  }

  // ---- search: words that name a target, dtype, method or model narrow that axis; other words match text --
  function parseQuery(q) {
    const F = { targets: null, dtypes: null, methods: null, models: null, text: [] };
    const add = (k, vals) => { F[k] = F[k] || new Set(); vals.forEach(v => F[k].add(v)); };
    for (const tok of q.toLowerCase().split(/\s+/).filter(Boolean)) {
      if (engines.some(e => String(e).toLowerCase() === tok)) continue;
      let hit = tok.length < 2 ? [] : targetList.filter(t => targetWords[t].some(w => w.startsWith(tok)));
      if (hit.length) { add("targets", hit); continue; }
      hit = tok.length < 2 ? [] : dtypeList.filter(d => dtypeWords[d].some(w => w.startsWith(tok)));
      if (hit.length) { add("dtypes", hit); continue; }
      hit = tok.length < 2 ? [] : methodList.filter(m => String(m).toLowerCase().includes(tok));
      if (hit.length) { add("methods", hit); continue; }
      hit = tok.length < 2 ? [] : models.filter(m => String(m).toLowerCase().includes(tok));
      if (hit.length) { add("models", hit); continue; }
      F.text.push(tok);
    }
    return F;
  }
  const textMatch = (i, words) => { const h = hay(i); return words.every(w => h.includes(w)); };

  // ---- grids -----------------------------------------------------------------------------------------------
  function build(model, engine, F) {
    const idx = groups.get(model + SEP + engine);
    if (!idx) return null;
    const at = new Map(), ms = new Set(), ts = new Set(), ds = new Set();
    for (const i of idx) {
      const c = C[i];
      at.set(c.quantization + SEP + c.dtype + SEP + c.target, i);
      ms.add(c.quantization); ts.add(c.target); ds.add(c.dtype);
    }
    let methods = Array.from(ms).sort(byMethod), targets = Array.from(ts).sort(byTarget), dtypes = Array.from(ds).sort(byDtype);
    if (F.methods) methods = methods.filter(m => F.methods.has(m));
    if (F.targets) targets = targets.filter(t => F.targets.has(t));
    if (F.dtypes) dtypes = dtypes.filter(d => F.dtypes.has(d));
    dtypes = dtypes.filter(d => !S.dtOff.has(d));
    const g = { model, engine, at, methods, targets, dtypes, match: null, counts: { ok: 0, fail: 0, unsure: 0, notrun: 0, fixed: 0 }, n: 0 };
    if (F.text.length) g.match = new Set();
    const rowsKeep = new Set();
    for (const m of methods) for (const d of dtypes) for (const t of targets) {
      const i = at.get(m + SEP + d + SEP + t);
      if (i === undefined) continue;
      if (g.match) { if (!textMatch(i, F.text)) continue; g.match.add(i); }
      rowsKeep.add(m + SEP + d);
      const j = judge(i);
      g.counts[j.o]++; g.n++;
      if (j.fix && j.fix.ok) g.counts.fixed++;
    }
    if (g.match) {
      g.methods = methods.filter(m => dtypes.some(d => rowsKeep.has(m + SEP + d)));
      g.rows = rowsKeep;
    }
    return g;
  }
  function td(g, i, first) {
    const gs = first ? " gs" : "";
    if (i === undefined) return '<td class="empty' + gs + '"></td>';
    const j = judge(i), mark = MARK[j.ev] || "";
    let cls = "x " + j.o + " ev-" + j.ev + gs;
    if (j.fix) cls += j.fix.ok ? " tried fixed" : " tried";
    if (j.deg) cls += " deg";
    if (g.match && !g.match.has(i)) cls += " dim";
    if (i === S.cell) cls += " sel";
    let inner;
    if (S.layout === "detailed") {
      inner = '<span class="sym">' + SYM[j.o] + mark + "</span>" + ((j.o !== "ok" || j.deg) && j.label ? ' <span class="cls">' + esc(j.label) + "</span>" : "")
        + (j.fix ? '<span class="fx' + (j.fix.ok ? "" : " bad") + '">→ ' + (j.fix.ok ? "✓ " : "✗ ") + esc(j.fix.label) + "</span>" : "");
    } else if (j.fix) {
      inner = '<span class="sym">✗' + mark + "→" + (j.fix.ok ? "✓" : "✗") + '</span><span class="fx' + (j.fix.ok ? "" : " bad") + '">' + esc(j.fix.label) + "</span>";
    } else {
      inner = '<span class="sym">' + SYM[j.o] + mark + "</span>";
    }
    return '<td class="' + cls + '" data-i="' + i + '" tabindex="0" title="' + esc(tip(i)) + '">' + inner + "</td>";
  }
  function gridHTML(g) {
    const nd = g.dtypes.length, det = S.layout === "detailed";
    if (!g.methods.length || !g.targets.length || !nd) return '<p class="none">Nothing matches here.</p>';
    const cap = det ? 230 + g.targets.length * 210 : 190 + g.targets.length * nd * 84;
    let h = '<table class="grid ' + S.layout + (!det && g.targets.length * nd > 21 ? " many" : "") + '" style="max-width:' + cap + 'px"><colgroup><col class="cm">' + (det ? '<col class="cd">' : "")
      + "<col>".repeat(det ? g.targets.length : g.targets.length * nd) + "</colgroup><thead><tr class=\"t\">";
    h += det ? '<th class="corner">method</th><th class="corner">dtype</th>' : '<th class="corner" rowspan="2">method</th>';
    for (const t of g.targets) {
      h += '<th class="tg gs"' + (det ? "" : ' colspan="' + nd + '"') + ' title="' + esc(t + (TNAMES[t] ? " · " + TNAMES[t] : "")) + '"><b>'
        + esc(t) + "</b><span>" + esc(TNAMES[t] || "") + "</span></th>";
    }
    h += "</tr>";
    if (!det) {
      h += '<tr class="d">';
      for (let k = 0; k < g.targets.length; k++) g.dtypes.forEach((d, n) => { h += "<th" + (n === 0 ? ' class="gs"' : "") + ' title="' + esc(d) + '">' + esc(SHORT[d] || d) + "</th>"; });
      h += "</tr>";
    }
    h += "</thead><tbody>";
    for (const m of g.methods) {
      const note = MNOTES[m] ? "<small>" + esc(MNOTES[m]) + "</small>" : "";
      if (!det) {
        h += '<tr><th class="m" title="' + esc(m + (MNOTES[m] ? ": " + MNOTES[m] : "")) + '">' + esc(m) + note + "</th>";
        for (const t of g.targets) g.dtypes.forEach((d, n) => { h += td(g, g.at.get(m + SEP + d + SEP + t), n === 0); });
        h += "</tr>";
        continue;
      }
      const ds = g.rows ? g.dtypes.filter(d => g.rows.has(m + SEP + d)) : g.dtypes;
      ds.forEach((d, n) => {
        h += '<tr class="' + (n === 0 ? "m0" : "") + '">';
        if (n === 0) h += '<th class="m" rowspan="' + ds.length + '" title="' + esc(m + (MNOTES[m] ? ": " + MNOTES[m] : "")) + '">' + esc(m) + note + "</th>";
        h += '<th class="dt">' + esc(d) + "</th>";
        g.targets.forEach((t, k) => { h += td(g, g.at.get(m + SEP + d + SEP + t), k === 0); });
        h += "</tr>";
      });
    }
    return h + "</tbody></table>";
  }
  function countsHTML(n) {
    const parts = ['<span class="ok"><b>' + n.ok + "</b> ✓</span>", '<span class="fail"><b>' + n.fail + "</b> ✗"
      + (n.fixed ? " (" + n.fixed + " →✓)" : "") + "</span>"];
    if (n.unsure) parts.push('<span class="unsure"><b>' + n.unsure + "</b> ?</span>");
    if (n.notrun) parts.push("<span><b>" + n.notrun + "</b> not run</span>");
    return parts.join(" · ");
  }
  let observer = null, built = new Map();
  function renderGrids() {
    const F = parseQuery(S.q), host = $("#grids");
    if (observer) observer.disconnect();
    built = new Map();
    const list = S.model ? [S.model] : models;
    const missing = [];
    let html = "", sections = 0, cells = 0, first = [];
    for (const m of list) {
      if (F.models && !F.models.has(m)) continue;
      const g = build(m, S.engine, F);
      if (!g) { missing.push(m); continue; }
      if (!g.n && (F.text.length || F.methods || F.targets || F.dtypes)) continue;
      built.set(m, g);
      sections++; cells += g.n;
      const others = engines.filter(e => e !== S.engine && groups.has(m + SEP + e));
      const rows = S.layout === "detailed" ? g.methods.length * Math.max(g.dtypes.length, 1) : g.methods.length;
      html += '<section class="model" data-model="' + esc(m) + '"><h2>' + esc(m) + ' <span class="eng">on ' + esc(S.engine) + "</span>"
        + '<span class="counts">' + countsHTML(g.counts) + "</span>"
        + (others.length ? '<span class="counts">also on: ' + others.map(e => '<a href="#" data-engine="' + esc(e) + '">' + esc(e) + "</a>").join(", ") + "</span>" : "")
        + '</h2><div class="gridbox" data-model="' + esc(m) + '"><div class="placeholder" style="height:' + (rows * 32 + 80) + 'px"></div></div></section>';
      if (first.length < 2) first.push(m);
    }
    if (missing.length && !S.model) html += '<p class="muted">No cells on ' + esc(S.engine) + " for " + missing.map(esc).join(", ") + ".</p>";
    if (!sections) html = '<p class="muted" id="nomatch">' + (missing.length && S.model ? esc(S.model) + " has no cells on " + esc(S.engine) + "." : "Nothing matches “" + esc(S.q) + "” on " + esc(S.engine) + ".") + "</p>" + html;
    host.innerHTML = html;
    host.dataset.q = S.q;
    $("#shown").textContent = S.q || S.dtOff.size ? sections + (sections === 1 ? " model · " : " models · ") + cells + " cells" + (S.q ? " match" : "") : "";
    first.forEach(m => fill(host.querySelector('.gridbox[data-model="' + cssq(m) + '"]')));
    const rest = host.querySelectorAll(".gridbox:not(.done)");
    if (!rest.length) return;
    if ("IntersectionObserver" in window) {
      observer = new IntersectionObserver(es => es.forEach(e => { if (e.isIntersecting) { observer.unobserve(e.target); fill(e.target); } }), { rootMargin: "900px 0px" });
      rest.forEach(el => observer.observe(el));
    } else rest.forEach(fill);
  }
  const cssq = s => String(s).replace(/["\\]/g, "\\$&");
  function fill(box) {
    if (!box || box.classList.contains("done")) return;
    const g = built.get(box.dataset.model);
    if (!g) return;
    box.innerHTML = gridHTML(g);
    box.classList.add("done");
  }
  function renderAll() {
    clearTimeout(qt);
    S.q = $("#q").value.trim();  // the search box is the source of truth (readHash writes it)
    renderEngines();
    renderGrids();
    document.querySelectorAll("table.summary tr[data-engine]").forEach(tr => tr.classList.toggle("current", tr.dataset.engine === S.engine));
    writeHash();
  }
  function renderEngines() {
    $("#engines").innerHTML = engines.map(e => '<button data-engine="' + esc(e) + '" aria-pressed="' + (e === S.engine) + '" title="'
      + (engineRun.get(e) || 0) + " of " + engineCells.get(e) + ' cells ran">' + esc(e) + "</button>").join("");
    $("#dtypes").innerHTML = dtypeList.map(d => '<button data-dtype="' + esc(d) + '" aria-pressed="' + !S.dtOff.has(d) + '" title="show ' + esc(d) + '">' + esc(SHORT[d] || d) + "</button>").join("");
    $("#layout").querySelectorAll("button").forEach(b => b.setAttribute("aria-pressed", String(b.dataset.layout === S.layout)));
    $("#model").value = S.model;
  }

  // ---- details of one cell ---------------------------------------------------------------------------------
  const KNOWN = new Set(["id", "model", "dtype", "quantization", "engine", "target", "status", "evidence", "error_class", "hint", "message",
    "reason", "prediction", "metrics", "outputs", "engine_kind", "engine_version", "engine_args", "retry", "stderr_tail", "log", "runner",
    "finished_at", "resumed_from", "shard", "xdist_worker", "merged_from", "superseded", "reclassified_from", "rejudged_from", "said_by"]);
  const copies = [];
  function copyButton(text, label) {
    copies.push(text);
    return '<button class="copy" data-copy="' + (copies.length - 1) + '">' + esc(label || "Copy") + "</button>";
  }
  function sec(title, body, extra) { return "<h4>" + esc(title) + (extra || "") + "</h4>" + body; }
  function val(v) {
    if (v === null || v === undefined) return '<span class="muted">—</span>';
    if (typeof v === "object") return "<pre>" + esc(JSON.stringify(v, null, 2)) + "</pre>";
    return esc(v);
  }
  function unit(k, v) {
    if (typeof v !== "number") return val(v);
    const s = Math.abs(v) >= 100 ? v.toFixed(1) : String(+v.toPrecision(4));
    if (/tokens_per_s$/.test(k)) return esc(s) + " tok/s";
    if (/_s$/.test(k)) return esc(s) + " s";
    if (/_mb$/.test(k)) return esc(s) + " MB";
    return esc(s);
  }
  function kv(obj, fmt) {
    const keys = Object.keys(obj || {});
    if (!keys.length) return "";
    return '<table class="kv"><tbody>' + keys.map(k => "<tr><th>" + esc(k) + "</th><td>" + (fmt ? fmt(k, obj[k]) : val(obj[k])) + "</td></tr>").join("") + "</tbody></table>";
  }
  function pyRepr(v) {
    if (v === null || v === undefined) return "None";
    if (v === true) return "True";
    if (v === false) return "False";
    if (typeof v === "number") return String(v);
    if (typeof v === "string") return JSON.stringify(v);
    if (Array.isArray(v)) return "[" + v.map(pyRepr).join(", ") + "]";
    return "{" + Object.keys(v).map(k => JSON.stringify(k) + ": " + pyRepr(v[k])).join(", ") + "}";
  }
  function pyCall(args) {
    const call = args && args.call;
    if (typeof call !== "string" || !/^[\w.]+$/.test(call)) return null;
    const parts = call.split("."), lines = [];
    let head = parts[0];
    if (/^[a-z_]/.test(head) && parts.length > 1) lines.push("from " + parts.slice(0, -1).join(".") + " import " + parts[parts.length - 1], "");
    else if (/^Auto/.test(head)) lines.push("from transformers import " + head, "");
    const fn = /^[a-z_]/.test(head) && parts.length > 1 ? parts[parts.length - 1] : call;
    const pos = [], kw = [], odd = {};
    for (const k of Object.keys(args)) {
      if (k === "call") continue;
      if (k === "path") pos.push("    " + pyRepr(args[k]) + ",");
      else if (/^[A-Za-z_]\w*$/.test(k)) kw.push("    " + k + "=" + pyRepr(args[k]) + ",");
      else odd[k] = args[k];
    }
    if (Object.keys(odd).length) kw.push("    **" + pyRepr(odd) + ",");
    lines.push(fn + "(", ...pos, ...kw, ")");
    return lines.join("\n");
  }
  function argsBlock(args, what) {
    const json = JSON.stringify(args, null, 2), py = pyCall(args);
    return sec(what, "<pre class=\"args\">" + esc(json) + "</pre>", " " + copyButton(json, "Copy JSON") + (py ? " " + copyButton(py, "Copy as Python") : ""));
  }
  function shardOf(c) {
    const list = M.shards || [];
    return list.find(s => (s.shard || "") === (c.shard || "")) || (list.length === 1 ? list[0] : null);
  }
  function details(i) {
    copies.length = 0;
    const c = C[i], j = judge(i), p = c.prediction, r = c.retry, met = c.metrics || {};
    let h = '<div class="verdict"><span class="x ' + j.o + " ev-" + j.ev + (j.fix && j.fix.ok ? " fixed" : "") + '">' + SYM[j.o] + (MARK[j.ev] || "") + "</span>"
      + '<div class="what"><b>' + WORD[j.o] + "</b> · " + esc(evWord(c, j.ev)) + " · status <code>" + esc(c.status) + "</code>"
      + "<small>" + [c.model, c.quantization, c.dtype, c.engine, c.target + (TNAMES[c.target] ? " (" + TNAMES[c.target] + ")" : "")].map(esc).join(" · ") + "</small></div></div>";
    // why
    let why = "";
    if (j.ev === "predicted") {
      why = '<div class="why ' + j.o + '"><div>predicted to <b>' + (j.o === "ok" ? "work" : j.o === "fail" ? "fail" : "be undecidable") + "</b>"
        + (p.error_class ? ': <span class="cls">' + esc(p.error_class) + "</span>" : "") + "</div><p>" + esc(p.reason || "") + "</p>"
        + (c.hint ? "<p>" + esc(c.hint) + "</p>" : "") + '<p class="muted">source: ' + esc(p.source || "?") + "</p>"
        + (c.reason ? '<p class="muted">not run: ' + esc(c.reason) + "</p>" : "") + "</div>";
    } else if (j.o === "notrun") {
      why = '<div class="why notrun"><div><b>not run</b></div><p>' + esc(c.reason || "no reason recorded") + "</p></div>";
    } else if (j.o === "unsure") {
      const u = met.undecided || {};
      why = '<div class="why unsure"><div><b>inconclusive</b>' + (c.error_class ? ': <span class="cls">' + esc(c.error_class) + "</span>" : "") + "</div>"
        + "<p>" + esc(c.reason || "the run could not decide this cell") + "</p>"
        + (u.status ? '<p class="muted">the run itself: ' + esc(u.status) + (u.error_class ? " (" + esc(u.error_class) + ")" : "") + "</p>" : "")
        + (c.hint ? "<p>" + esc(c.hint) + "</p>" : "") + "</div>";
    } else if (j.o === "fail") {
      why = '<div class="why fail"><div><span class="cls">' + esc(c.error_class || "unknown") + "</span>"
        + (c.reclassified_from ? ' <span class="muted">(was ' + esc(c.reclassified_from) + ")</span>" : "")
        + (c.rejudged_from ? ' <span class="muted">(recorded as ' + esc(c.rejudged_from.status)
           + (c.rejudged_from.quality ? ", quality " + esc(c.rejudged_from.quality) : "") + "; re-judged from its stored scores)</span>" : "")
        + "</div><p>" + esc(c.hint || "no hint for this class") + "</p></div>";
    } else {
      const ref = met.vs_reference, q = met.quality || {}, same = met.same_artifact;
      why = '<div class="why ok"><div><b>loads and generates</b>' + (c.quality ? " · quality <b>" + esc(c.quality) + "</b>" : "")
        + (ref && ref.reference ? ' <span class="muted">· compared with ' + esc(ref.reference) + "</span>" : "") + "</div>"
        + ((q.reasons || []).length ? "<p>lost against the unquantized base: " + esc(q.reasons.join("; ")) + "</p>" : "")
        + (ref ? "<p>token agreement " + esc(ref.agreement) + " · top-5 at divergence " + esc(ref.topk_ok)
          + (q.kl_topk !== undefined ? " · KL " + esc(q.kl_topk) : "") + (q.ppl !== undefined ? " · perplexity " + esc(q.ppl) + " (base " + esc(q.ppl_base) + ")" : "") + "</p>" : "")
        + (same ? "<p>same checkpoint in " + esc(same.reference) + ": " + (same.checked ? "agrees (token agreement " + esc(same.agreement) + ")" : "not checked: " + esc(same.reason || "")) + "</p>" : "")
        + "</div>";
    }
    h += why;
    if (r) {  // the tried fix right under the why: how to make the cell work
      const ok = r.status === "passed", fixed = r.engine_args ? JSON.stringify(r.engine_args, null, 2) : null, py = r.engine_args ? pyCall(r.engine_args) : null;
      h += sec("Tried fix", '<div class="fixbox' + (ok ? "" : " bad") + '"><b>' + esc(changesText(r.changes)) + "</b> → " + (ok ? "✓ " : "✗ ") + esc(r.status)
        + (r.summary ? "<p>" + esc(r.summary) + "</p>" : "") + (r.error_class ? '<p>class: <span class="mono">' + esc(r.error_class) + "</span></p>" : "")
        + (fixed ? '<p class="btns">' + copyButton(fixed, "Copy fixed arguments (JSON)") + (py ? " " + copyButton(py, "as Python") : "") + "</p>" : "")
        + "</div>" + (r.message ? '<pre class="msg">' + esc(r.message) + "</pre>" : ""));
      const rest = Object.assign({}, r);
      ["changes", "status", "summary", "error_class", "message"].forEach(k => delete rest[k]);
      if (Object.keys(rest).length) h += "<details><summary>more about the fix</summary>" + kv(rest, (k, v) => k === "metrics" ? kv(v, unit) : val(v)) + "</details>";
    }
    if (c.message) h += sec(SAID[c.said_by] || "Message", '<pre class="msg">' + esc(c.message) + "</pre>", " " + copyButton(c.message));
    if (c.engine_args) h += argsBlock(c.engine_args, "Engine arguments" + (r ? " as given" : ""));
    if (p && j.ev !== "predicted") {
      const agrees = (p.status === "passed") === (c.status === "passed");
      h += sec("Prediction", "<p>" + esc(p.status) + (p.error_class ? " · <span class=\"mono\">" + esc(p.error_class) + "</span>" : "") + " — " + esc(p.reason || "")
        + '</p><p class="muted">source: ' + esc(p.source || "?") + " · " + (j.o === "unsure" ? "the run could not decide" : agrees ? "the run agrees" : "<b>the run differs</b>") + "</p>");
    }
    const metrics = Object.assign({}, met);
    const ref = metrics.vs_reference;
    delete metrics.vs_reference; delete metrics.undecided;
    if (Object.keys(metrics).length) h += sec("Metrics", kv(metrics, unit));
    if (ref) {
      const per = Array.isArray(ref.prompts) ? ref.prompts : [];
      const top = Object.assign({}, ref); delete top.prompts;
      h += sec("Compared with the reference", kv(top) + (per.length ? '<table class="kv"><thead><tr><th>prompt</th>' + Object.keys(per[0]).map(k => "<th>" + esc(k) + "</th>").join("") + "</tr></thead><tbody>"
        + per.map((x, n) => "<tr><td>" + n + "</td>" + Object.keys(per[0]).map(k => "<td>" + val(x[k]) + "</td>").join("") + "</tr>").join("") + "</tbody></table>" : ""));
    }
    if (c.outputs && c.outputs.length) {
      h += sec("Output", c.outputs.map(o => '<div class="out"><div class="prompt">' + esc(o.prompt || "") + (o.token_ids ? " · " + o.token_ids.length + " tokens" : "")
        + (o.logits_finite === false ? " · non-finite logits" : "") + '</div><pre class="msg">' + esc(o.text) + "</pre></div>").join(""));
    }
    const sh = shardOf(c), run = sh && sh.runner ? sh.runner : null;
    const env = {};
    if (c.runner) env.runner = c.runner;
    if (c.shard) env.shard = c.shard;
    if (run) {
      env.host = run.host;
      const gpus = (run.gpus || []).map(g => g.name + (g.capability ? " (sm_" + g.capability.join("") + ")" : "")).join(", ");
      env.hardware = gpus || ("CPU " + (run.cpu || ""));
      if (run.driver) env.driver = run.driver + ", CUDA " + run.cuda;
    }
    if (c.engine_kind) env.engine = c.engine_kind + (c.engine_version ? " " + c.engine_version : "");
    const einfo = sh && sh.engines ? sh.engines[c.engine] : null;
    if (einfo && einfo.packages) env.packages = Object.keys(einfo.packages).sort().map(k => k + " " + einfo.packages[k]).join(", ");
    if (einfo && einfo.python) env.interpreter = einfo.python;
    ["xdist_worker", "finished_at", "merged_from", "superseded", "resumed_from"].forEach(k => { if (c[k] !== undefined) env[k] = c[k]; });
    if (Object.keys(env).length) h += sec("Where it ran", kv(env));
    if (c.stderr_tail) h += sec("Log tail", "<pre>" + esc(c.stderr_tail) + "</pre>", " " + copyButton(c.stderr_tail));
    if (c.log) h += '<p class="muted">log file on the runner: <code>' + esc(c.log) + "</code></p>";
    const extra = Object.keys(c).filter(k => !KNOWN.has(k));
    if (extra.length) h += sec("More", kv(Object.fromEntries(extra.map(k => [k, c[k]]))));
    // the same method and target elsewhere: other dtypes, other engines
    const sib = [];
    for (const e of engines) {
      const idx = groups.get(c.model + SEP + e);
      if (!idx) continue;
      for (const k of idx) if (C[k].quantization === c.quantization && C[k].target === c.target) sib.push(k);
    }
    if (sib.length > 1) {
      sib.sort((a, b) => engines.indexOf(C[a].engine) - engines.indexOf(C[b].engine) || byDtype(C[a].dtype, C[b].dtype));
      h += sec("Same method and target", '<div class="sib">' + sib.map(k => {
        const jj = judge(k);
        return '<a href="#" data-cell="' + k + '" class="' + (k === i ? "cur" : "") + '"><span class="x ' + jj.o + " ev-" + jj.ev + '">' + SYM[jj.o] + (MARK[jj.ev] || "") + "</span>"
          + esc(C[k].engine) + " · " + esc(SHORT[C[k].dtype] || C[k].dtype) + "</a>";
      }).join("") + "</div>");
    }
    return h;
  }
  function openCell(i, focus, reveal) {
    if (i === null || i === undefined || !C[i]) return;
    document.querySelectorAll("td.x.sel").forEach(el => el.classList.remove("sel"));
    S.cell = i;
    let el = document.querySelector('td.x[data-i="' + i + '"]');
    if (!el && reveal && S.tab === "grid") {
      fill(document.querySelector('.gridbox[data-model="' + cssq(C[i].model) + '"]'));
      el = document.querySelector('td.x[data-i="' + i + '"]');
    }
    if (el) el.classList.add("sel");
    if (el && reveal) {
      const r = el.getBoundingClientRect();
      if (r.top < 140 || r.bottom > innerHeight) el.scrollIntoView({ block: "center", inline: "nearest" });
    }
    $("#dtitle").textContent = C[i].id;
    $("#dbody").innerHTML = details(i);
    $("#dbody").scrollTop = 0;
    $("#details").hidden = false;
    if (focus) $("#details").focus();
    if (S.tab === "cells") paintList();
    writeHash();
  }
  function closeCell() {
    $("#details").hidden = true;
    document.querySelectorAll("td.x.sel").forEach(el => el.classList.remove("sel"));
    const back = S.cell;
    S.cell = null;
    if (S.tab === "cells") paintList();
    writeHash();
    const el = back !== null && document.querySelector('td.x[data-i="' + back + '"]');
    if (el) el.focus({ preventScroll: true });
  }
  function step(d) {
    if (S.cell === null) return;
    const seq = S.tab === "cells" ? L.rows : Array.from(document.querySelectorAll("#grids td.x:not(.dim)"), el => +el.dataset.i);
    const k = seq.indexOf(S.cell);
    if (k < 0 || !seq.length) return;
    const n = seq[(k + d + seq.length) % seq.length];
    openCell(n);
    const el = document.querySelector('td.x[data-i="' + n + '"]');
    if (el && S.tab === "grid") el.scrollIntoView({ block: "nearest", inline: "nearest" });
  }
  function copyText(text) {
    const fallback = () => {
      const ta = document.createElement("textarea");
      ta.value = text; ta.setAttribute("readonly", ""); ta.style.position = "fixed"; ta.style.opacity = "0";
      document.body.appendChild(ta); ta.select();
      let ok = false;
      try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
      ta.remove();
      return ok;
    };
    if (navigator.clipboard && window.isSecureContext) return navigator.clipboard.writeText(text).then(() => true, fallback);
    return Promise.resolve(fallback());
  }

  // ---- the flat list (virtual: only the rows in view exist) ------------------------------------------------
  const ROW = 28;
  const COLS = [
    ["result", i => RANK[judge(i).o] * 10 + (judge(i).fix && judge(i).fix.ok ? 1 : 0)],
    ["model", i => C[i].model], ["method", i => C[i].quantization], ["dtype", i => C[i].dtype], ["engine", i => C[i].engine],
    ["target", i => targetKey(C[i].target)], ["class · why", i => judge(i).cls || C[i].reason || ""], ["tried fix", i => judge(i).fix ? judge(i).fix.label : ""],
    ["load s", i => num(C[i], "load_s"), 1], ["tok/s", i => num(C[i], "tokens_per_s"), 1], ["peak MB", i => peak(C[i]), 1],
    ["agree", i => { const r = (C[i].metrics || {}).vs_reference; return r && typeof r.agreement === "number" ? r.agreement : null; }, 1],
  ];
  const num = (c, k) => { const v = (c.metrics || {})[k]; return typeof v === "number" ? v : null; };
  const peak = c => { const m = c.metrics || {}; return typeof m.peak_gpu_mb === "number" && m.peak_gpu_mb > 0 ? m.peak_gpu_mb : typeof m.peak_rss_mb === "number" ? m.peak_rss_mb : null; };
  const fmtn = v => v === null ? "" : Math.abs(v) >= 100 ? v.toFixed(0) : String(+v.toPrecision(3));
  const L = { rows: [], sort: -1, asc: true, ready: false };
  function why(i) {
    const c = C[i], j = judge(i);
    if (j.o === "ok" && j.ev !== "predicted") {
      const text = ((c.outputs || [])[0] || {}).text;
      return text ? '<span class="muted">output: “' + esc(text) + "”</span>" : "";
    }
    if (j.ev === "predicted") return (j.cls ? "<b>" + esc(j.cls) + "</b> " : "") + esc((c.prediction || {}).reason || "");
    if (j.o === "notrun") return esc(c.reason || "");
    if (j.o === "unsure") return "<b>inconclusive</b> " + esc(c.reason || "");
    return "<b>" + esc(c.error_class || "") + "</b> " + esc(c.hint || "");
  }
  function filterList() {
    const words = $("#lq").value.toLowerCase().split(/\s+/).filter(Boolean), o = $("#lo").value, ev = $("#lev").value, eng = $("#leng").value;
    const rows = [];
    for (let i = 0; i < C.length; i++) {
      const j = judge(i);
      if (o && (o === "fixed" ? !(j.fix && j.fix.ok) : j.o !== o)) continue;
      if (ev && j.ev !== ev) continue;
      if (eng && C[i].engine !== eng) continue;
      if (words.length && !textMatch(i, words)) continue;
      rows.push(i);
    }
    if (L.sort >= 0) {
      const key = COLS[L.sort][1], numeric = COLS[L.sort][2], dir = L.asc ? 1 : -1;
      const keys = new Map(rows.map(i => [i, key(i)]));
      rows.sort((a, b) => {
        const x = keys.get(a), y = keys.get(b);
        if (x === null || x === "") return (y === null || y === "") ? a - b : 1;  // empty values last either way
        if (y === null || y === "") return -1;
        return (numeric || typeof x === "number" ? (x - y) : String(x).localeCompare(String(y))) * dir || a - b;
      });
    }
    L.rows = rows;
    $("#lcount").textContent = rows.length + " of " + C.length + " cells";
    $("#lbody").style.height = rows.length * ROW + "px";
    paintList();
  }
  function paintList() {
    const box = $("#list"), head = ROW;
    const first = Math.max(0, Math.floor((box.scrollTop - head) / ROW) - 8), last = Math.min(L.rows.length, first + Math.ceil(box.clientHeight / ROW) + 16);
    let h = "";
    for (let k = first; k < last; k++) {
      const i = L.rows[k], c = C[i], j = judge(i);
      h += '<div class="lrow' + (i === S.cell ? " sel" : "") + '" data-i="' + i + '" style="top:' + k * ROW + 'px" title="' + esc(c.id) + '">'
        + '<span><span class="x ' + j.o + " ev-" + j.ev + (j.fix && j.fix.ok ? " fixed" : "") + '">' + SYM[j.o] + (MARK[j.ev] || "") + "</span></span>"
        + "<span>" + esc(c.model) + "</span><span>" + esc(c.quantization) + "</span><span>" + esc(c.dtype) + "</span><span>" + esc(c.engine) + "</span><span>" + esc(c.target) + "</span>"
        + "<span>" + why(i) + "</span><span>" + (j.fix ? (j.fix.ok ? "→ ✓ " : "→ ✗ ") + esc(changesText(c.retry.changes)) : "") + "</span>"
        + '<span class="num">' + fmtn(num(c, "load_s")) + '</span><span class="num">' + fmtn(num(c, "tokens_per_s")) + '</span><span class="num">' + fmtn(peak(c))
        + '</span><span class="num">' + fmtn(COLS[11][1](i)) + "</span></div>";
    }
    $("#lbody").innerHTML = h;
  }
  function initList() {
    if (L.ready) return;
    L.ready = true;
    $("#lhead").innerHTML = COLS.map((col, k) => '<span data-col="' + k + '"' + (col[2] ? ' class="num"' : "") + ">" + esc(col[0]) + "</span>").join("");
    $("#lhead").addEventListener("click", e => {
      const s = e.target.closest("[data-col]");
      if (!s) return;
      const k = +s.dataset.col;
      L.asc = L.sort === k ? !L.asc : !COLS[k][2];
      L.sort = k;
      $("#lhead").querySelectorAll("span").forEach(x => x.classList.remove("asc", "desc"));
      s.classList.add(L.asc ? "asc" : "desc");
      filterList();
    });
    let t = 0;
    ["#lq", "#lo", "#lev", "#leng"].forEach(sel => ["input", "change"].forEach(ev => $(sel).addEventListener(ev, () => { clearTimeout(t); t = setTimeout(filterList, 120); })));
    let raf = 0;
    $("#list").addEventListener("scroll", () => { if (!raf) raf = requestAnimationFrame(() => { raf = 0; paintList(); }); });
    $("#lbody").addEventListener("click", e => { const r = e.target.closest(".lrow"); if (r) openCell(+r.dataset.i); });
    filterList();
  }

  // ---- speed and memory: which method is fastest, per model and GPU target ----------------------------------
  // Like report.md's speed tables: passed cells with a measured decode speed, per method and engine its fastest
  // dtype, fastest first. Emulated cells ran on the newer card (its speed, not the emulated one's): off by default.
  const tps = m => typeof m.decode_tokens_per_s === "number" ? m.decode_tokens_per_s : typeof m.tokens_per_s === "number" ? m.tokens_per_s : null;
  const PERF = [
    ["decode tok/s", m => tps(m)],
    ["TTFT s", m => m.ttft_s],
    ["load s", m => m.load_s],
    ["peak MB", m => typeof m.peak_gpu_mb === "number" && m.peak_gpu_mb > 0 ? m.peak_gpu_mb : m.peak_rss_mb,
      m => typeof m.peak_gpu_mb === "number" && m.peak_gpu_mb > 0 ? "GPU" : "host RSS"],
    ["checkpoint MB", m => typeof m.checkpoint_mb === "number" ? m.checkpoint_mb : m.artifact_mb],
  ];
  function renderPerf() {
    const model = $("#pmodel").value, eng = $("#peng").value, emu = $("#pemu").checked;
    const best = new Map();
    for (const e of engines) {
      if (eng && e !== eng) continue;
      for (const i of groups.get(model + SEP + e) || []) {
        const c = C[i], j = judge(i), m = c.metrics || {}, v = tps(m);
        if (c.status !== "passed" || v === null || !(j.ev === "verified" || (emu && j.ev === "emulated"))) continue;
        if (!best.has(c.target)) best.set(c.target, new Map());
        const t = best.get(c.target), k = c.quantization + SEP + c.engine, prev = t.get(k);
        if (prev === undefined || v > tps(C[prev].metrics)) t.set(k, i);
      }
    }
    let h = "";
    for (const target of Array.from(best.keys()).sort(byTarget)) {
      const rows = Array.from(best.get(target).values()).sort((a, b) => tps(C[b].metrics) - tps(C[a].metrics));
      const cols = PERF.filter(p => rows.some(i => typeof p[1](C[i].metrics) === "number"));
      const max = cols.map(p => Math.max.apply(null, rows.map(i => +p[1](C[i].metrics) || 0)) || 1);
      const evs = Array.from(new Set(rows.map(i => judge(i).ev))).join(" and ");
      h += '<article class="perfbox"><h3>' + esc(model) + " · " + esc(target) + ' <span class="muted">' + esc(TNAMES[target] || "") + " · " + esc(evs)
        + " · which method is fastest</span></h3><table class=\"perf\"><thead><tr><th class=\"l\">method</th><th class=\"l\">engine</th><th class=\"l\">dtype</th>"
        + cols.map(p => "<th>" + esc(p[0]) + "</th>").join("") + "</tr></thead><tbody>";
      for (const i of rows) {
        const c = C[i], m = c.metrics || {}, j = judge(i);
        h += '<tr data-perf="' + i + '" title="' + esc(c.id) + '"><th class="l">' + esc(c.quantization) + (j.ev === "emulated" ? "<sup>e</sup>" : "") + '</th><td class="t">' + esc(c.engine)
          + '</td><td class="t">' + esc(c.dtype) + "</td>";
        cols.forEach((p, n) => {
          const v = p[1](m);
          h += typeof v === "number"
            ? '<td class="bar b' + n + '"' + (p[2] ? ' title="' + esc(p[2](m)) + '"' : "") + '><span style="width:' + Math.max(1, Math.round(100 * v / max[n])) + '%"></span><em>' + fmtn(v) + "</em></td>"
            : "<td></td>";
        });
        h += "</tr>";
      }
      h += "</tbody></table></article>";
    }
    $("#perf").innerHTML = h || '<p class="muted">No measured cells for ' + esc(model) + (eng ? " on " + esc(eng) : "")
      + (emu ? "" : " that ran on their own GPU; tick “include emulated cells” to see the runs on the newer card") + ".</p>";
  }
  function initPerf() {
    if (!$("#perf").dataset.ready) {
      $("#perf").dataset.ready = "1";
      ["#pmodel", "#peng", "#pemu"].forEach(sel => $(sel).addEventListener("change", renderPerf));
      $("#perf").addEventListener("click", e => { const b = e.target.closest("[data-perf]"); if (b) openCell(+b.dataset.perf); });
    }
    $("#pmodel").value = S.model || models[0];
    renderPerf();
  }

  // ---- tabs and events -------------------------------------------------------------------------------------
  function showTab(name) {
    if (!document.getElementById("tab-" + name)) name = "grid";
    S.tab = name;
    document.querySelectorAll(".tabs button").forEach(b => b.setAttribute("aria-selected", String(b.dataset.tab === name)));
    document.querySelectorAll("section.tab").forEach(s => { s.hidden = s.id !== "tab-" + name; });
    if (name === "cells") initList();
    if (name === "perf") initPerf();
    writeHash();
  }
  document.addEventListener("click", e => {
    const t = e.target;
    const goto = t.closest("[data-goto]");
    if (goto) { e.preventDefault(); showTab(goto.dataset.goto); return; }
    const tab = t.closest(".tabs button");
    if (tab) { showTab(tab.dataset.tab); return; }
    const eng = t.closest("[data-engine]");
    if (eng) { e.preventDefault(); S.engine = eng.dataset.engine; if (S.tab !== "grid") showTab("grid"); renderAll(); return; }
    const dt = t.closest("[data-dtype]");
    if (dt) { const d = dt.dataset.dtype; if (S.dtOff.has(d)) S.dtOff.delete(d); else if (S.dtOff.size < dtypeList.length - 1) S.dtOff.add(d); renderAll(); return; }
    const lay = t.closest("[data-layout]");
    if (lay) { S.layout = lay.dataset.layout; renderAll(); return; }
    const cell = t.closest("td.x[data-i]");
    if (cell) { openCell(+cell.dataset.i); return; }
    const sib = t.closest("[data-cell]");
    if (sib) {
      e.preventDefault();
      const k = +sib.dataset.cell;
      if (C[k].engine !== S.engine && S.tab === "grid") { S.engine = C[k].engine; renderAll(); }
      openCell(k);
      return;
    }
    const cp = t.closest("[data-copy]");
    if (cp) {
      copyText(copies[+cp.dataset.copy]).then(ok => {
        const label = cp.textContent;
        cp.textContent = ok ? "Copied ✓" : "Select and copy";
        cp.classList.toggle("done", !!ok);
        setTimeout(() => { cp.textContent = label; cp.classList.remove("done"); }, 1500);
      });
    }
  });
  $("#dclose").addEventListener("click", closeCell);
  $("#dlink").addEventListener("click", e => {
    const b = e.currentTarget, url = location.href.split("#")[0] + "#cell=" + encodeURIComponent(C[S.cell].id) + (S.engine !== defaultEngine ? "&engine=" + encodeURIComponent(S.engine) : "");
    copyText(url).then(ok => { b.textContent = ok ? "✓" : "#"; setTimeout(() => { b.textContent = "#"; }, 1500); });
  });
  $("#dprev").addEventListener("click", () => step(-1));
  $("#dnext").addEventListener("click", () => step(1));
  document.addEventListener("keydown", e => {
    const inField = /^(INPUT|SELECT|TEXTAREA)$/.test((e.target && e.target.tagName) || "");
    if (e.key === "Escape" && !$("#details").hidden) { closeCell(); return; }
    if (!inField && (e.key === "Enter" || e.key === " ") && e.target.matches && e.target.matches("td.x[data-i]")) { e.preventDefault(); openCell(+e.target.dataset.i, false); return; }
    if (!inField && !$("#details").hidden && (e.key === "ArrowRight" || e.key === "ArrowLeft")) { e.preventDefault(); step(e.key === "ArrowRight" ? 1 : -1); return; }
    if (!inField && e.key === "/") { e.preventDefault(); (S.tab === "cells" ? $("#lq") : $("#q")).focus(); }
  });
  $("#q").addEventListener("input", () => { clearTimeout(qt); qt = setTimeout(() => { S.q = $("#q").value.trim(); renderGrids(); writeHash(); }, 120); });
  $("#model").addEventListener("change", () => { S.model = $("#model").value; renderAll(); window.scrollTo(0, 0); });
  window.addEventListener("hashchange", () => {
    const before = JSON.stringify([S.tab, S.engine, S.model, S.q, S.layout, S.cell]);
    readHash();
    if (before === JSON.stringify([S.tab, S.engine, S.model, S.q, S.layout, S.cell])) return;
    renderAll(); showTab(S.tab);
    if (S.cell !== null) openCell(S.cell, false, true); else $("#details").hidden = true;
  });

  readHash();
  renderAll();
  showTab(S.tab);
  if (S.cell !== null) openCell(S.cell, false, true);
  performance.mark("qc-grid-ready");
  window.qcompat = { ready: true, buildMs: performance.now() - T0, readyAt: performance.now(), cells: C.length, open: openCell, state: S, find: id => byId.has(id) ? byId.get(id) : -1 };
})();
