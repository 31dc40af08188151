// How numbers read on the page: token counts, dollars, durations, timestamps. Pure functions.

const INTEGER = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });

export function count(value) {
  return value === null || value === undefined ? "—" : INTEGER.format(value);
}

/** `used / budget`, or just `used` when there is no budget. */
export function ofBudget(used, budget, show = count) {
  return budget === null || budget === undefined ? show(used) : `${show(used)} / ${show(budget)}`;
}

export function usd(value) {
  if (value === null || value === undefined) return "—";
  return `$${value < 1 && value > 0 ? value.toFixed(4) : value.toFixed(2)}`;
}

/** 45s, 12m 03s, 2h 05m: the same shape `gk status` prints. */
export function duration(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  if (seconds < 60) return `${seconds < 10 ? seconds.toFixed(1) : Math.round(seconds)}s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes}m ${String(Math.round(seconds % 60)).padStart(2, "0")}s`;
  return `${Math.floor(minutes / 60)}h ${String(minutes % 60).padStart(2, "0")}m`;
}

/** A store timestamp (seconds since the epoch) in local time. */
export function when(ts) {
  if (!ts) return "—";
  return new Date(ts * 1000).toLocaleString("en-GB", { dateStyle: "short", timeStyle: "medium" });
}

/** A metric value, short. */
export function metric(value) {
  if (value === null || value === undefined) return "—";
  return Number.isInteger(value) ? String(value) : Number(value).toPrecision(4).replace(/\.?0+$/, "");
}

/** The one-line gist of a checkpoint: what the model said it did, or the turn's kind. */
export function checkpointLine(checkpoint) {
  if (!checkpoint) return "";
  const note = checkpoint.note ?? {};
  const text = note.done || note.next || `${checkpoint.kind ?? "turn"} turn`;
  return checkpoint.turn !== undefined ? `turn ${checkpoint.turn}: ${text}` : text;
}
