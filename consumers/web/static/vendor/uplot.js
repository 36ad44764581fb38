// uPlot as an ES module. uPlot.iife.min.js (uPlot's own build, unchanged) is a classic
// script that sets the global `uPlot`: run.html loads it before the page's modules.
const uPlot = globalThis.uPlot;
if (typeof uPlot !== "function") throw new Error("uPlot.iife.min.js is not loaded before the modules");
export default uPlot;
