// A run's page: its header, a live table and plot per stream, other documents as raw JSON.
import { clock, el, elapsed, json, listen, streamCounts } from "./common.js";
import { FrameView } from "./frames.js";
import { StreamPlot } from "./plots.js";

const PAGE = 1000;
const CHUNK = 250; // rows added to the page per task
const PLOT_EVERY = 200; // ms between plot refreshes at most
const uid = decodeURIComponent(location.pathname.split("/").filter(Boolean).pop());
const base = "/api/runs/" + encodeURIComponent(uid);
const streams = new Map(); // name -> state
const streamsHost = document.getElementById("streams");
let summary = null;
let loaded = false;
// The benchmark's hook (tests/benchmarks/bench_web.py), on only when the page is opened with
// ?latency: seconds from an event's time to its row on screen, for the first LATENCY_KEEP rows.
const LATENCY_KEEP = 100000;
const latency = new URLSearchParams(location.search).has("latency") ? [] : null;
if (latency) window.__rsLatency = latency;

function header(s, detail) {
  const host = document.getElementById("run-header");
  host.replaceChildren(
    el("h2", null, "scan " + (s.scan_id ?? "?") + " · " + (s.plan_name || "—") +
      (s.run_key ? " · " + s.run_key : "")),
    el("p", null,
      el("span", { class: "status status-" + s.status, id: "run-status", title: s.reason || "" }, s.status),
      " · ", el("span", { id: "run-elapsed" }, elapsed(s)),
      " · ", el("span", { class: "streams" }, streamCounts(s)),
      s.reason ? " · " + s.reason : "",
      detail && detail.source === "tiled" ? el("span", { id: "run-source" }, " · read from Tiled") : null,
      " · uid ", el("code", null, s.uid),
      s.parent_uid ? el("span", null, " · inside ",
        el("a", { href: "/runs/" + encodeURIComponent(s.parent_uid) }, s.parent_uid.slice(0, 8))) : null,
      detail && detail.tiled_url ? el("span", null, " · ",
        el("a", { href: detail.tiled_url, id: "tiled-link", target: "_blank", rel: "noopener" }, "open in Tiled")) : null));
}

function addStream(info) {
  const table = el("table", { class: "rows", "data-stream": info.name },
    el("thead", null, el("tr", null, el("th", null, "seq_num"), el("th", null, "time"),
      ...info.keys.map((k) => el("th", null, k)))),
    el("tbody"));
  const pager = el("div", { class: "pager" });
  const section = el("section", { class: "stream", "data-stream": info.name },
    el("h3", null, "stream " + info.name),
    el("div", { class: "plot" }, el("div", { class: "plot-area" }), el("p", { class: "plot-caption muted" })),
    el("div", { class: "frames" }), pager, el("div", { class: "table-wrap" }, table));
  streamsHost.append(section);
  const state = { info, section, table, tbody: table.tBodies[0], pager, page: 0, follow: true,
    shown: 0, count: 0, busy: false, again: false, plot: new StreamPlot(section.querySelector(".plot")),
    plotAt: 0, plotBusy: false, plotTimer: null, frames: new Map(), frameKeys: new Set() };
  streams.set(info.name, state);
  return state;
}

// Each key whose values are in files: a frame view, brought up to its count of frames.
function syncFrames(state, keys) {
  for (const [key, info] of Object.entries(keys || {})) {
    state.frameKeys.add(key);
    if (info.kind !== "image" && info.kind !== "spectrum") continue;
    let view = state.frames.get(key);
    if (!view) {
      view = new FrameView(base, state.info.name, key, info);
      state.frames.set(key, view);
      state.section.querySelector(".frames").append(view.node);
    }
    view.update(info.count);
  }
}

function pages(state) { return Math.max(1, Math.ceil(state.count / PAGE)); }

function drawPager(state) {
  const n = pages(state);
  if (n <= 1) { state.pager.replaceChildren(); return; }
  const go = (page, follow) => () => { state.follow = follow; state.page = page; state.shown = 0;
    state.tbody.replaceChildren(); syncTable(state); };
  state.pager.replaceChildren(
    el("button", { type: "button", onclick: go(Math.max(0, state.page - 1), false) }, "‹ previous"),
    " page " + (state.page + 1) + " of " + n + " ",
    el("button", { type: "button", onclick: go(Math.min(n - 1, state.page + 1), false) }, "next ›"),
    " ", el("button", { type: "button", onclick: go(n - 1, true) }, state.follow ? "following" : "follow"));
}

function row(r, keys, live) {
  const tr = el("tr", { "data-seq-num": r.seq_num },
    el("td", { class: "num" }, String(r.seq_num)), el("td", null, clock(r.time)),
    ...keys.map((k) => el("td", { class: typeof r.data[k] === "number" ? "num" : null }, r.cells[k] ?? "")));
  if (live && latency && latency.length < LATENCY_KEEP) latency.push(Date.now() / 1000 - r.time);
  return tr;
}

