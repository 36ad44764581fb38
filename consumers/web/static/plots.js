// A stream's plot: curves with uPlot (decimated server-side), heat maps and frames on a canvas.
import { el } from "./common.js";
import uPlot from "./vendor/uplot.js";

const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"];
// viridis, 5 stops
const MAP = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];

export function color(v) {
  const x = Math.min(1, Math.max(0, v)) * (MAP.length - 1);
  const i = Math.min(MAP.length - 2, Math.floor(x));
  const f = x - i;
  return MAP[i].map((c, k) => Math.round(c + f * (MAP[i + 1][k] - c)));
}

function heat(canvas, image) {
  const rows = image.length, cols = rows ? image[0].length : 0;
  let lo = Infinity, hi = -Infinity;
  for (const row of image) for (const v of row) if (v !== null) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
  const off = document.createElement("canvas");
  off.width = Math.max(1, cols); off.height = Math.max(1, rows);
  const ctx = off.getContext("2d");
  const pixels = ctx.createImageData(off.width, off.height);
  const span = hi > lo ? hi - lo : 1;
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      const v = image[rows - 1 - r][c]; // row 0 at the bottom, as matplotlib's origin="lower"
      const at = 4 * (r * cols + c);
      if (v === null) { pixels.data[at + 3] = 0; continue; }
      const [R, G, B] = color((v - lo) / span);
      pixels.data[at] = R; pixels.data[at + 1] = G; pixels.data[at + 2] = B; pixels.data[at + 3] = 255;
    }
  }
  ctx.putImageData(pixels, 0, 0);
  const target = canvas.getContext("2d");
  target.imageSmoothingEnabled = false;
  target.clearRect(0, 0, canvas.width, canvas.height);
  target.drawImage(off, 0, 0, canvas.width, canvas.height);
  return [lo, hi];
}

// The x range from every value: x need not grow (a scan may run backwards).
function span(xs) {
  let lo = Infinity, hi = -Infinity;
  for (const v of xs) if (v !== null) { if (v < lo) lo = v; if (v > hi) hi = v; }
  if (lo === Infinity) return [0, 1];
  if (lo === hi) return [lo - 1, hi + 1];
  return [lo, hi];
}

export class StreamPlot {
  constructor(host) {
    this.host = host;
    this.chart = null;
    this.fields = null;
    this.canvas = null;
    this.spectra = new Map(); // field -> uPlot of its latest 1-D value
  }

  // Each 1-D array field's latest value as a line over its index.
  drawSpectra(spectra) {
    for (const [field, values] of Object.entries(spectra || {})) {
      const data = [values.map((_, i) => i), values];
      const chart = this.spectra.get(field);
      if (chart) { chart.setData(data); continue; }
      const host = el("div", { class: "spectrum", "data-field": field });
      this.host.querySelector(".plot-area").append(host);
      this.spectra.set(field, new uPlot({ width: 420, height: 220, scales: { x: { time: false } },
        axes: [{ label: field + " index" }, {}],
        series: [{ label: "index" }, { label: field + " (latest)", stroke: COLORS[1], width: 1.5 }] },
      data, host));
    }
  }

  draw(data) {
    const caption = this.host.querySelector(".plot-caption");
    this.drawSpectra(data.spectra);
    if (data.kind === "image" || data.kind === "grid") {
      const picture = data.kind === "image" ? data.frame : data.grid;
      if (picture) {
        if (!this.canvas) {
          this.canvas = el("canvas", { class: "heat", width: 360, height: 360 });
          this.host.querySelector(".plot-area").append(this.canvas);
        }
        const [lo, hi] = heat(this.canvas, picture.image);
        caption.textContent = picture.field + (data.kind === "grid"
          ? " over " + picture.axes.join(" × ") : " (latest frame, " + picture.shape.join("×") + ")") +
          " · range " + lo.toPrecision(4) + " … " + hi.toPrecision(4) + " · " + data.events + " events";
      }
    }
    if (data.kind === "image" && !Object.keys(data.lines.series).length) return;
    this.curves(data);
    if (data.kind === "lines") {
      caption.textContent = Object.keys(data.lines.series).join(", ") + " vs " + data.lines.x_field +
        " · " + data.events + " events" + (data.lines.decimated ? " (decimated to " + data.lines.x.length + " points)" : "");
    }
  }

  curves(data) {
    const lines = data.lines;
    const fields = Object.keys(lines.series);
    const columns = [lines.x, ...fields.map((f) => lines.series[f])];
    if (!this.chart || this.fields !== fields.join("\n")) {
      if (this.chart) this.chart.destroy();
      this.fields = fields.join("\n");
      const width = Math.max(320, Math.min(760, document.body.clientWidth - 60));
      this.chart = new uPlot({
        width, height: 300,
        scales: { x: { time: false, range: (u) => span(u.data[0]) } },
        axes: [{ label: lines.x_field }, {}],
        series: [{ label: lines.x_field }, ...fields.map((f, i) => ({
          label: f, stroke: COLORS[i % COLORS.length], width: 1.5,
          points: { show: lines.x.length < 200 },
        }))],
      }, columns, this.host.querySelector(".plot-area"));
    } else {
      this.chart.setData(columns);
    }
  }
}
