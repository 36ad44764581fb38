// The engine panel: who you are, the state, the queue and history, plan submission and
// controls, through this service's proxy. It follows the engine's pushed events (relayed at
// /api/engine/events) rather than polling, and offers only what the caller's role allows.
// The token lives only in this tab's sessionStorage and goes out in the Authorization header.
import { el, json } from "./common.js";
import { readEvents } from "./eventstream.js";
import { deviceList } from "./devices.js";
import { historyList } from "./history.js";
import * as login from "./login.js";
import { planForm } from "./planform.js";
import { queueList } from "./queue.js";

const ROLES = ["observer", "user", "expert", "admin"];
const RETRY_MS = [1000, 2000, 5000, 10000]; // waits before reconnecting, then the last again
const REFUSED = new Set([401, 403]); // the token: no retry until another is given

const panel = document.getElementById("engine");
const message = document.getElementById("engine-message");
const tokenInput = document.getElementById("token");
const tokenState = document.getElementById("token-state");
const reState = document.getElementById("re-state");
// The caller as the engine knows them (GET /whoami): subject, role, and what it allows.
let me = { subject: null, user: false, expert: false };

function headers() {
  const token = login.token();
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
const form = planForm({ engine, say, canSubmit: () => me.user });
const queue = queueList({ engine, say, who: () => me, onEdit: (task) => form.edit(task) });
const history = historyList({ engine, say });

// Who the engine says the caller is; the panel shows only what that role may use.
async function identify() {
  let who = null;
  if (login.token()) {
    try { who = await engine("/whoami"); } catch (error) { say("who you are: " + error.message, true); }
  }
  const allowed = new Set(who ? who.allowed : []);
  me = { subject: who && who.subject, user: allowed.has("user"), expert: allowed.has("expert") };
  for (const role of ROLES) panel.classList.toggle("may-" + role, allowed.has(role));
  panel.dataset.role = who && who.role ? who.role : "none";
  document.getElementById("who").textContent = who
    ? (who.name || who.subject) + " · " + (who.role || "no role") : "not logged in";
  document.getElementById("log-in").hidden = !login.canLogIn() || who !== null;
  document.getElementById("log-out").hidden = who === null;
  tokenState.textContent = login.token() ? "token set for this tab" : "no token";
  queue.redraw();
}

async function useCaller() {
  await identify();
  form.load();
  history.load();
  follow(); // again, with the caller's token
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
      const [status, reply] = await Promise.all([engine("/status"), engine("/queue")]);
      showStatus(status);
      queue.show(reply);
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
  if (name === "task" || name === "queue") history.load(); // a task may have ended or gone
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

async function control(action) {
  try {
    const status = await engine("/control/" + action, "POST");
    say(action + ": engine " + (status.re_state || "answered"));
  } catch (error) {
    say(action + ": " + error.message, true);
  }
}

async function queueAction(action) {
  try {
    const status = await engine("/queue/" + action, "POST");
    say("queue " + (status.queue_running ? "running" : "stopped"));
  } catch (error) {
    say("queue " + action + ": " + error.message, true);
  }
}

async function deviceNames() {
  try {
    const names = (await engine("/devices")).map((d) => el("option", { value: d.name }));
    document.getElementById("device-names").replaceChildren(...names);
  } catch (error) { /* the device list says why */ }
}

async function start() {
  panel.hidden = false;
  login.whenLost((why) => { say(why, true); identify(); });
  document.getElementById("token-form").addEventListener("submit", (e) => {
    e.preventDefault();
    if (tokenInput.value) login.useToken(tokenInput.value);
    tokenInput.value = "";
    document.getElementById("token-details").open = false;
    useCaller();
  });
  document.getElementById("forget-token").addEventListener("click", () => {
    login.forget();
    useCaller();
  });
  document.getElementById("log-in").addEventListener("click", () => login.logIn());
  document.getElementById("log-out").addEventListener("click", () => {
    if (!login.logOut()) useCaller(); // else the provider's logout page takes over
  });
  for (const button of document.querySelectorAll("#controls [data-action]")) {
    button.addEventListener("click", () => control(button.dataset.action));
  }
  for (const button of document.querySelectorAll("#controls [data-queue]")) {
    button.addEventListener("click", () => queueAction(button.dataset.queue));
  }
  const returned = await login.finishLogIn(); // back from the provider's login page?
  if (returned) say(returned, true);
  login.resume();
  try {
    await login.discover();
  } catch (error) {
    say("the login provider did not answer: " + error.message, true);
  }
  deviceNames();
  await useCaller();
}

if ((await json("/api/config")).engine) start(); // else a read-only view