// Bring the table's page up to the stream's count; one request at a time, none lost.
async function syncTable(state) {
  if (state.busy) { state.again = true; return; }
  state.busy = true;
  try {
    do {
      state.again = false;
      if (state.follow) {
        const last = pages(state) - 1;
        if (last !== state.page) { state.page = last; state.shown = 0; state.tbody.replaceChildren(); }
      }
      const first = state.page * PAGE + state.shown;
      const end = () => Math.min(state.count, (state.page + 1) * PAGE);
      const want = Math.min(CHUNK, end() - first);
      if (want > 0) {
        const live = loaded;
        const got = await json(base + "/streams/" + encodeURIComponent(state.info.name) +
          "/rows?offset=" + first + "&limit=" + want);
        if (first !== state.page * PAGE + state.shown) { state.again = true; continue; } // page changed meanwhile
        const keys = state.info.keys;
        const rows = document.createDocumentFragment();
        for (const r of got.rows) rows.append(row(r, keys, live));
        state.tbody.append(rows);
        state.shown += got.rows.length;
        if (got.total > state.count) { state.count = got.total; state.again = true; }
        if (state.page * PAGE + state.shown < end()) { // the rest in later tasks: frames stay short
          state.again = true;
          await new Promise((resume) => setTimeout(resume, 0));
        }
      }
      drawPager(state);
    } while (state.again);
  } catch (error) {
    state.pager.textContent = "rows: " + error.message;
  } finally {
    state.busy = false;
  }
}

function schedulePlot(state) {
  if (state.plotTimer || state.plotBusy) { state.plotAgain = true; return; }
  const wait = Math.max(0, state.plotAt + PLOT_EVERY - performance.now());
  state.plotTimer = setTimeout(async () => {
    state.plotTimer = null;
    state.plotBusy = true;
    state.plotAgain = false;
    try {
      const data = await json(base + "/streams/" + encodeURIComponent(state.info.name) + "/plot");
      state.plot.draw(data);
    } catch (error) {
      state.section.querySelector(".plot-caption").textContent = "plot: " + error.message;
    } finally {
      state.plotBusy = false;
      state.plotAt = performance.now();
      if (state.plotAgain) schedulePlot(state);
    }
  }, wait);
}

function showResources(detail) {
  const host = document.getElementById("resources");
  host.hidden = detail.resources.length === 0;
  host.querySelector("ul").replaceChildren(...detail.resources.map((r) => el("li",
    { class: "resource", "data-key": r.data_key }, el("strong", null, r.data_key), " · ",
    el("code", { title: r.uri }, r.file), " · ", r.dataset || "—", " · shape ",
    r.shape ? r.shape.join("×") : "?", " · " + r.frames + " frames")));
}

function showOther(detail) {
  const host = document.getElementById("other-documents");
  document.getElementById("other").hidden = detail.other.length === 0;
  host.replaceChildren(...detail.other.map((o) => el("details", { class: "raw", open: "" },
    el("summary", null, o.name), el("pre", { class: "raw-json", "data-document": o.name },
      JSON.stringify(o.doc, null, 2)))));
  if (detail.summary.other_documents > detail.other.length) {
    host.append(el("p", { class: "muted" }, (detail.summary.other_documents - detail.other.length) + " more not kept"));
  }
  document.getElementById("start-stop").textContent =
    JSON.stringify({ start: detail.start, stop: detail.stop }, null, 2);
}

let loading = null;
async function load() {
  const detail = await json(base);
  summary = detail.summary;
  header(summary, detail);
  for (const info of detail.streams) {
    let state = streams.get(info.name);
    if (!state) state = addStream(info);
    else if (info.keys.length !== state.info.keys.length) { state.info = info; }
    state.count = Math.max(state.count, info.events);
    syncFrames(state, info.frames);
    syncTable(state);
    schedulePlot(state);
  }
  showResources(detail);
  showOther(detail);
  loaded = true;
  return detail;
}

function reload() {
  if (!loading) loading = load().finally(() => { loading = null; });
  return loading;
}

function changed(s) {
  const before = summary;
  summary = s;
  const grew = !before || before.other_documents !== s.other_documents || before.status !== s.status ||
    before.resources !== s.resources;
  const newKeys = Object.entries(s.frames || {}).some(([name, keys]) =>
    !streams.has(name) || Object.keys(keys).some((k) => !streams.get(name).frameKeys.has(k)));
  if ([...Object.keys(s.streams)].some((name) => !streams.has(name)) || grew || newKeys) { reload(); return; }
  document.getElementById("run-status").textContent = s.status;
  document.getElementById("run-status").className = "status status-" + s.status;
  for (const [name, count] of Object.entries(s.streams)) {
    const state = streams.get(name);
    if (count > state.count) {
      state.count = count;
      syncTable(state);
      schedulePlot(state);
    }
  }
  for (const [name, keys] of Object.entries(s.frames || {})) {
    for (const [key, count] of Object.entries(keys)) streams.get(name).frames.get(key)?.update(count);
  }
}

const connection = document.getElementById("connection");
reload().then((detail) => {
  if (detail.source === "tiled") { connection.textContent = "read from Tiled"; return; } // closed, not live
  listen("run=" + encodeURIComponent(uid), (runs, removed) => {
    for (const s of runs) if (s.uid === uid) changed(s);
    if (removed.includes(uid)) connection.textContent = "this run left the view's window";
  });
}).catch((error) => {
  document.getElementById("run-header").replaceChildren(
    el("h2", null, "Run " + uid), el("p", { class: "error", id: "run-error" }, error.message));
});

setInterval(() => {
  if (summary && summary.status === "open") {
    const el = document.getElementById("run-elapsed");
    if (el) el.textContent = elapsed(summary);
  }
}, 1000);
