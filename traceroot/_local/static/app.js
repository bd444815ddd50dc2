// traceroot ui: one page, no framework, no network beyond this server.
// Every captured value reaches the page as text (textContent / text nodes): never as HTML.
"use strict";

const app = () => document.getElementById("app");
let pollTimer = null;
let lastVersion = null;

// Bidirectional controls (U+202E turns the text after it around) are shown as their codes,
// never obeyed: captured text reads as it is, as `traceroot show` prints it.
const BIDI = /[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;
const bidiCode = (c) => "\\u" + c.charCodeAt(0).toString(16).padStart(4, "0");
const visible = (text) => String(text).replace(BIDI, bidiCode);

// Text as nodes: plain text, and each bidirectional control as a visible, marked code.
function textNodes(text) {
  if (text.search(BIDI) < 0) return [document.createTextNode(text)];
  const out = [];
  let last = 0;
  for (const m of text.matchAll(BIDI)) {
    if (m.index > last) out.push(document.createTextNode(text.slice(last, m.index)));
    const code = document.createElement("span");
    code.className = "ctl";
    code.title = "a text-direction control character, shown instead of obeyed";
    code.textContent = bidiCode(m[0]);
    out.push(code);
    last = m.index + m[0].length;
  }
  if (last < text.length) out.push(document.createTextNode(text.slice(last)));
  return out;
}

// h("div", {className: "x", onclick: f}, "text", child...): strings become text nodes.
function h(tag, props, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "dataset") Object.assign(el.dataset, value);
    else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "title") el.title = visible(value);
    else if (key === "className" || key === "href" || key === "value" ||
             key === "type" || key === "placeholder" || key === "checked" || key === "open") el[key] = value;
    else el.setAttribute(key, String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    if (child instanceof Node) el.append(child);
    else el.append(...textNodes(String(child)));
  }
  return el;
}

// The JSON at `url`; else an Error in words: the server's own, or why there was no answer.
async function getJSON(url) {
  let response;
  try {
    response = await fetch(url, { headers: { Accept: "application/json" }, cache: "no-store" });
  } catch (e) {
    throw new Error("traceroot ui is not answering (was it stopped?)");
  }
  let body = null;
  try { body = await response.json(); } catch (e) { /* not JSON: said below */ }
  if (!response.ok || body === null) {
    throw new Error((body && body.error) || `HTTP ${response.status} ${response.statusText}`.trim());
  }
  return body;
}

function setLive(on) { document.getElementById("live").classList.toggle("off", !on); }

// `baseline`: the store's version the shown data was read at (so a write in between counts).
function poll(onChange, baseline) {
  clearInterval(pollTimer);
  lastVersion = baseline;
  pollTimer = setInterval(async () => {
    if (document.hidden) return;
    try {
      const { version } = await getJSON("/api/version");
      setLive(true);
      if (version !== lastVersion) { lastVersion = version; onChange(); }
    } catch (e) { setLive(false); }
  }, 1500);
}

// -- formatting --------------------------------------------------------------------

function fmtDuration(us) {
  if (us === null || us === undefined || us < 0) return "?";
  if (us < 1000) return `${us}µs`;
  if (us < 1e6) return `${(us / 1000).toFixed(us < 1e4 ? 1 : 0)}ms`;
  if (us < 6e7) return `${(us / 1e6).toFixed(2)}s`;
  return `${Math.floor(us / 6e7)}m ${Math.round((us % 6e7) / 1e6)}s`;
}
function fmtTime(us) {
  const d = new Date(us / 1000);
  const today = new Date();
  const time = d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  return d.toDateString() === today.toDateString() ? time : `${d.toLocaleDateString()} ${time}`;
}
function pretty(text) {
  if (typeof text !== "string") return JSON.stringify(text, null, 2);
  const t = text.trim();
  if ((t.startsWith("{") && t.endsWith("}")) || (t.startsWith("[") && t.endsWith("]"))) {
    try { return JSON.stringify(JSON.parse(t), null, 2); } catch (e) { /* not JSON: as it is */ }
  }
  return text;
}
function short(text, n) {
  if (!text) return "";
  const one = String(text).replace(/\s+/g, " ");
  return one.length > n ? one.slice(0, n - 1) + "…" : one;
}
const kindBadge = (kind) => h("span", { className: `badge k-${String(kind).replace(/[^a-z_-]/g, "")}` }, kind);
const value = (text, extra) => h("pre", { className: "value" + (extra ? " " + extra : "") }, pretty(text));

