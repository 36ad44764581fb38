// The engine's history: ended tasks, newest first, a page at a time, filtered by who
// submitted them, plan and state; experts may clear it.
import { dateTime, el } from "./common.js";

const SIZE = 20;

export function historyList({ engine, say }) {
  const list = document.getElementById("history-list");
  const filter = document.getElementById("history-filter");
  const pageState = document.getElementById("history-page");
  let page = 1;
  let total = 0;

  async function load() {
    const query = new URLSearchParams({ page, size: SIZE });
    for (const [name, value] of new FormData(filter)) if (value) query.set(name, value);
    let reply;
    try {
      reply = await engine("/history?" + query);
    } catch (error) {
      pageState.textContent = "history: " + error.message;
      return;
    }
    total = reply.total;
    list.replaceChildren(...reply.tasks.map((t) => el("li", { class: "task", "data-task-id": t.task_id,
      "data-state": t.state },
      el("span", { class: "task-plan" }, t.plan),
      el("span", { class: "status status-" + t.state }, t.state),
      el("span", { class: "task-by" }, t.submitted_by || ""),
      el("span", { class: "muted" }, t.ended ? dateTime(t.ended) : ""),
      el("span", { class: "muted" }, t.reason || ""),
      el("span", { class: "task-id muted" }, t.task_id.slice(0, 8)))));
    const pages = Math.max(1, Math.ceil(total / SIZE));
    pageState.textContent = total + " ended tasks · page " + page + " of " + pages;
    document.getElementById("history-newer").disabled = page <= 1;
    document.getElementById("history-older").disabled = page >= pages;
  }

  let typing = null;
  filter.addEventListener("input", () => {
    clearTimeout(typing);
    typing = setTimeout(() => { page = 1; load(); }, 300);
  });
  filter.addEventListener("submit", (e) => e.preventDefault());
  document.getElementById("history-newer").addEventListener("click", () => { page--; load(); });
  document.getElementById("history-older").addEventListener("click", () => { page++; load(); });
  document.getElementById("clear-history").addEventListener("click", async () => {
    try {
      const cleared = await engine("/history", "DELETE");
      say("forgot " + cleared.removed + " ended tasks");
      page = 1;
      load();
    } catch (error) {
      say("clear the history: " + error.message, true);
    }
  });
  return { load };
}
