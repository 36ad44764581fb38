// The plan form: fields made from a plan's parameter schema (numbers, choices, device names),
// checked by the engine as they are typed (POST /tasks/validate: nothing is queued), and used
// both to submit a new task and to edit a queued one (PATCH /tasks/{id}).
import { el } from "./common.js";

const CHECK_AFTER_MS = 350; // a pause in typing before the engine is asked

// The input a parameter's schema calls for: "number", "boolean", "choice" or "json".
function kind(schema) {
  const types = (schema.anyOf || [schema]).map((s) => s.type).filter((t) => t && t !== "null");
  if (schema.enum) return "choice";
  if (types.length === 1 && (types[0] === "integer" || types[0] === "number")) return "number";
  if (types.length === 1 && types[0] === "boolean") return "boolean";
  return "json";
}

function input(name, schema, required) {
  const hint = schema.default !== undefined && schema.default !== null ? JSON.stringify(schema.default)
    : (schema.description || "JSON or text");
  const common = { name, "data-param": name, "data-kind": kind(schema), "aria-required": String(required) };
  switch (kind(schema)) {
    case "number":
      return el("input", { ...common, type: "number", step: "any", placeholder: hint });
    case "boolean":
      return el("select", common, el("option", { value: "" }, "default"),
        el("option", { value: "true" }, "true"), el("option", { value: "false" }, "false"));
    case "choice":
      return el("select", common, el("option", { value: "" }, "default"),
        ...schema.enum.map((v) => el("option", { value: JSON.stringify(v) }, String(v))));
    default: {
      const devices = /device/.test(schema.description || "") || /device/.test(JSON.stringify(schema.items || {}));
      return el("input", { ...common, placeholder: hint, list: devices ? "device-names" : null,
        title: "a JSON value (number, list, \"text\") or plain text" });
    }
  }
}

function read(field) {
  const text = field.value.trim();
  if (text === "") return undefined;
  if (field.dataset.kind === "number") return Number(text);
  try { return JSON.parse(text); } catch (e) { return text; }
}

function shown(value) {
  return typeof value === "string" ? value : JSON.stringify(value);
}

export function planForm({ engine, say, canSubmit }) {
  const form = document.getElementById("plan-form");
  const select = document.getElementById("plan");
  const host = document.getElementById("plan-fields");
  const check = document.getElementById("plan-check");
  const submitButton = form.querySelector("button[type=submit]");
  const cancelButton = document.getElementById("cancel-edit");
  let plans = [];
  let editing = null; // the queued task being edited, else null
  let timer = null;
  let asked = 0; // the latest check's number: an older answer is not shown

  const plan = () => plans.find((p) => p.name === select.value);

  function fields(p) {
    document.getElementById("plan-description").textContent = p ? p.description : "";
    if (!p) { host.replaceChildren(); return; }
    const required = new Set(p.schema.required || []);
    host.replaceChildren(...Object.entries(p.schema.properties || {}).map(([name, schema]) =>
      el("label", { class: "field" }, name + (required.has(name) ? " *" : ""),
        input(name, schema, required.has(name)))));
    check.textContent = "";
  }

  // The request as the engine takes it: with a *args value, the positional parameters and
  // it go in `args` (in order), the rest by keyword; otherwise all by keyword.
  function request() {
    const p = plan();
    const values = {};
    for (const field of host.querySelectorAll("[data-param]")) {
      const v = read(field);
      if (v !== undefined) values[field.dataset.param] = v;
    }
    const args = [];
    if (p && p.var_positional && values[p.var_positional] !== undefined) {
      for (const name of p.positional) {
        if (!(name in values)) break;
        args.push(values[name]);
        delete values[name];
      }
      const rest = values[p.var_positional];
      args.push(...(Array.isArray(rest) ? rest : [rest]));
      delete values[p.var_positional];
    }
    return { plan: select.value, args, kwargs: values };
  }

  // The engine's word on the request: "" when it would be accepted, else its problem, with the
  // field it names marked.
  async function validate() {
    const mine = ++asked;
    for (const f of host.querySelectorAll("[aria-invalid]")) f.removeAttribute("aria-invalid");
    let problem = "";
    try {
      await engine("/tasks/validate", "POST", request());
    } catch (error) {
      problem = error.message;
    }
    if (mine !== asked) return problem;
    const named = /argument '([^']+)'/.exec(problem);
    const field = named && host.querySelector(`[data-param="${CSS.escape(named[1])}"]`);
    if (field) field.setAttribute("aria-invalid", "true");
    check.textContent = problem ? problem : "✓ the engine would accept this";
    check.className = problem ? "error" : "ok";
    return problem;
  }

  function soon() {
    clearTimeout(timer);
    if (canSubmit()) timer = setTimeout(validate, CHECK_AFTER_MS);
  }

  async function submit(e) {
    e.preventDefault();
    clearTimeout(timer);
    const problem = await validate(); // checked first: a refused request is not sent
    const name = select.value;
    if (problem) { say(name + ": " + problem, true); return; }
    try {
      if (editing) {
        const task = await engine("/tasks/" + editing.task_id, "PATCH", request());
        say("changed task " + task.task_id + " (" + task.plan + ")");
        stopEditing();
      } else {
        const task = await engine("/tasks", "POST", request());
        say("queued " + name + " as task " + task.task_id + " (position " + task.position + ")");
      }
    } catch (error) {
      say(name + ": " + error.message, true);
    }
  }

  // A queued task into the form: its plan, each positional value in its field, the rest
  // of *args in the *args field, and its keywords.
  function edit(task) {
    editing = task;
    select.value = task.plan;
    const p = plan();
    fields(p);
    const values = { ...task.kwargs };
    const positional = p ? p.positional : [];
    task.args.slice(0, positional.length).forEach((v, i) => { values[positional[i]] = v; });
    if (p && p.var_positional && task.args.length > positional.length) {
      values[p.var_positional] = task.args.slice(positional.length);
    }
    for (const [name, value] of Object.entries(values)) {
      const field = host.querySelector(`[data-param="${CSS.escape(name)}"]`);
      if (field) field.value = field.tagName === "SELECT" ? JSON.stringify(value) : shown(value);
    }
    form.dataset.editing = task.task_id;
    submitButton.textContent = "Save task " + task.task_id.slice(0, 8);
    cancelButton.hidden = false;
    soon();
  }

  function stopEditing() {
    editing = null;
    delete form.dataset.editing;
    submitButton.textContent = "Submit";
    cancelButton.hidden = true;
  }

  async function load() {
    try {
      plans = await engine("/plans");
    } catch (error) {
      say("plans: " + error.message, true);
      return;
    }
    const chosen = select.value;
    select.replaceChildren(...plans.map((p) => el("option", { value: p.name }, p.name)));
    if (chosen) select.value = chosen;
    if (select.value !== chosen) fields(plan()); // else keep what was typed
  }

  select.addEventListener("change", () => { fields(plan()); soon(); });
  host.addEventListener("input", soon);
  host.addEventListener("change", soon);
  form.addEventListener("submit", submit);
  cancelButton.addEventListener("click", () => { stopEditing(); fields(plan()); });
  return { load, edit, editing: () => editing && editing.task_id, stopEditing };
}