// -- the trace list ----------------------------------------------------------------

const listState = { q: "", service: "", session: "", user: "", errors: false };

function listQuery(before) {
  const p = new URLSearchParams();
  if (listState.q) p.set("q", listState.q);
  if (listState.service) p.set("service", listState.service);
  if (listState.session) p.set("session", listState.session);
  if (listState.user) p.set("user", listState.user);
  if (listState.errors) p.set("errors", "1");
  if (before) p.set("before", before);
  p.set("limit", "50");
  return "/api/traces?" + p.toString();
}

function traceRow(t, fresh) {
  const status = t.error_count > 0
    ? h("span", { className: "badge status-error" }, `${t.error_count} error${t.error_count > 1 ? "s" : ""}`)
    : h("span", { className: "badge status-ok" }, "ok");
  return h("tr", { className: "row" + (fresh ? " fresh" : ""), dataset: { trace: t.trace_id },
                   onclick: () => { location.hash = `#/trace/${t.trace_id}`; } },
    h("td", { className: "when" }, fmtTime(t.start_us)),
    h("td", {},
      h("div", {}, kindBadge(t.kind || "span"), " ", h("span", { className: "name" }, t.name || "(unnamed)")),
      t.input ? h("div", { className: "preview", title: t.input }, short(t.input, 160)) : null),
    h("td", {}, t.service || ""),
    h("td", {}, t.session_id
      ? h("a", { href: `#/session/${encodeURIComponent(t.session_id)}`, onclick: (e) => e.stopPropagation() }, t.session_id)
      : ""),
    h("td", {}, t.user_id || ""),
    h("td", { className: "num" }, t.span_count),
    h("td", { className: "num" }, t.tokens ? t.tokens.toLocaleString() : ""),
    h("td", { className: "num" }, fmtDuration(t.end_us - t.start_us)),
    h("td", {}, status));
}

async function renderList() {
  const root = app();
  let facets = { services: [], sessions: [], users: [] };
  try { facets = await getJSON("/api/facets"); } catch (e) { /* the list says what is wrong */ }
  const input = (key, placeholder, list) => h("input", {
    type: key === "q" ? "search" : "text", placeholder, value: listState[key], list,
    "aria-label": placeholder,
    oninput: debounce((e) => { listState[key] = e.target.value.trim(); load(); }, 250),
  });
  const service = h("select", { "aria-label": "service", onchange: (e) => { listState.service = e.target.value; load(); } },
    h("option", { value: "" }, "all services"),
    facets.services.map((s) => h("option", { value: s }, s)));
  service.value = listState.service;
  const count = h("span", { className: "count" });
  const tbody = h("tbody");
  const more = h("button", { className: "more", hidden: true }, "Load more");
  root.replaceChildren(
    h("div", { className: "filters" },
      input("q", "Search names and inputs…"),
      service,
      input("session", "session", "sessions"),
      input("user", "user", "users"),
      h("label", {}, h("input", { type: "checkbox", checked: listState.errors,
        onchange: (e) => { listState.errors = e.target.checked; load(); } }), "errors only"),
      count),
    h("datalist", { id: "sessions" }, facets.sessions.map((s) => h("option", { value: s }))),
    h("datalist", { id: "users" }, facets.users.map((s) => h("option", { value: s }))),
    h("table", { className: "list" },
      h("thead", {}, h("tr", {}, ["Started", "Trace", "Service", "Session", "User", "Spans", "Tokens", "Duration", "Status"]
        .map((c, i) => h("th", { className: i >= 5 && i <= 7 ? "num" : "" }, c)))),
      tbody),
    more);
  let next = null;
  let shown = new Set();
  async function load(append) {
    let page;
    try { page = await getJSON(listQuery(append ? next : null)); }
    catch (e) {
      count.textContent = "";
      more.hidden = true;
      tbody.replaceChildren(h("tr", {}, h("td", { colspan: 9, className: "empty error" }, `Cannot read the store: ${e.message}`)));
      return;
    }
    const fresh = append ? new Set() : new Set(page.traces.map((t) => t.trace_id).filter((id) => shown.size && !shown.has(id)));
    const rows = page.traces.map((t) => traceRow(t, fresh.has(t.trace_id)));
    if (append) tbody.append(...rows); else tbody.replaceChildren(...rows);
    if (!append) shown = new Set(page.traces.map((t) => t.trace_id));
    else page.traces.forEach((t) => shown.add(t.trace_id));
    next = page.next;
    if (!append) lastVersion = page.version;
    more.hidden = !next;
    count.textContent = `${tbody.children.length} trace${tbody.children.length === 1 ? "" : "s"} shown`;
    if (!tbody.children.length) tbody.replaceChildren(h("tr", {}, h("td", { colspan: 9, className: "empty" }, emptyList())));
  }
  // Nothing listed: a search or filter that matched nothing, else a store with no traces yet.
  function emptyList() {
    const searched = Boolean(listState.q);
    const filtered = Boolean(listState.service || listState.session || listState.user || listState.errors);
    if (!searched && !filtered) {
      return "No traces yet. Run a program with `traceroot-run python app.py` (no API key) and it appears here.";
    }
    const what = searched && filtered ? "this search and these filters" : searched ? "this search" : "these filters";
    return [`No traces match ${what}. `, h("button", { className: "clear", onclick: () => {
      Object.assign(listState, { q: "", service: "", session: "", user: "", errors: false });
      renderList();
    } }, "Show all traces")];
  }
  more.onclick = () => load(true);
  await load(false);
  // Live: a program running elsewhere shows up without a reload (first page only).
  poll(() => { if (tbody.children.length <= 50) load(false); }, lastVersion);
}

