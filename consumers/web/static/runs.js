// The runs page: every run as it starts, newest first, nested runs under their parent.
import { el, elapsed, listen, streamCounts } from "./common.js";

const top = document.getElementById("runs");
const items = new Map(); // uid -> <li>
const summaries = new Map(); // uid -> summary

function line(s) {
  return el("div", { class: "run-line" },
    el("a", { href: "/runs/" + encodeURIComponent(s.uid), class: "scan" },
      "scan " + (s.scan_id ?? "?")),
    el("span", { class: "plan" }, s.plan_name || "—"),
    el("span", { class: "key" }, s.run_key ?? ""),
    el("span", { class: "status status-" + s.status, title: s.reason || "" }, s.status),
    el("span", { class: "elapsed" }, elapsed(s)),
    el("span", { class: "streams" }, streamCounts(s)),
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
  summaries.set(s.uid, s);
  if (known) {
    known.dataset.status = s.status;
    known.replaceChild(line(s), known.firstChild);
    return;
  }
  const li = el("li", { class: "run", "data-run-uid": s.uid,
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
  const orphans = [...li.querySelectorAll(":scope > ul.children > li")];
  li.remove();
  summaries.delete(uid);
  for (const child of orphans) place(child);
}

function refreshed() {
  document.getElementById("runs-empty").hidden = items.size > 0;
}

listen("", (runs, removed) => {
  for (const s of runs.slice().reverse()) update(s); // oldest change first
  for (const uid of removed) remove(uid);
  refreshed();
});

setInterval(() => { // elapsed time of open runs
  for (const [uid, li] of items) {
    const s = summaries.get(uid);
    if (s.status === "open") li.querySelector(":scope > .run-line > .elapsed").textContent = elapsed(s);
  }
}, 1000);
