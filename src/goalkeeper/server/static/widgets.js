// Pieces both pages share: the status badge, the checks bar, and a keyed throttle for live refreshes.

import { html } from "./html.js";

const STATUS_WORDS = {
  pursuing: "pursuing",
  paused: "paused",
  achieved: "achieved",
  unmet: "unmet",
  budget_limited: "budget limited",
};

/** A coloured badge for a goal status; the reason (a typed code) is its tooltip. */
export function statusBadge(goal) {
  if (!goal) return html`<span class="badge badge-none">no goal</span>`;
  // An achieved goal with no checks says so: only the model's audit ended it.
  // A pursuing goal in a `wait` shows `waiting`: no model request is made until its command exits 0.
  const waiting = goal.status === "pursuing" && goal.waiting ? goal.waiting : null;
  const word = goal.status === "achieved" && goal.verified === false
    ? "achieved (unverified)" : waiting ? "waiting" : STATUS_WORDS[goal.status] ?? goal.status;
  const reason = goal.reason_text || (goal.reason && goal.reason !== "none" ? goal.reason : "");
  const title = waiting ? `waiting until \`${waiting.until}\` exits 0`
    : reason ? `${word} (${reason.replaceAll("_", " ")})` : word;
  return html`<span class="badge badge-${goal.status}" data-status="${goal.status}" title="${title}">${word}</span>`;
}

/** Under a pursuing goal that nothing runs (the server never runs one): say so, and the command that runs it. */
export function notRunning(goal) {
  if (!goal || goal.status !== "pursuing" || goal.runner || !goal.run_command) return "";
  return html`<div class="not-running muted small" title="no runner holds this goal">· not running:
    <code class="run-command">${goal.run_command}</code></div>`;
}

/** Checks passing as a progress bar, or an "unverified" label for a goal with no checks. */
export function checksBar(goal) {
  if (!goal.verified || !goal.checks_total) return html`<span class="muted" title="no checks: unverified">unverified</span>`;
  const percent = Math.round((100 * goal.checks_passing) / goal.checks_total);
  const label = `${goal.checks_passing} of ${goal.checks_total} checks passing`;
  // A <progress> element, not a div sized by a style attribute: the CSP allows no inline style.
  return html`<div class="checks" title="${label}">
    <progress class="bar${percent === 100 ? " bar-full" : ""}" max="${goal.checks_total}" value="${goal.checks_passing}"
      aria-label="${label}" aria-valuemin="0" aria-valuemax="${goal.checks_total}"
      aria-valuenow="${goal.checks_passing}" data-passing="${goal.checks_passing}">${percent}%</progress>
    <span class="checks-count">${goal.checks_passing}/${goal.checks_total}</span>
  </div>`;
}

/**
 * Run `fn(key)` at most once per `ms` for each key: the first call runs at once, calls inside the window
 * fold into one trailing run, so a burst of events costs at most two fetches.
 */
export function keyedThrottle(fn, ms) {
  const lastRun = new Map();
  const pending = new Set();
  return (key) => {
    if (pending.has(key)) return;
    const wait = Math.max(0, (lastRun.get(key) ?? -Infinity) + ms - Date.now());
    pending.add(key);
    setTimeout(() => {
      pending.delete(key);
      lastRun.set(key, Date.now());
      fn(key);
    }, wait);
  };
}