function debounce(fn, ms) {
  let timer = null;
  return (...args) => { clearTimeout(timer); timer = setTimeout(() => fn(...args), ms); };
}

// -- one trace: tree + waterfall, and the selected span --------------------------

function buildTree(spans) {
  const ids = new Set(spans.map((s) => s.span_id));
  const children = new Map();
  for (const s of spans) {
    const parent = s.parent_id && ids.has(s.parent_id) ? s.parent_id : null;
    if (!children.has(parent)) children.set(parent, []);
    children.get(parent).push(s);
  }
  for (const list of children.values()) list.sort((a, b) => a.start_us - b.start_us);
  return children;
}

async function renderTrace(traceId, keepSelected) {
  let trace;
  try { trace = await getJSON(`/api/trace/${encodeURIComponent(traceId)}`); }
  catch (e) { app().replaceChildren(h("p", { className: "empty" }, `Trace ${traceId}: ${e.message}`)); return; }
  const spans = trace.spans;
  const children = buildTree(spans);
  const t0 = Math.min(...spans.map((s) => s.start_us));
  const t1 = Math.max(...spans.map((s) => s.end_us));
  const total = Math.max(1, t1 - t0);
  const collapsed = renderTrace.collapsed || (renderTrace.collapsed = new Set());
  let selected = (keepSelected && spans.find((s) => s.span_id === keepSelected)) || spans.find((s) => s.span_id === trace.root_span_id) || spans[0];

  const rows = h("div", { className: "rows" });
  const detail = h("aside", { className: "detail", "aria-label": "selected span" });

  function drawRows() {
    const out = [];
    const walk = (parent, depth) => {
      for (const s of children.get(parent) || []) {
        const kids = children.get(s.span_id) || [];
        const left = ((s.start_us - t0) / total) * 100;
        const width = Math.max(0.2, ((s.end_us - s.start_us) / total) * 100);
        const bar = h("div", { className: `bar k-${s.view.kind}${s.status === "ERROR" ? " err" : ""}` });
        bar.style.left = `${left}%`;
        bar.style.width = `${width}%`;
        const dur = h("span", { className: "dur" }, fmtDuration(s.end_us - s.start_us));
        // The duration sits after the bar, else before it, else inside its right end.
        if (left + width <= 82) dur.style.left = `${left + width + 0.5}%`;
        else if (left > 12) dur.style.right = `${100 - left + 0.5}%`;
        else { dur.classList.add("inside"); dur.style.right = `${100 - left - width + 0.8}%`; }
        const indent = h("span", { className: "indent" });
        indent.style.width = `${depth * 16}px`;
        const caret = h("span", { className: "caret", onclick: (e) => {
          e.stopPropagation();
          if (collapsed.has(s.span_id)) collapsed.delete(s.span_id); else collapsed.add(s.span_id);
          drawRows();
        } }, kids.length ? (collapsed.has(s.span_id) ? "▸" : "▾") : "");
        out.push(h("div", { className: "span-row" + (s === selected ? " selected" : ""), dataset: { span: s.span_id },
            onclick: () => { selected = s; drawRows(); drawDetail(); } },
          h("div", { className: "label" }, indent, caret, kindBadge(s.view.kind),
            h("span", { className: "title", title: s.name }, s.name),
            s.status === "ERROR" ? h("span", { className: "err-dot", title: "error" }, "!") : null),
          h("div", { className: "lane" }, bar, dur)));
        if (!collapsed.has(s.span_id)) walk(s.span_id, depth + 1);
      }
    };
    walk(null, 0);
    rows.replaceChildren(...out);
  }

  function drawDetail() { detail.replaceChildren(...spanDetail(selected, t0)); }

  const facts = [
    ["spans", trace.span_count], ["duration", fmtDuration(t1 - t0)], ["started", fmtTime(trace.start_us)],
    ["service", trace.service], ["user", trace.user_id], ["tokens", trace.tokens],
  ].filter(([, v]) => v !== null && v !== undefined && v !== "");
  app().replaceChildren(
    h("div", { className: "crumbs" }, h("a", { href: "#/" }, "← All traces"),
      trace.session_id ? [" · session ", h("a", { href: `#/session/${encodeURIComponent(trace.session_id)}` }, trace.session_id)] : null),
    h("section", { className: "head" },
      h("h1", {}, kindBadge(trace.kind || "span"), " ", trace.name || "(unnamed)",
        trace.error_count ? [" ", h("span", { className: "badge status-error" }, `${trace.error_count} error${trace.error_count > 1 ? "s" : ""}`)] : null),
      h("div", { className: "id" }, trace.trace_id),
      h("div", { className: "facts" }, facts.map(([k, v]) => h("span", {}, `${k} `, h("b", {}, String(v)))))),
    h("div", { className: "split" },
      h("section", { className: "tree", "aria-label": "span tree" },
        h("div", { className: "tree-head" }, h("span", {}, "Span"), h("span", {}, `Timeline · ${fmtDuration(total)}`)),
        rows),
      detail));
  drawRows();
  drawDetail();
  poll(() => renderTrace(traceId, selected && selected.span_id), trace.version);
}

