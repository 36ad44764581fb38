// The engine panel: queue, state, plan submission and controls, through this service's proxy.
// The token lives only in this tab's sessionStorage and goes out in the Authorization header.
"use strict";

(async () => {
  const config = await RS.json("/api/config");
  if (!config.engine) return; // read-only view
  const KEY = "runstream.engine.token";
  const panel = document.getElementById("engine");
  const message = document.getElementById("engine-message");
  const tokenInput = document.getElementById("token");
  const tokenState = document.getElementById("token-state");
  let plans = [];
  panel.hidden = false;

  function headers() {
    const token = sessionStorage.getItem(KEY);
    const h = { "Content-Type": "application/json" };
    if (token) h.Authorization = "Bearer " + token;
    return h;
  }

  function engine(path, method, body) {
    return RS.json("/api/engine" + path, { method: method || "GET", headers: headers(),
      body: body === undefined ? undefined : JSON.stringify(body) });
  }

  function say(text, error) {
    message.textContent = text;
    message.className = error ? "error" : "ok";
  }

  function showToken() {
    tokenState.textContent = sessionStorage.getItem(KEY) ? "token set for this tab" : "no token";
  }

  document.getElementById("token-form").addEventListener("submit", (e) => {
    e.preventDefault();
    if (tokenInput.value) sessionStorage.setItem(KEY, tokenInput.value);
    tokenInput.value = "";
    showToken();
    loadPlans();
    poll();
  });
  document.getElementById("forget-token").addEventListener("click", () => {
    sessionStorage.removeItem(KEY);
    showToken();
  });

  async function poll() {
    try {
      const [status, queue] = await Promise.all([engine("/status"), engine("/queue")]);
      document.getElementById("re-state").textContent = status.re_state;
      document.getElementById("current-task").textContent = status.task_id || "none";
      document.getElementById("queue-state").textContent =
        (status.queue_running ? "running" : "stopped") + ", " + status.queued + " queued";
      document.getElementById("queue-list").replaceChildren(...queue.tasks.map((t) =>
        RS.el("li", { "data-task-id": t.task_id }, t.plan + " · " + t.state + " · " + t.task_id.slice(0, 8))));
      panel.dataset.reState = status.re_state;
    } catch (error) {
      document.getElementById("re-state").textContent = "unknown (" + error.message + ")";
    }
  }

  function fields(plan) {
    const host = document.getElementById("plan-fields");
    document.getElementById("plan-description").textContent = plan ? plan.description : "";
    if (!plan) { host.replaceChildren(); return; }
    const required = new Set(plan.schema.required || []);
    host.replaceChildren(...Object.entries(plan.schema.properties || {}).map(([name, schema]) =>
      RS.el("label", { class: "field" }, name + (required.has(name) ? " *" : ""),
        RS.el("input", { name, "data-param": name, placeholder: schema.default !== undefined
          ? JSON.stringify(schema.default) : (schema.description || schema.type || "JSON or text"),
          title: "a JSON value (number, list, \"text\") or plain text" }))));
  }

  async function loadPlans() {
    try {
      plans = await engine("/plans");
    } catch (error) {
      say("plans: " + error.message, true);
      return;
    }
    const select = document.getElementById("plan");
    const chosen = select.value;
    select.replaceChildren(...plans.map((p) => RS.el("option", { value: p.name }, p.name)));
    if (chosen) select.value = chosen;
    if (select.value !== chosen) fields(plans.find((p) => p.name === select.value)); // keep typed values
  }
  document.getElementById("plan").addEventListener("change", (e) =>
    fields(plans.find((p) => p.name === e.target.value)));

  function value(text) {
    try { return JSON.parse(text); } catch (e) { return text; }
  }

  document.getElementById("plan-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const kwargs = {};
    for (const input of document.querySelectorAll("#plan-fields input")) {
      if (input.value.trim() !== "") kwargs[input.dataset.param] = value(input.value.trim());
    }
    const plan = document.getElementById("plan").value;
    try {
      const task = await engine("/tasks", "POST", { plan, kwargs });
      say("queued " + plan + " as task " + task.task_id + " (position " + task.position + ")");
    } catch (error) {
      say(plan + ": " + error.message, true);
    }
    poll();
  });

  for (const button of document.querySelectorAll("#controls button")) {
    button.addEventListener("click", async () => {
      try {
        const status = await engine("/control/" + button.dataset.action, "POST");
        say(button.dataset.action + ": engine " + (status.re_state || "answered"));
      } catch (error) {
        say(button.dataset.action + ": " + error.message, true);
      }
      poll();
    });
  }

  showToken();
  loadPlans();
  poll();
  setInterval(poll, 1000);
})();
