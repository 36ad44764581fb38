// The runs page: every run as it starts, newest first, nested runs under their parent.
// Runs older than the live model come from Tiled, a page at a time, into the same list.
// A filter (plan, status, text) applies to both: live runs are matched here as they are
// pushed (as /api/runs matches them), runs from Tiled are searched by the service.
import { dateTime, el, elapsed, json, listen, streamCounts } from "./common.js";

const top = document.getElementById("runs");
const items = new Map(); // uid -> <li>
const summaries = new Map(); // uid -> summary
const tiledMatch = new Map(); // uid -> whether a run from Tiled passed the service's filter
const form = document.getElementById("run-filter");
const older = document.getElementById("older");
const olderState = document.getElementById("older-state");
const olderButton = document.getElementById("load-older");
const PAGE = Math.max(1, Math.min(200, Number(new URLSearchParams(location.search).get("limit")) || 50));
const TEXT_FIELDS = ["uid", "plan_name", "run_key", "scan_id", "reason"];

let query = { plan: "", status: "", text: "" };
let tiled = null; // {before, nextOffset} once Tiled is in the list: a new one per filter

function line(s) {
  return el("div", { class: "run-line" },
    el("a", { href: "/runs/" + encodeURIComponent(s.uid), class: "scan" },
      "scan " + (s.scan_id ?? "?")),
    el("time", { class: "start", datetime: new Date(s.time * 1000).toISOString() }, dateTime(s.time)),
    el("span", { class: "plan" }, s.plan_name || "—"),
    el("span", { class: "key" }, s.run_key ?? ""),
    el("span", { class: "status status-" + s.status, title: s.reason || "" }, s.status),
    el("span", { class: "elapsed" }, elapsed(s)),
    el("span", { class: "streams" }, s.source === "tiled" ? "in Tiled" : streamCounts(s)),
    el("span", { class: "uid muted" }, s.uid.slice(0, 8)));
}

// Where a run's element goes: under its parent when the page has it, else at the top.
function place(li) {
  const s = summaries.get(li.dataset.runUid);
  const parent = s.parent_uid ? items.get(s.parent_uid) : null;
  const list = parent ? parent.querySelector(":scope > ul.children") : top;
  const newestFirst = list === top;
  let before = null;
  for (const sibling of list.children) {
    const t = summaries.get(sibling.dataset.runUid).time;
    if (newestFirst ? t < s.time : t > s.time) { before = sibling; break; }
  }
  if (li.parentNode !== list || li.nextSibling !== before) list.insertBefore(li, before);
}

function update(s) {
  const known = items.get(s.uid);
  if (known && s.source === "tiled" && summaries.get(s.uid).source !== "tiled") return; // live wins
  summaries.set(s.uid, s);
  if (known) {
    known.dataset.status = s.status;
    known.dataset.source = s.source || "live";
    known.replaceChild(line(s), known.firstChild);
    return;
  }
  const li = el("li", { class: "run", "data-run-uid": s.uid, "data-source": s.source || "live",
    "data-parent-uid": s.parent_uid || null, "data-status": s.status },
    line(s), el("ul", { class: "children" }));
  items.set(s.uid, li);
  place(li);
  for (const [uid, other] of items) { // children seen before their parent move under it
    if (summaries.get(uid).parent_uid === s.uid) place(other);
  }
}

function remove(uid) {
  const li = items.get(uid);
  if (!li) return;
  items.delete(uid);
  tiledMatch.delete(uid);
  const orphans = [...li.querySelectorAll(":scope > ul.children > li")];
  li.remove();
  summaries.delete(uid);
  for (const child of orphans) place(child);
}

function filtering() {
  return Boolean(query.plan || query.status || query.text);
}

