"use strict";
// Line charts on <canvas>, drawn by hand (no library): axes with round ticks, one or more series, a legend. The x
// axis counts (steps, epochs) unless `integerX` is false.
//
//   const chart = lineChart(container, {title: "loss", x: "step"});
//   chart.draw([{name: "training", points: [[x, y], ...], color: "#2f6fde"}, ...]);

const CHART_COLORS = ["#2f6fde", "#d9822b", "#1e8e3e", "#8e44ad", "#b3261e"];

// Round tick values covering [low, high]: steps of 1, 2 or 5 times a power of ten (whole numbers at least, for
// an axis of counts). Returns {values, step}.
function ticks(low, high, integer = false, count = 5) {
  if (!(high > low)) { const pad = integer ? 1 : Math.abs(low) * 0.1 || 1; low -= pad; high += pad; }
  const raw = (high - low) / count;
  const power = 10 ** Math.floor(Math.log10(raw));
  let step = [1, 2, 5, 10].map(f => f * power).find(s => s >= raw);
  if (integer) step = Math.max(1, Math.round(step));
  const values = [];
  for (let v = Math.floor(low / step) * step; v <= high + step * 1e-9; v += step) values.push(+v.toPrecision(12));
  if (values[values.length - 1] < high) values.push(+(values[values.length - 1] + step).toPrecision(12));
  return {values, step};
}

// A tick's label with as many digits as the step between ticks needs (6.25e-4 and 6.20e-4, not 6.2e-4 twice).
function tickLabel(value, step) {
  if (value === 0) return "0";
  const top = Math.floor(Math.log10(Math.abs(value) || step));
  const last = Math.floor(Math.log10(step));
  const tiny = Math.abs(value) < 1e-3 || Math.abs(value) >= 1e5;
  if (value !== 0 && tiny) return value.toExponential(Math.max(0, top - last));
  return value.toFixed(Math.max(0, -last));
}

function lineChart(container, {title, x = "step", y = "", integerX = true}) {
  const canvas = el("canvas");
  const legend = el("div", {class: "legend"});
  const figure = el("figure", {class: "chart"}, el("figcaption", {text: title}), canvas, legend);
  container.append(figure);
  let last = [];

  function draw(series) {
    last = series;
    const width = canvas.clientWidth || 400, height = canvas.clientHeight || 200;
    const ratio = window.devicePixelRatio || 1;
    canvas.width = Math.round(width * ratio); canvas.height = Math.round(height * ratio);
    const g = canvas.getContext("2d");
    g.setTransform(ratio, 0, 0, ratio, 0, 0);
    g.clearRect(0, 0, width, height);
    const points = series.flatMap(s => s.points);
    canvas.dataset.points = String(points.length);  // for tests and people reading the DOM
    legend.innerHTML = "";
    series.forEach((s, i) => legend.append(el("span", {class: "key"}, swatch(s.color || CHART_COLORS[i]),
                                              `${s.name} (${s.points.length})`)));
    g.font = "11px system-ui, sans-serif";
    g.fillStyle = "#6b7385";
    if (!points.length) { g.fillText("no points yet", width / 2 - 30, height / 2); return; }
    const xTicks = ticks(Math.min(...points.map(p => p[0])), Math.max(...points.map(p => p[0])), integerX);
    const yTicks = ticks(Math.min(...points.map(p => p[1])), Math.max(...points.map(p => p[1])));
    const xs = xTicks.values, ys = yTicks.values;
    const left = 8 + Math.max(...ys.map(v => g.measureText(tickLabel(v, yTicks.step)).width)), right = width - 10;
    const top = 8, bottom = height - 30;
    const px = v => left + (v - xs[0]) / (xs[xs.length - 1] - xs[0]) * (right - left);
    const py = v => bottom - (v - ys[0]) / (ys[ys.length - 1] - ys[0]) * (bottom - top);
    g.strokeStyle = "#e8ebf1"; g.lineWidth = 1;
    g.textAlign = "right"; g.textBaseline = "middle";
    for (const v of ys) {
      g.beginPath(); g.moveTo(left, py(v)); g.lineTo(right, py(v)); g.stroke();
      g.fillText(tickLabel(v, yTicks.step), left - 4, py(v));
    }
    g.textAlign = "center"; g.textBaseline = "top";
    for (const v of xs) g.fillText(tickLabel(v, xTicks.step), px(v), bottom + 4);
    g.fillText(x + (y ? ` · ${y}` : ""), (left + right) / 2, bottom + 16);
    series.forEach((s, i) => {
      g.strokeStyle = g.fillStyle = s.color || CHART_COLORS[i];
      g.lineWidth = 1.5;
      g.beginPath();
      s.points.forEach(([vx, vy], j) => (j ? g.lineTo(px(vx), py(vy)) : g.moveTo(px(vx), py(vy))));
      g.stroke();
      if (s.points.length < 60 || s.dots) {
        for (const [vx, vy] of s.points) { g.beginPath(); g.arc(px(vx), py(vy), 2.5, 0, 2 * Math.PI); g.fill(); }
      }
    });
  }

  new ResizeObserver(() => draw(last)).observe(canvas);  // redrawn at its size; gone with the element
  return {draw, canvas};
}

function swatch(color) {
  const span = el("span", {class: "swatch"});
  span.style.background = color;
  return span;
}
