// The goals table: one row per thread, kept current from the all-threads event stream.

import { getJSON, streamEvents, Unauthorized } from "./api.js";
import { html, mount, replace } from "./html.js";
import { checkpointLine, duration, ofBudget, usd } from "./format.js";
import { checksBar, keyedThrottle, notRunning, statusBadge } from "./widgets.js";

const REFRESH_MS = 250;

/** Show every thread's goal in `root` until `signal` aborts. */
export async function showGoals(root, { signal, onUnauthorized, onStreamState }) {
  mount(root, html`<section aria-labelledby="goals-title">
    <h1 id="goals-title">Goals</h1>
    <table class="goals" aria-describedby="goals-title">
      <thead><tr>
        <th scope="col">Goal</th><th scope="col">Status</th><th scope="col">Checks</th>
        <th scope="col">Tokens used / budget</th><th scope="col">Cost</th><th scope="col">Elapsed</th>
        <th scope="col">Last checkpoint</th>
      </tr></thead>
      <tbody id="goal-rows"><tr><td colspan="7" class="muted">Loading…</td></tr></tbody>
    </table>
  </section>`);
  const body = root.querySelector("#goal-rows");
  const threads = new Map();
  const threadOfGoal = new Map();

  const guard = (promise) => promise.catch((error) => {
    if (error instanceof Unauthorized) onUnauthorized();
    else if (!signal.aborted) console.warn(error);
  });

  async function loadAll() {
    const list = (await getJSON("/threads")) ?? [];
    if (signal.aborted) return;
    threads.clear();
    for (const thread of list) remember(thread);
    render();
  }

  function remember(thread) {
    threads.set(thread.thread_id, thread);
    if (thread.goal) threadOfGoal.set(thread.goal.goal_id, thread.thread_id);
  }

  function render() {
    const rows = [...threads.values()].sort((a, b) => (b.created_at ?? 0) - (a.created_at ?? 0));
    mount(body, rows.length ? html`${rows.map(row)}`
      : html`<tr><td colspan="7" class="muted">No threads yet. Set a goal with <code>gk goal</code>.</td></tr>`);
  }

  const refreshThread = keyedThrottle((threadId) => guard((async () => {
    const goal = await getJSON(`/threads/${encodeURIComponent(threadId)}/goal`);
    if (signal.aborted) return;
    const thread = threads.get(threadId);
    if (!thread) return;
    remember({ ...thread, goal });
    const current = body.querySelector(`tr[data-thread="${CSS.escape(threadId)}"]`);
    if (current) replace(current, row(threads.get(threadId)));
    else render();
  })()), REFRESH_MS);
  const refreshAll = keyedThrottle(() => guard(loadAll()), REFRESH_MS);

  function onEvent({ data }) {
    if (!data || typeof data !== "object") return;
    const threadId = data.thread_id ?? threadOfGoal.get(data.goal_id);
    if (threadId && threads.has(threadId) && data.kind !== "goal_set") refreshThread(threadId);
    else refreshAll("all");
  }

  await guard(loadAll());
  if (signal.aborted) return;
  streamEvents("/events/stream", {
    signal,
    onEvent,
    onState: (state) => {
      if (state === "unauthorized") onUnauthorized();
      else onStreamState(state);
      if (state === "live") refreshAll("all"); // catch up on anything missed while disconnected
    },
  });
}

/** "fork of <parent>" under a forked thread's name, linking to the parent. */
function forkOf(thread) {
  if (!thread.parent_thread_id) return "";
  return html`<div class="muted small fork-of">fork of
    <a href="#/threads/${encodeURIComponent(thread.parent_thread_id)}">${thread.parent_thread_id}</a></div>`;
}

function row(thread) {
  const goal = thread.goal;
  const link = `#/threads/${encodeURIComponent(thread.thread_id)}`;
  if (!goal) {
    return html`<tr data-thread="${thread.thread_id}">
      <td><a href="${link}">${thread.workspace}</a><div class="muted small">no goal</div>${forkOf(thread)}</td>
      <td>${statusBadge(null)}</td><td colspan="5" class="muted">—</td></tr>`;
  }
  return html`<tr data-thread="${thread.thread_id}" data-goal="${goal.goal_id}">
    <td class="objective"><a href="${link}">${goal.objective}</a>
      <div class="muted small" title="${thread.workspace}">${thread.workspace}</div>${forkOf(thread)}</td>
    <td class="status">${statusBadge(goal)}${notRunning(goal)}</td>
    <td class="checks-cell">${checksBar(goal)}</td>
    <td class="tokens num" data-tokens="${goal.tokens_used}">${ofBudget(goal.tokens_used, goal.tokens_budget)}</td>
    <td class="cost num">${usd(goal.usd_used)}</td>
    <td class="elapsed num">${duration(goal.elapsed_s)}</td>
    <td class="checkpoint">${lastCheckpoint(goal.last_checkpoint)}</td>
  </tr>`;
}

function lastCheckpoint(checkpoint) {
  if (!checkpoint) return html`<span class="muted">—</span>`;
  return typeof checkpoint === "string" ? checkpoint : checkpointLine(checkpoint);
}