// The filter's rules for a live run, as the service's /api/runs applies them.
function matches(s) {
  if (query.plan && s.plan_name !== query.plan) return false;
  if (query.status && s.status !== query.status) return false;
  const words = query.text.toLowerCase().split(/\s+/).filter(Boolean);
  const haystack = TEXT_FIELDS.map((k) => String(s[k] ?? "")).join(" ").toLowerCase();
  return words.every((w) => haystack.includes(w));
}

// Runs that pass show; so do their parents (dimmed when they do not pass themselves).
function refreshed() {
  const passing = new Set();
  for (const [uid, s] of summaries) {
    const pass = !filtering() || (s.source === "tiled" ? tiledMatch.get(uid) : matches(s));
    if (pass) passing.add(uid);
  }
  const shown = new Set();
  for (const uid of passing) {
    for (let u = uid; u && !shown.has(u) && items.has(u); u = summaries.get(u).parent_uid) shown.add(u);
  }
  for (const [uid, li] of items) {
    li.classList.toggle("filtered-out", !shown.has(uid));
    li.classList.toggle("context", shown.has(uid) && !passing.has(uid));
  }
  document.getElementById("runs-empty").hidden = shown.size > 0;
  const plans = [...new Set([...summaries.values()].map((s) => s.plan_name).filter(Boolean))].sort();
  document.getElementById("plans").replaceChildren(...plans.map((p) => el("option", { value: p })));
}

function filterParams() {
  const params = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) if (v) params.set(k, v);
  return params;
}

// One more page of runs from Tiled (the first when the filter changed).
async function loadOlder() {
  const mine = tiled;
  const params = filterParams();
  params.set("offset", mine.nextOffset);
  params.set("limit", PAGE);
  if (mine.before !== null) params.set("before", mine.before);
  olderButton.disabled = true;
  olderState.textContent = "reading runs from Tiled…";
  olderState.className = "muted";
  try {
    const page = await json("/api/tiled-runs?" + params);
    if (mine !== tiled) return; // the filter changed meanwhile
    for (const s of page.context) { if (!tiledMatch.has(s.uid)) tiledMatch.set(s.uid, false); update(s); }
    for (const s of page.runs) { tiledMatch.set(s.uid, true); update(s); }
    mine.before = page.before;
    mine.nextOffset = page.next_offset;
    olderState.textContent = page.total + " older runs in Tiled" +
      (page.next_offset === null ? "" : ", " + page.next_offset + " read");
    olderButton.hidden = page.next_offset === null;
    refreshed();
  } catch (error) {
    if (mine !== tiled) return;
    olderState.textContent = "older runs from Tiled: " + error.message;
    olderState.className = "error";
  } finally {
    olderButton.disabled = false;
  }
}

// The filter changed: live runs are matched again; Tiled is searched again from its first page.
function refilter() {
  query = { plan: form.plan.value.trim(), status: form.status.value, text: form.text.value.trim() };
  if (tiled) {
    for (const [uid, s] of [...summaries]) if (s.source === "tiled") remove(uid);
    tiled = { before: null, nextOffset: 0 };
    loadOlder();
  }
  refreshed();
}

let typing = null;
form.addEventListener("input", () => { clearTimeout(typing); typing = setTimeout(refilter, 250); });
form.addEventListener("submit", (e) => { e.preventDefault(); clearTimeout(typing); refilter(); });
olderButton.addEventListener("click", loadOlder);

listen("", (runs, removed) => {
  for (const s of runs.slice().reverse()) update(s); // oldest change first
  for (const uid of removed) remove(uid);
  refreshed();
});

if ((await json("/api/config")).tiled_runs) { // older runs: the service cuts them at the live ones
  older.hidden = false;
  tiled = { before: null, nextOffset: 0 };
  loadOlder();
}

setInterval(() => { // elapsed time of open runs
  for (const [uid, li] of items) {
    const s = summaries.get(uid);
    if (s.status === "open") li.querySelector(":scope > .run-line > .elapsed").textContent = elapsed(s);
  }
}, 1000);