function kvTable(obj) {
  return h("table", { className: "kv" }, h("tbody", {}, Object.entries(obj).map(([k, v]) =>
    h("tr", {}, h("td", {}, k), h("td", {}, typeof v === "string" ? pretty(v) : JSON.stringify(v, null, 2))))));
}

function chat(messages) {
  return h("div", { className: "chat" }, messages.map((m) => {
    const role = (m.role || "message").toLowerCase();
    return h("div", { className: `msg r-${role.replace(/[^a-z]/g, "")}`, dataset: { role } },
      h("div", { className: "role" }, m.name ? `${role} · ${m.name}` : role),
      m.content ? h("div", { className: "content" }, m.content) : null,
      (m.tool_calls || []).map((c) => h("div", { className: "call" }, `→ ${c.name || "tool"}(${c.arguments ? pretty(c.arguments) : ""})`)));
  }));
}

function spanDetail(s, t0) {
  const v = s.view;
  const out = [];
  out.push(h("h3", {}, kindBadge(v.kind), s.name,
    s.status === "ERROR" ? h("span", { className: "badge status-error" }, "error") : null));
  const facts = [
    ["duration", fmtDuration(s.end_us - s.start_us)], ["starts at", `+${fmtDuration(s.start_us - t0)}`],
    ["model", v.model], ["tokens", v.tokens.total !== undefined
      ? `${v.tokens.prompt ?? "?"} in · ${v.tokens.completion ?? "?"} out · ${v.tokens.total} total` : null],
    ["otel kind", s.otel_kind], ["service", s.service], ["span", s.span_id],
  ].filter(([, x]) => x);
  out.push(h("div", { className: "facts" }, facts.map(([k, x]) => h("span", {}, `${k} `, h("b", {}, String(x))))));
  if (v.tags.length) out.push(h("div", { className: "facts" }, v.tags.map((t) => h("span", { className: "chip" }, t))));
  if (v.error) {
    out.push(h("h2", {}, "Error"),
      h("div", { className: "error-box" },
        h("div", { className: "error-title" }, [v.error.type, v.error.message].filter(Boolean).join(": ") || "error"),
        v.error.traceback ? h("pre", { className: "value traceback" }, v.error.traceback) : null));
  }
  const hasChat = v.messages.input.length || v.messages.output.length;
  if (hasChat) {
    out.push(h("h2", {}, "Messages"), chat(v.messages.input));
    if (v.messages.output.length) out.push(h("h2", {}, "Response"), chat(v.messages.output));
    else if (v.output) out.push(h("h2", {}, "Response"), chat([{ role: "assistant", content: pretty(v.output) }]));
  }
  if (v.input) out.push(h("h2", {}, "Input"), value(v.input, "input"));
  if (v.output && !(hasChat && !v.messages.output.length)) out.push(h("h2", {}, "Output"), value(v.output, "output"));
  if (v.parameters && Object.keys(v.parameters).length) out.push(h("h2", {}, "Parameters"), kvTable(v.parameters));
  if (Object.keys(v.metadata).length) out.push(h("h2", {}, "Metadata"), kvTable(v.metadata));
  const events = (s.events || []).filter((e) => e.name !== "exception");
  if (events.length) {
    out.push(h("h2", {}, "Events"), h("table", { className: "kv" }, h("tbody", {}, events.map((e) =>
      h("tr", {}, h("td", {}, `+${fmtDuration(Math.round(e.time_ns / 1000) - s.start_us)} ${e.name}`),
        h("td", {}, Object.keys(e.attributes || {}).length ? JSON.stringify(e.attributes, null, 2) : ""))))));
  }
  out.push(h("details", {}, h("summary", {}, `All attributes (${Object.keys(s.attributes).length})`), kvTable(s.attributes)));
  if (s.resource && Object.keys(s.resource).length) {
    out.push(h("details", {}, h("summary", {}, "Resource"), kvTable(s.resource)));
  }
  return out;
}

