// The runs page: every run as it starts, newest first, nested runs under their parent.
"use strict";

(() => {
  const top = document.getElementById("runs");
  const items = new Map(); // uid -> <li>
  const summaries = new Map(); // uid -> summary

  function line(s) {
    return RS.el("div", { class: "run-line" },
      RS.el("a", { href: "/runs/" + encodeURIComponent(s.uid), class: "scan" },
        "scan " + (s.scan_id ?? "?")),
      RS.el("span", { class: "plan" }, s.plan_name || "—"),
      RS.el("span", { class: "key" }, s.run_key ?? ""),
      RS.el("span", { class: "status status-" + s.status, title: s.reason || "" }, s.status),
      RS.el("span", { class: "elapsed" }, RS.elapsed(s)),
      RS.el("span", { class: "streams" }, RS.streams(s)),
      RS.el("span", { class: "uid muted" }, s.uid.slice(0, 8)));
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
    const li = RS.el("li", { class: "run", "data-run-uid": s.uid,
      "data-parent-uid": s.parent_uid || null, "data-status": s.status },
      line(s), RS.el("ul", { class: "children" }));
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

  const connection = document.getElementById("connection");
  const source = RS.listen("", (runs, removed) => {
    for (const s of runs.slice().reverse()) update(s); // oldest change first
    for (const uid of removed) remove(uid);
    refreshed();
  });
  source.onopen = () => { connection.textContent = "live"; connection.className = "live"; };
  source.onerror = () => { connection.textContent = "reconnecting…"; connection.className = "muted"; };

  setInterval(() => { // elapsed time of open runs
    for (const [uid, li] of items) {
      const s = summaries.get(uid);
      if (s.status === "open") li.querySelector(":scope > .run-line > .elapsed").textContent = RS.elapsed(s);
    }
  }, 1000);
})();
