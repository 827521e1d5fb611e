// A small line chart in SVG: one or more series over time, an x axis of clock times, a y axis from
// zero to the largest value, and the same numbers as a table for screen readers.

import { h, svg } from "./dom.js";

const WIDTH = 640;
const HEIGHT = 200;
const PAD = { left: 56, right: 12, top: 12, bottom: 28 };

function short(value) {
  if (value >= 1e6) return `${(value / 1e6).toFixed(1)}M`;
  if (value >= 1e3) return `${(value / 1e3).toFixed(1)}k`;
  if (Number.isInteger(value) || value >= 100) return value.toFixed(0);
  return value.toFixed(2);
}

function clock(seconds) {
  return new Date(seconds * 1000).toTimeString().slice(0, 5);
}

// series: [{label, points: [[t seconds, value], ...]}]; start/end: the window in seconds.
export function lineChart({ title, unit, series, start, end }) {
  const top = Math.max(0, ...series.flatMap((s) => s.points.map(([, v]) => v)));
  const max = top > 0 ? top : 1; // all zero: a flat line at the bottom of a 0–1 scale
  const x = (t) => PAD.left + ((t - start) / Math.max(1, end - start)) * (WIDTH - PAD.left - PAD.right);
  const y = (v) => HEIGHT - PAD.bottom - (v / max) * (HEIGHT - PAD.top - PAD.bottom);
  const total = series.reduce((n, s) => n + s.points.length, 0);
  const chart = svg("svg", { viewBox: `0 0 ${WIDTH} ${HEIGHT}`, role: "img", "aria-label": `${title} (${unit})`, class: "chart" });
  for (const fraction of [0, 0.5, 1]) {
    const value = max * fraction;
    chart.append(
      svg("line", { x1: PAD.left, x2: WIDTH - PAD.right, y1: y(value), y2: y(value), class: "grid" }),
      svg("text", { x: PAD.left - 6, y: y(value) + 4, "text-anchor": "end", class: "tick" }, total ? short(value) : ""),
    );
  }
  for (const fraction of [0, 0.5, 1]) {
    const t = start + (end - start) * fraction;
    chart.append(svg("text", { x: x(t), y: HEIGHT - 8, "text-anchor": fraction === 0 ? "start" : fraction === 1 ? "end" : "middle", class: "tick" }, clock(t)));
  }
  series.forEach((s, i) => {
    const points = [...s.points].sort((a, b) => a[0] - b[0]);
    if (points.length === 1) {
      chart.append(svg("circle", { cx: x(points[0][0]), cy: y(points[0][1]), r: 3, class: `series s${i}` }));
    } else if (points.length > 1) {
      chart.append(svg("polyline", { points: points.map(([t, v]) => `${x(t).toFixed(1)},${y(v).toFixed(1)}`).join(" "), class: `series s${i}` }));
    }
  });
  if (!total) chart.append(svg("text", { x: WIDTH / 2, y: HEIGHT / 2, "text-anchor": "middle", class: "empty" }, "No data in this window"));
  const legend = h("ul", { class: "legend" }, series.map((s, i) => h("li", { class: `s${i}` }, s.label)));
  const table = h("table", { class: "visually-hidden" },
    h("caption", {}, `${title} (${unit})`),
    h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Time"), series.map((s) => h("th", { scope: "col" }, s.label)))),
    h("tbody", {}, [...new Set(series.flatMap((s) => s.points.map(([t]) => t)))].sort().map((t) =>
      h("tr", {}, h("th", { scope: "row" }, clock(t)), series.map((s) => {
        const point = s.points.find(([pt]) => pt === t);
        return h("td", {}, point ? short(point[1]) : "–");
      })))));
  // data-total-<i>: each series' sum, for a reader (or a test) that wants the numbers without the picture
  const totals = Object.fromEntries(series.map((s, i) => [`total-${i}`, String(s.points.reduce((n, [, v]) => n + v, 0))]));
  return h("figure", { class: "chart-box", dataset: { points: String(total), ...totals } }, h("figcaption", {}, `${title} `, h("span", { class: "muted" }, unit)), chart, legend, table);
}
