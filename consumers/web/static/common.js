// Shared by the pages: JSON requests, the push channel, formatting. ES modules, no build step.

// The error a failed reply stands for: the service's `detail` when it sent one.
export async function replyError(reply) {
  let body = null;
  try { body = await reply.json(); } catch (e) { body = null; }
  const detail = body && body.detail !== undefined ? body.detail : reply.statusText;
  const error = new Error(typeof detail === "string" ? detail : JSON.stringify(detail));
  error.status = reply.status;
  return error;
}

export async function json(path, options) {
  const reply = await fetch(path, options);
  if (!reply.ok) throw await replyError(reply);
  return reply.json();
}

// One EventSource on /api/events; onChange(summaries, removedUids) per message.
// The page's #connection says whether the channel is live.
export function listen(query, onChange) {
  const connection = document.getElementById("connection");
  const source = new EventSource("/api/events" + (query ? "?" + query : ""));
  source.onmessage = (message) => {
    const change = JSON.parse(message.data);
    onChange(change.runs, change.removed);
  };
  source.onopen = () => { connection.textContent = "live"; connection.className = "live"; };
  source.onerror = () => { connection.textContent = "reconnecting…"; connection.className = "muted"; };
  return source;
}

export function elapsed(summary) {
  const end = summary.stop_time || (summary.status === "open" ? Date.now() / 1000 : summary.time);
  const s = Math.max(0, end - summary.time);
  if (s < 60) return s.toFixed(1) + " s";
  if (s < 3600) return Math.floor(s / 60) + " min " + Math.floor(s % 60) + " s";
  return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
}

export function clock(t) {
  const d = new Date(t * 1000);
  const pad = (n) => String(n).padStart(2, "0");
  return pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds()) +
    "." + Math.floor((t % 1) * 10);
}

// A start time as a day's work reads it: "2026-12-06 14:07:34", in the browser's time zone.
export function dateTime(t) {
  const d = new Date(t * 1000);
  const pad = (n) => String(n).padStart(2, "0");
  return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + " " +
    pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds());
}

// "primary 7, baseline 2": events per stream of a run's summary.
export function streamCounts(summary) {
  const parts = Object.entries(summary.streams).map(([name, n]) => name + " " + n);
  return parts.length ? parts.join(", ") : "no events";
}

export function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined) continue;
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const child of children) {
    if (child !== null && child !== undefined) node.append(child);
  }
  return node;
}
