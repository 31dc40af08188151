// The goal page's sections as pure renderers: data from the API in, safe markup out.

import { html } from "./html.js";
import { duration, metric, ofBudget, usd, when } from "./format.js";
import { highlightDiff } from "./highlight.js";
import { markdown } from "./markdown.js";
import { seriesOf, sparkline } from "./sparkline.js";
import { checksBar, notRunning, statusBadge } from "./widgets.js";

/** The headline: objective, status, and the numbers the goals table shows. */
export function summary(goal, thread) {
  return html`<h1 id="goal-title" class="objective-title">${goal.objective}</h1>
  <p class="meta">${statusBadge(goal)}
    ${goal.status !== "pursuing" && goal.reason_text ? html`<span class="reason">${goal.reason_text}</span>` : ""}
    <span class="${goal.verified ? "verified" : "unverified"}">${goal.verified ? "verified" : "unverified"}</span>
    <span class="muted" title="goal id">${goal.goal_id}</span>
    ${thread ? html`<span class="muted" title="workspace">${thread.workspace}</span>` : ""}</p>
  ${notRunning(goal)}
  <dl class="stats">
    <div><dt>Checks</dt><dd id="goal-checks">${checksBar(goal)}</dd></div>
    <div><dt>Tokens</dt><dd id="goal-tokens" data-tokens="${goal.tokens_used}">${ofBudget(goal.tokens_used, goal.tokens_budget)}</dd></div>
    <div><dt>Cost</dt><dd>${ofBudget(goal.usd_used, goal.usd_budget, usd)}</dd></div>
    <div><dt>Elapsed</dt><dd>${ofBudget(goal.elapsed_s, goal.time_budget_s, duration)}</dd></div>
    <div><dt>Turns</dt><dd>${ofBudget(goal.turns, goal.turns_budget)}</dd></div>
  </dl>${reviewPoint(goal.review_point)}`;
}

/** At a review point: why the goal paused, and the files changed since the last one. */
function reviewPoint(point) {
  if (!point) return "";
  const files = point.files ?? [];
  const why = point.declared_by === "model" ? `the model asked for a review: ${point.note || "(no note)"}` : point.why;
  return html`<section id="review-point" class="review-point" aria-label="Review point">
    <p><strong>Review point:</strong> ${why}</p>
    <p>Changed since the last review point${point.since ? ` (since ${point.since.slice(0, 12)})` : ""}:
      ${files.length ? html`<code>${files.join(", ")}</code>` : html`<span class="muted">no files</span>`}</p>
    <p class="muted">Resume with a note (below) to tell the model what you want changed or kept.</p></section>`;
}

/** The contract: what done means, in its six parts plus the budget. */
export function contract(data) {
  if (!data) return html`<p class="muted">No contract.</p>`;
  const checks = data.checks ?? [];
  const constraints = data.constraints ?? {};
  const boundaries = data.boundaries ?? {};
  const iteration = data.iteration ?? {};
  const budget = data.budget ?? {};
  const list = (items) => (items?.length ? html`<ul class="plain">${items.map((i) => html`<li><code>${i}</code></li>`)}</ul>`
    : html`<span class="muted">none</span>`);
  return html`<dl class="contract">
    <dt>Outcome</dt><dd>${data.outcome}</dd>
    <dt>Checks</dt><dd>${checks.length ? html`<table class="compact"><thead><tr><th scope="col">Name</th>
      <th scope="col">Command</th><th scope="col">Target</th></tr></thead><tbody>${checks.map((check) => html`<tr>
      <td>${check.name}</td><td><code>${check.run}</code></td>
      <td>${check.metric ? check.metric.target : "exit 0"}</td></tr>`)}</tbody></table>`
      : html`<span class="muted">none: an unverified goal</span>`}</dd>
    <dt>Keep green</dt><dd>${list(constraints.keep_green)}</dd>
    <dt>May change</dt><dd>${list(boundaries.paths?.length ? boundaries.paths : ["everything not protected"])}</dd>
    <dt>Protected</dt><dd>${list(boundaries.protect)}</dd>
    <dt>Sandbox</dt><dd>${boundaries.sandbox ?? "—"}, network ${boundaries.network ? "on" : "off"}</dd>
    <dt>Iteration</dt><dd>${iteration.policy || html`<span class="muted">no policy note</span>`}
      <span class="muted">· max attempts ${iteration.max_attempts ?? "—"} · no-progress turns
      ${iteration.no_progress_turns ?? "—"}</span></dd>
    <dt>Blocked when</dt><dd>${data.blocked_when || html`<span class="muted">not said</span>`}</dd>
    <dt>Budget as set</dt><dd>${budgetLine(budget)}</dd>
  </dl>
  <details><summary>Contract as JSON</summary><pre class="json">${JSON.stringify(data, null, 2)}</pre></details>`;
}

