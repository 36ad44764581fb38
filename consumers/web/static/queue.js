// The engine's queue as a list people change: move a task up or down (or drag it), edit it in
// the plan form, remove it, clear the queue. Each button shows only where the caller's role
// allows it: users change their own queued tasks, experts any and the whole queue.
import { el } from "./common.js";

function summary(task) {
  const parts = task.args.map((a) => JSON.stringify(a));
  for (const [k, v] of Object.entries(task.kwargs)) parts.push(k + "=" + JSON.stringify(v));
  return parts.join(", ");
}

export function queueList({ engine, say, who, onEdit }) {
  const list = document.getElementById("queue-list");
  let tasks = [];
  let dragged = null;

  const mayChange = (task) => task.state === "queued" &&
    (who().expert || (who().user && task.submitted_by === who().subject));

  async function act(what, call) {
    try {
      await call();
    } catch (error) {
      say(what + ": " + error.message, true);
    }
  }

  const move = (task, where) => act("move", () => engine("/queue/move", "POST", { task_id: task.task_id, ...where }));

  function item(task, i) {
    const queued = tasks.filter((t) => t.state === "queued");
    const at = queued.indexOf(task);
    const mine = mayChange(task);
    const button = (action, label, title, onclick, disabled) => el("button", { type: "button",
      "data-act": action, title, onclick, disabled: disabled ? "" : null }, label);
    const actions = mine ? el("span", { class: "task-actions" },
      button("up", "↑", "Move up", () => move(task, { before: queued[at - 1].task_id }), at <= 0),
      button("down", "↓", "Move down", () => move(task, { after: queued[at + 1].task_id }), at >= queued.length - 1),
      button("edit", "Edit", "Change its plan or arguments", () => onEdit(task)),
      button("remove", "Remove", "Take it off the queue", () =>
        act("remove", () => engine("/tasks/" + task.task_id, "DELETE")))) : null;
    const line = el("li", { class: "task", "data-task-id": task.task_id, "data-state": task.state,
      draggable: mine ? "true" : null },
      el("span", { class: "task-plan" }, task.plan),
      el("span", { class: "task-args muted" }, summary(task)),
      el("span", { class: "task-by" }, task.submitted_by || ""),
      el("span", { class: "status status-" + task.state }, task.state + (task.edits.length ? " · edited" : "")),
      el("span", { class: "task-id muted" }, task.task_id.slice(0, 8)), actions);
    if (mine) {
      line.addEventListener("dragstart", (e) => { dragged = task; e.dataTransfer.effectAllowed = "move"; });
      line.addEventListener("dragover", (e) => { if (dragged) e.preventDefault(); });
      line.addEventListener("drop", (e) => {
        e.preventDefault();
        if (!dragged || dragged === task) return;
        const down = queued.indexOf(dragged) < at; // dropped on a later task: it goes after it
        move(dragged, down ? { after: task.task_id } : { before: task.task_id });
        dragged = null;
      });
    }
    return line;
  }

  function show(queue) {
    tasks = queue.tasks;
    list.replaceChildren(...tasks.map(item));
    document.getElementById("queue-empty").hidden = tasks.length > 0;
  }

  document.getElementById("clear-queue").addEventListener("click", () =>
    act("clear the queue", async () => {
      const cleared = await engine("/queue", "DELETE");
      say("took " + cleared.removed + " tasks off the queue");
    }));
  return { show, redraw: () => show({ tasks }) };
}
