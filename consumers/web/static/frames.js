// Detector frames on the run page: each key's latest frame with a colour scale, a slider over
// the frames so far, a spectrum as a line. The service reads them from Tiled with its own
// credentials (/api/runs/{uid}/streams/{stream}/frames/{key}): the page never talks to Tiled.
import { el, replyError } from "./common.js";
import { color } from "./plots.js";
import uPlot from "./vendor/uplot.js";

const RETRY_MS = 250; // a frame the Tiled writer has not registered yet is asked for again
const RETRIES = 60;
const DRAWN_KEEP = 10000;
const STALE = Symbol("stale");
// What was drawn, for the tests and the benchmark (tests/benchmarks/bench_frame_latency.py).
const drawn = (window.__rsFramesDrawn = window.__rsFramesDrawn || []);
const counted = (window.__rsFramesCounted = window.__rsFramesCounted || []); // counts pushed

function colourBar(canvas) {
  const ctx = canvas.getContext("2d");
  for (let y = 0; y < canvas.height; y++) {
    const [r, g, b] = color(1 - y / (canvas.height - 1));
    ctx.fillStyle = "rgb(" + r + "," + g + "," + b + ")";
    ctx.fillRect(0, y, canvas.width, 1);
  }
}

// Tiled's PNG is grey levels (its 1st to 99th percentile): drawn through the colour map.
function paint(canvas, bitmap) {
  canvas.width = bitmap.width;
  canvas.height = bitmap.height;
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  ctx.drawImage(bitmap, 0, 0);
  const image = ctx.getImageData(0, 0, canvas.width, canvas.height);
  const d = image.data;
  for (let i = 0; i < d.length; i += 4) {
    const [r, g, b] = color(d[i] / 255);
    d[i] = r; d[i + 1] = g; d[i + 2] = b; d[i + 3] = 255;
  }
  ctx.putImageData(image, 0, 0);
}

export class FrameView {
  constructor(base, stream, key, info) {
    this.url = base + "/streams/" + encodeURIComponent(stream) + "/frames/" + encodeURIComponent(key);
    this.key = key;
    this.kind = info.kind;
    this.count = 0;
    this.follow = true; // the slider follows the latest frame until the user moves it back
    this.wanted = null;
    this.shown = null;
    this.busy = false;
    this.chart = null;
    this.image = el("canvas", { class: "frame-image", width: 1, height: 1 });
    this.bar = el("canvas", { class: "colour-bar", width: 14, height: 200 });
    this.high = el("span", { class: "scale-high" });
    this.low = el("span", { class: "scale-low" });
    this.plotHost = el("div", { class: "spectrum" });
    this.message = el("p", { class: "frame-message error", hidden: "" });
    this.slider = el("input", { type: "range", class: "frame-slider", min: 0, max: 0, value: 0,
      oninput: () => this.pick() });
    this.caption = el("span", { class: "frame-caption muted" });
    const picture = this.kind === "image"
      ? el("div", { class: "frame-body" }, this.image,
        el("div", { class: "colour-scale" }, this.high, this.bar, this.low))
      : this.plotHost;
    this.node = el("div", { class: "frame", "data-key": key },
      el("h4", null, key + " ", el("span", { class: "muted" },
        (this.kind === "image" ? "frame " : "spectrum ") + info.shape.join("×"))),
      picture, this.message, el("div", { class: "frame-nav" }, this.slider, " ", this.caption));
    if (this.kind === "image") colourBar(this.bar);
  }

  // The key has `count` frames now: follow the latest, or stay where the user put the slider.
  update(count) {
    if (count <= this.count) return;
    this.count = count;
    if (counted.length < DRAWN_KEEP) counted.push({ key: this.key, count, at: Date.now() / 1000 });
    this.slider.max = String(count - 1);
    if (this.follow) this.slider.value = String(count - 1);
    this.want(Number(this.slider.value));
  }

  pick() {
    const index = Number(this.slider.value);
    this.follow = index === this.count - 1;
    this.want(index);
  }

  want(index) {
    this.wanted = index;
    this.tell();
    if (!this.busy) this.load();
  }

  // The caption: the frame on screen, and the one wanted while Tiled has not that one yet.
  tell() {
    const shown = this.shown ?? this.wanted;
    const latest = this.follow ? " (latest)" : "";
    const waiting = shown !== this.wanted ? " · frame " + this.wanted + " not in Tiled yet" : "";
    this.caption.textContent = "frame " + shown + " of " + this.count + latest + waiting;
  }

  // Draw the wanted frame. While a run goes the Tiled writer registers frames in batches: the
  // service then answers with the newest frame Tiled has (X-Frame-Index), drawn, and the wanted
  // one is asked for again a moment later.
  async load() {
    this.busy = true;
    try {
      let behind = 0;
      while (this.wanted !== null && this.wanted !== this.shown) {
        const index = this.wanted;
        const reply = await this.fetchFrame(index);
        if (reply === STALE) continue;
        if (reply === null) return; // said why on the page
        const got = Number(reply.headers.get("X-Frame-Index") ?? index);
        if (reply.status !== 204 && got !== this.shown) {
          if (this.kind === "image") await this.drawImage(reply, got);
          else this.drawSpectrum(await reply.json(), got);
          this.shown = got;
          this.message.hidden = true;
          const at = Date.now() / 1000;
          if (drawn.length < DRAWN_KEEP) drawn.push({ key: this.key, index: got, at });
        }
        this.tell();
        if (got !== index && this.wanted === index) {
          if (++behind > RETRIES) return; // the writer is stuck: the next count asks again
          await new Promise((resume) => setTimeout(resume, RETRY_MS));
        }
      }
    } catch (error) {
      this.say("frame: " + error.message);
    } finally {
      this.busy = false;
    }
  }

  // The reply for frame `index`, asked again while Tiled does not have it yet; null on an error.
  async fetchFrame(index) {
    for (let attempt = 0; ; attempt++) {
      const shown = this.shown === null ? "" : "&shown=" + this.shown;
      const reply = await fetch(this.url + "?index=" + index + shown, { cache: "no-store" });
      if (reply.ok) return reply;
      const error = await replyError(reply);
      if (this.wanted !== index) return STALE; // another frame is wanted now: that one
      if (reply.status === 404 && attempt < RETRIES) {
        await new Promise((resume) => setTimeout(resume, RETRY_MS));
        continue;
      }
      this.say(reply.status === 503 || reply.status === 502
        ? "Frames unavailable: " + error.message : "frame " + index + ": " + error.message);
      return null;
    }
  }

  say(text) {
    this.message.textContent = text;
    this.message.hidden = false;
    this.image.hidden = true;
    this.node.classList.add("frame-unavailable");
  }

  async drawImage(reply, index) {
    const range = (reply.headers.get("X-Frame-Range") || "").split(" ");
    const bitmap = await createImageBitmap(await reply.blob());
    paint(this.image, bitmap);
    this.image.hidden = false;
    this.node.classList.remove("frame-unavailable");
    this.image.dataset.index = String(index);
    this.high.textContent = range[1] ?? "";
    this.low.textContent = range[0] ?? "";
  }

  drawSpectrum(body, index) {
    const ys = body.values.map((v) => (v === null || Number.isFinite(v) ? v : null));
    const data = [ys.map((_, i) => i), ys];
    if (!this.chart) {
      this.chart = new uPlot({ width: 420, height: 220, scales: { x: { time: false } },
        series: [{ label: "index" }, { label: this.key, stroke: "#1f77b4", width: 1.5 }] },
      data, this.plotHost);
    } else {
      this.chart.setData(data);
    }
    this.plotHost.dataset.index = String(index);
  }
}