function budgetLine(budget) {
  const parts = [];
  if (budget.tokens) parts.push(`${budget.tokens.toLocaleString("en-US")} tokens`);
  if (budget.usd) parts.push(usd(budget.usd));
  const time = budget.time_s ?? budget.time;
  if (time) parts.push(duration(time));
  if (budget.turns) parts.push(`${budget.turns} turns`);
  return parts.length ? parts.join(" · ") : html`<span class="muted">none</span>`;
}

export function checklist(items) {
  if (!items?.length) return html`<p class="muted">No checklist.</p>`;
  return html`<ol class="checklist">${items.map((item) => html`<li class="${item.done ? "done" : ""}">
    <span class="tick" aria-label="${item.done ? "done" : "not done"}">${item.done ? "☑" : "☐"}</span>
    ${item.item}</li>`)}</ol>`;
}

/** The child agents the goal's model started: status, where they write, what they changed and spent. */
export function children(items) {
  if (!items?.length) return html`<p class="muted">No child agents.</p>`;
  return html`<ul class="children">${items.map((child) => html`<li>
    <strong>${child.status}</strong> · ${child.paths.map((path) => path.replace(/^\//, "")).join(", ")} ·
    ${child.files_changed} file(s) · ${child.charged_tokens.toLocaleString()} tok — ${child.task}
    ${child.summary ? html`<div class="muted">${child.summary}</div>` : ""}</li>`)}</ul>`;
}

/** One entry per checkpoint, newest last: what the model reported, and what the harness recorded. */
export function timeline(checkpoints) {
  if (!checkpoints?.length) return html`<p class="muted">No checkpoints yet.</p>`;
  return html`<ol class="timeline">${checkpoints.map((point) => {
    const note = point.note ?? {};
    const fields = ["done", "verified", "remaining", "next", "assumptions"].filter((key) => note[key]);
    const files = point.files_touched ?? [];
    const commit = point.commit ?? point.sha ?? point.git_commit;
    return html`<li>
      <div class="timeline-head"><strong>Turn ${point.turn ?? "?"}</strong>
        <span class="muted">${point.kind ?? ""}${point.tokens ? ` · ${point.tokens.toLocaleString("en-US")} tokens` : ""}
        ${commit ? html` · <code>${String(commit).slice(0, 10)}</code>` : ""}${point.ts ? ` · ${when(point.ts)}` : ""}</span></div>
      ${fields.length ? html`<dl class="note">${fields.map((key) => html`<dt>${key}</dt><dd>${asText(note[key])}</dd>`)}</dl>`
        : html`<p class="muted">no note</p>`}
      ${files.length ? html`<p class="small">files: ${files.map((f, i) => html`${i ? ", " : ""}<code>${f}</code>`)}</p>` : ""}
      ${point.commands?.length ? html`<p class="small muted">${point.commands.length} command(s) run</p>` : ""}
    </li>`;
  })}</ol>`;
}

function asText(value) {
  return Array.isArray(value) ? value.join("; ") : String(value);
}

/** The newest evidence, each metric with its trend over turns as a sparkline. */
export function evidence(items, trend) {
  if (!items?.length) return html`<p class="muted">No evidence yet.</p>`;
  return html`<table class="evidence"><thead><tr><th scope="col">Check</th><th scope="col">Kind</th>
    <th scope="col">Result</th><th scope="col">Exit</th><th scope="col">Metric</th><th scope="col">Target</th>
    <th scope="col">Trend</th></tr></thead><tbody>${items.map((item) => html`<tr>
      <td>${item.name}</td><td>${item.kind}</td>
      <td><span class="badge ${item.passed ? "badge-achieved" : "badge-unmet"}">${item.passed ? "pass" : "fail"}</span></td>
      <td class="num">${item.exit_code ?? "—"}</td><td class="num">${metric(item.metric)}</td>
      <td>${item.target ?? "—"}</td><td>${sparkline(item.name, seriesOf(trend, item.name))}</td>
    </tr>`)}</tbody></table>`;
}

export function diff(data) {
  if (!data?.diff) return html`<p class="muted">No changes on the goal branch yet.</p>`;
  const range = data.base || data.head ? `${String(data.base ?? "").slice(0, 10)}..${String(data.head ?? "").slice(0, 10)}` : "";
  return html`${range ? html`<p class="small muted">${range}</p>` : ""}
    <pre class="diff" tabindex="0" aria-label="diff ${range}"><code>${highlightDiff(data.diff)}</code></pre>`;
}

export function report(text) {
  if (!text) return html`<p class="muted">No report yet.</p>`;
  return html`<div class="markdown">${markdown(text)}</div>`;
}
