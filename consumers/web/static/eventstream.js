// Server-Sent Events read with fetch(): unlike EventSource, the request can carry headers,
// so the engine panel's token travels in the Authorization header and never in a URL.
import { replyError } from "./common.js";

// Calls onEvent(name, data) per event (data parsed as JSON) until the stream ends (resolves)
// or fails (rejects: an HTTP error carries .status). `signal` aborts it.
export async function readEvents(path, { headers, signal }, onEvent) {
  const reply = await fetch(path, { headers, signal, cache: "no-store" });
  if (!reply.ok) throw await replyError(reply);
  const reader = reply.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let name = "message";
  let data = [];
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n")) >= 0) {
      const line = buffer.slice(0, end).replace(/\r$/, "");
      buffer = buffer.slice(end + 1);
      if (line === "") { // a blank line ends an event
        if (data.length) onEvent(name, JSON.parse(data.join("\n")));
        name = "message";
        data = [];
        continue;
      }
      if (line.startsWith(":")) continue; // a comment: the engine's keep-alive
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      const text = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
      if (field === "event") name = text;
      else if (field === "data") data.push(text);
    }
  }
}
