// A metric's trend over turns as a small inline SVG line, labelled for screen readers.

import { html } from "./html.js";
import { metric } from "./format.js";

const WIDTH = 120;
const HEIGHT = 28;
const PAD = 3;

/** The points of `name` in a metric_trend list ([{turn, name: value}, ...]), in turn order. */
export function seriesOf(trend, name) {
  return (trend ?? [])
    .filter((point) => typeof point[name] === "number")
    .map((point) => ({ turn: point.turn, value: point[name] }))
    .sort((a, b) => a.turn - b.turn);
}

/** An SVG sparkline of `points` ({turn, value}); a dash when there is nothing to draw. */
export function sparkline(name, points) {
  if (points.length === 0) return html`<span class="muted" aria-label="no trend for ${name}">—</span>`;
  const values = points.map((p) => p.value);
  const low = Math.min(...values);
  const high = Math.max(...values);
  const span = high - low || 1;
  const step = points.length > 1 ? (WIDTH - 2 * PAD) / (points.length - 1) : 0;
  const xy = points.map((p, i) => [
    PAD + (points.length > 1 ? i * step : (WIDTH - 2 * PAD) / 2),
    HEIGHT - PAD - ((p.value - low) / span) * (HEIGHT - 2 * PAD),
  ]);
  const line = xy.map(([x, y]) => `${x.toFixed(1)},${y.toFixed(1)}`).join(" ");
  const [lastX, lastY] = xy[xy.length - 1];
  const label = `${name} over ${points.length} turn${points.length === 1 ? "" : "s"}: `
    + points.map((p) => `turn ${p.turn}: ${metric(p.value)}`).join(", ");
  return html`<svg class="sparkline" role="img" aria-label="${label}" width="${WIDTH}" height="${HEIGHT}"
    viewBox="0 0 ${WIDTH} ${HEIGHT}"><title>${label}</title>
    <polyline points="${line}" fill="none" stroke="currentColor" stroke-width="1.5"
      stroke-linejoin="round" stroke-linecap="round"/>
    <circle cx="${lastX.toFixed(1)}" cy="${lastY.toFixed(1)}" r="2.5" fill="currentColor"/></svg>`;
}