// -- a session: its traces in order ---------------------------------------------

async function renderSession(sessionId) {
  let data;
  try { data = await getJSON(`/api/session/${encodeURIComponent(sessionId)}`); }
  catch (e) { app().replaceChildren(h("p", { className: "empty" }, e.message)); return; }
  const turns = data.traces.map((t, i) => h("article", { className: "turn", dataset: { trace: t.trace_id } },
    // Each fact its own element: the row's gap separates them (text runs would merge).
    h("div", { className: "meta" }, h("b", {}, `#${i + 1}`), h("span", { className: "when" }, fmtTime(t.start_us)),
      kindBadge(t.kind || "span"), h("a", { href: `#/trace/${t.trace_id}` }, t.name || t.trace_id),
      h("span", { className: "duration" }, fmtDuration(t.end_us - t.start_us)),
      t.user_id ? h("span", { className: "user" }, "user ", h("b", {}, t.user_id)) : null,
      t.error_count ? h("span", { className: "badge status-error" }, "error") : null),
    chat([
      t.input ? { role: "user", content: pretty(t.input) } : null,
      t.output ? { role: "assistant", content: pretty(t.output) } : null,
    ].filter(Boolean)),
    t.error ? h("div", { className: "error-box" }, h("div", { className: "error-title" }, [t.error.type, t.error.message].filter(Boolean).join(": "))) : null));
  app().replaceChildren(
    h("div", { className: "crumbs" }, h("a", { href: "#/" }, "← All traces")),
    h("section", { className: "head" }, h("h1", {}, `Session ${sessionId}`),
      h("div", { className: "facts" }, h("span", {}, "traces ", h("b", {}, String(data.traces.length))))),
    ...(turns.length ? turns : [h("p", { className: "empty" }, "No traces in this session.")]));
  poll(() => renderSession(sessionId), data.version);
}

// -- routing ------------------------------------------------------------------------

function route() {
  lastVersion = null;
  const hash = location.hash || "#/";
  let match;
  if ((match = hash.match(/^#\/trace\/([0-9a-f]+)$/))) { renderTrace.collapsed = new Set(); renderTrace(match[1]); }
  else if ((match = hash.match(/^#\/session\/(.+)$/))) renderSession(decodeURIComponent(match[1]));
  else renderList();
  window.scrollTo(0, 0);
}
window.addEventListener("hashchange", route);
route();
