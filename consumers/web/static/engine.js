// The engine panel: queue, state, plan submission and controls, through this service's proxy.
// It follows the engine's pushed events (relayed at /api/engine/events) rather than polling.
// The token lives only in this tab's sessionStorage and goes out in the Authorization header.
import { el, json } from "./common.js";
import { readEvents } from "./eventstream.js";
import { deviceList } from "./devices.js";

const KEY = "runstream.engine.token";
const RETRY_MS = [1000, 2000, 5000, 10000]; // waits before reconnecting, then the last again
const REFUSED = new Set([401, 403]); // the token: no retry until another is given

const panel = document.getElementById("engine");
const message = document.getElementById("engine-message");
const tokenInput = document.getElementById("token");
const tokenState = document.getElementById("token-state");
const reState = document.getElementById("re-state");
let plans = [];

function headers() {
  const token = sessionStorage.getItem(KEY);
  const h = { "Content-Type": "application/json" };
  if (token) h.Authorization = "Bearer " + token;
  return h;
}

function engine(path, method, body) {
  return json("/api/engine" + path, { method: method || "GET", headers: headers(),
    body: body === undefined ? undefined : JSON.stringify(body) });
}

function say(text, error) {
  message.textContent = text;
  message.className = error ? "error" : "ok";
}

const devices = deviceList(engine, say);

function showToken() {
  tokenState.textContent = sessionStorage.getItem(KEY) ? "token set for this tab" : "no token";
}

function showState(state, detail) {
  reState.textContent = detail ? state + " (" + detail + ")" : state;
  panel.dataset.reState = state;
}

// No word from the engine: its state is not known, nor its task or queue.
function lost(state, why) {
  showState(state, why);
  document.getElementById("current-task").textContent = "?";
  document.getElementById("queue-state").textContent = "?";
}

function showStatus(status) {
  showState(status.re_state);
  document.getElementById("current-task").textContent = status.task_id || "none";
  document.getElementById("queue-state").textContent =
    (status.queue_running ? "running" : "stopped") + ", " + status.queued + " queued";
}

function showQueue(queue) {
  document.getElementById("queue-list").replaceChildren(...queue.tasks.map((t) =>
    el("li", { "data-task-id": t.task_id }, t.plan + " · " + t.state + " · " + t.task_id.slice(0, 8))));
}

// The status and queue, read again after an event: one read at a time, and one more when
// events came meanwhile, so the panel ends on the engine's latest state.
let reading = false;
let readAgain = false;
async function refresh() {
  if (reading) { readAgain = true; return; }
  reading = true;
  try {
    do {
      readAgain = false;
      const [status, queue] = await Promise.all([engine("/status"), engine("/queue")]);
      showStatus(status);
      showQueue(queue);
    } while (readAgain);
  } catch (error) {
    readAgain = false; // the event stream says when the engine is back
  } finally {
    reading = false;
  }
}

function onEvent(name, data) {
  if (name === "status") { // the first event: the engine's state now, its devices read again
    showStatus(data);
    devices.load();
  } else if (name === "device" || name === "devices") { // a device's state changed
    if (data && data.name && data.connected !== undefined) devices.show(data); else devices.load();
    return;
  } else if (name === "engine") showState(data.state); // the RunEngine's state changed
  else if (name !== "task" && name !== "queue" && name !== "control") return; // runs: the list
  refresh();
}

// The event stream, kept open: reconnects after a pause when the engine goes away.
let stream = null;
async function follow() {
  if (stream) stream.abort();
  const mine = stream = new AbortController();
  let failures = 0;
  const heard = (name, data) => { failures = 0; onEvent(name, data); };
  while (!mine.signal.aborted) {
    try {
      await readEvents("/api/engine/events", { headers: headers(), signal: mine.signal }, heard);
      if (!mine.signal.aborted) lost("unreachable", "the engine's event stream ended");
    } catch (error) {
      if (mine.signal.aborted) return;
      if (REFUSED.has(error.status)) { lost("unknown", error.message); return; }
      lost("unreachable", error.message);
    }
    await new Promise((wake) => setTimeout(wake, RETRY_MS[Math.min(failures, RETRY_MS.length - 1)]));
    failures++;
  }
}

function fields(plan) {
  const host = document.getElementById("plan-fields");
  document.getElementById("plan-description").textContent = plan ? plan.description : "";
  if (!plan) { host.replaceChildren(); return; }
  const required = new Set(plan.schema.required || []);
  host.replaceChildren(...Object.entries(plan.schema.properties || {}).map(([name, schema]) =>
    el("label", { class: "field" }, name + (required.has(name) ? " *" : ""),
      el("input", { name, "data-param": name, placeholder: schema.default !== undefined
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
  select.replaceChildren(...plans.map((p) => el("option", { value: p.name }, p.name)));
  if (chosen) select.value = chosen;
  if (select.value !== chosen) fields(plans.find((p) => p.name === select.value)); // keep typed values
}

function value(text) {
  try { return JSON.parse(text); } catch (e) { return text; }
}

async function submit(e) {
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
}

async function control(action) {
  try {
    const status = await engine("/control/" + action, "POST");
    say(action + ": engine " + (status.re_state || "answered"));
  } catch (error) {
    say(action + ": " + error.message, true);
  }
}

function start() {
  panel.hidden = false;
  document.getElementById("token-form").addEventListener("submit", (e) => {
    e.preventDefault();
    if (tokenInput.value) sessionStorage.setItem(KEY, tokenInput.value);
    tokenInput.value = "";
    showToken();
    loadPlans();
    follow(); // again, with the token
  });
  document.getElementById("forget-token").addEventListener("click", () => {
    sessionStorage.removeItem(KEY);
    showToken();
  });
  document.getElementById("plan").addEventListener("change", (e) =>
    fields(plans.find((p) => p.name === e.target.value)));
  document.getElementById("plan-form").addEventListener("submit", submit);
  for (const button of document.querySelectorAll("#controls button")) {
    button.addEventListener("click", () => control(button.dataset.action));
  }
  showToken();
  loadPlans();
  follow();
}

if ((await json("/api/config")).engine) start(); // else a read-only view
