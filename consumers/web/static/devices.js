// The engine panel's device list: each device, its class, connected or the error that keeps
// plans from it, and a button that asks the engine to connect it again (after an IOC restart).
// Read when the engine's event stream (re)opens, on a "device" event, and from a reconnect's
// answer: no polling.
import { el } from "./common.js";

const list = document.getElementById("device-list");
const summary = document.getElementById("devices-summary");

function row(device, reconnect) {
  const state = device.connected ? "connected" : "not connected: " + (device.error || "?");
  return el("li", { class: "device", "data-device": device.name,
    "data-connected": String(device.connected) },
    el("span", { class: "device-name" }, device.name),
    el("span", { class: "device-class muted" }, device.class + (device.ophyd_async ? " · ophyd-async" : "")),
    el("span", { class: device.connected ? "device-state ok" : "device-state error" }, state),
    el("button", { type: "button", class: "reconnect", "data-needs": "expert",
      onclick: () => reconnect(device.name) },
      "Reconnect"));
}

function counted() {
  const rows = [...list.children];
  const up = rows.filter((li) => li.dataset.connected === "true").length;
  summary.textContent = up + " of " + rows.length + " connected";
}

// request(path, method) -> JSON through the engine proxy; say(text, isError) tells the user.
export function deviceList(request, say) {
  async function reconnect(name) {
    const li = list.querySelector(`[data-device="${CSS.escape(name)}"]`);
    const button = li && li.querySelector("button.reconnect");
    if (button) { button.disabled = true; button.textContent = "Connecting…"; }
    try {
      const device = await request("/devices/" + encodeURIComponent(name) + "/connect", "POST");
      show(device);
      say(name + ": " + (device.connected ? "connected" : "still not connected"), !device.connected);
    } catch (error) {
      say(name + ": " + error.message, true);
      if (button) { button.disabled = false; button.textContent = "Reconnect"; }
    }
  }

  function show(device) {
    const fresh = row(device, reconnect);
    const known = list.querySelector(`[data-device="${CSS.escape(device.name)}"]`);
    if (known) known.replaceWith(fresh); else list.append(fresh);
    counted();
  }

  async function load() {
    try {
      const devices = await request("/devices");
      list.replaceChildren(...devices.map((d) => row(d, reconnect)));
      counted();
    } catch (error) {
      summary.textContent = "not known: " + error.message;
    }
  }

  return { load, show };
}
