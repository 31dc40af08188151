// The batch views (`gk batch`): every batch (#/batches), and one batch as a live table (#/batches/ID) with a
// row per goal and the totals against the batch's caps. Kept current from the all-threads event stream, and
// polled once a second while a goal still runs, so the elapsed times move between events.

import { getJSON, streamEvents, Unauthorized } from "./api.js";
import { html, mount } from "./html.js";
import { count, duration, ofBudget, usd, when } from "./format.js";
import { checksBar, keyedThrottle, statusBadge } from "./widgets.js";

const LIST_REFRESH_MS = 1000;
const BATCH_REFRESH_MS = 250;
const POLL_MS = 1000;
const UNENDED = new Set(["waiting", "pursuing"]);

/** Follow the all-threads stream until `signal` aborts; `refresh()` on each event and on (re)connecting. */
function follow(refresh, { signal, onUnauthorized, onStreamState }) {
  streamEvents("/events/stream", {
    signal,
    onEvent: () => refresh(),
    onState: (state) => {
      if (state === "unauthorized") onUnauthorized();
      else onStreamState(state);
      if (state === "live") refresh(); // catch up on anything missed while disconnected
    },
  });
}

function guarded(signal, onUnauthorized, say) {
  return (promise) => promise.catch((error) => {
    if (error instanceof Unauthorized) onUnauthorized();
    else if (!signal.aborted) say(error.message);
  });
}

/** Show every batch in `root` until `signal` aborts. */
export async function showBatches(root, context) {
  const { signal, onUnauthorized } = context;
  document.title = "batches · goalkeeper";
  mount(root, html`<section aria-labelledby="batches-title">
    <h1 id="batches-title">Batches</h1>
    <table class="goals batches" aria-describedby="batches-title">
      <thead><tr>
        <th scope="col">Batch</th><th scope="col">Repository</th><th scope="col">Started</th>
        <th scope="col">Goals ended</th><th scope="col">Statuses</th><th scope="col">Tokens</th>
        <th scope="col">Cost</th><th scope="col">Elapsed</th>
      </tr></thead>
      <tbody id="batch-list"><tr><td colspan="8" class="muted">Loading…</td></tr></tbody>
    </table>
    <p id="batches-message" class="error" role="alert"></p>
  </section>`);
  const body = root.querySelector("#batch-list");
  const guard = guarded(signal, onUnauthorized, (text) => { root.querySelector("#batches-message").textContent = text; });

  async function load() {
    const list = (await getJSON("/batches")) ?? [];
    if (signal.aborted) return;
    mount(body, list.length ? html`${list.map(batchLine)}`
      : html`<tr><td colspan="8" class="muted">No batches yet. Run many goals at once with
        <code>gk batch goals/ --parallel 4</code>.</td></tr>`);
  }

  await guard(load());
  if (signal.aborted) return;
  const refresh = keyedThrottle(() => guard(load()), LIST_REFRESH_MS);
  follow(() => refresh("all"), context);
}

function batchLine(batch) {
  const { totals } = batch;
  return html`<tr data-batch="${batch.batch_id}">
    <td><a href="#/batches/${encodeURIComponent(batch.batch_id)}">${batch.batch_id}</a></td>
    <td class="small" title="${batch.repository}">${batch.repository}</td>
    <td class="small">${when(batch.created_at)}</td>
    <td class="num">${totals.ended} / ${totals.goals}</td>
    <td class="small">${statusCounts(totals.counts)}</td>
    <td class="num">${ofBudget(totals.tokens, batch.caps.tokens)}</td>
    <td class="num">${ofBudget(totals.usd, batch.caps.usd, usd)}</td>
    <td class="num">${ofBudget(totals.elapsed_s, batch.caps.time_s, duration)}</td>
  </tr>`;
}

function statusCounts(counts) {
  return Object.entries(counts).map(([status, n]) => `${n} ${status.replaceAll("_", " ")}`).join(" · ");
}

/** Show batch `batchId` as a live table in `root` until `signal` aborts. */
export async function showBatch(root, batchId, context) {
  const { signal, onUnauthorized } = context;
  mount(root, html`<section aria-labelledby="batch-title">
    <p class="small"><a href="#/batches">← all batches</a></p>
    <h1 id="batch-title">Batch ${batchId}</h1>
    <p id="batch-meta" class="muted"></p>
    <table class="goals batch" aria-describedby="batch-title">
      <thead><tr>
        <th scope="col">Goal</th><th scope="col">Status</th><th scope="col">Checks</th>
        <th scope="col">Tokens</th><th scope="col">Cost</th><th scope="col">Elapsed</th>
      </tr></thead>
      <tbody id="batch-rows"><tr><td colspan="6" class="muted">Loading…</td></tr></tbody>
      <tfoot id="batch-totals"></tfoot>
    </table>
    <p id="batch-message" class="error" role="alert"></p>
  </section>`);
  const $ = (selector) => root.querySelector(selector);
  const guard = guarded(signal, onUnauthorized, (text) => { $("#batch-message").textContent = text; });
  let unended = true;

  async function load() {
    const batch = await getJSON(`/batches/${encodeURIComponent(batchId)}`);
    if (signal.aborted) return;
    if (!batch) {
      mount($("#batch-rows"), html`<tr><td colspan="6" class="muted">No batch ${batchId} in the store
        (<a href="#/batches">all batches</a>).</td></tr>`);
      unended = false;
      return;
    }
    document.title = `${batch.totals.ended}/${batch.totals.goals} ended · batch ${batchId} · goalkeeper`;
    mount($("#batch-meta"), html`<span title="${batch.repository}">${batch.repository}</span> · started
      ${when(batch.created_at)} · ${batch.parallel} at once`);
    mount($("#batch-rows"), html`${batch.rows.map(goalRow)}`);
    mount($("#batch-totals"), totalsRow(batch));
    unended = batch.rows.some((row) => UNENDED.has(row.status));
  }

  await guard(load());
  if (signal.aborted) return;
  const refresh = keyedThrottle(() => guard(load()), BATCH_REFRESH_MS);
  follow(() => refresh("batch"), context);
  const timer = setInterval(() => { if (unended) refresh("batch"); }, POLL_MS);
  signal.addEventListener("abort", () => clearInterval(timer), { once: true });
}

function goalRow(row) {
  const name = row.thread_id
    ? html`<a href="#/threads/${encodeURIComponent(row.thread_id)}">${row.name}</a>` : row.name;
  const badge = statusBadge({ status: row.status, verified: row.verified, reason: row.error ?? row.reason });
  return html`<tr data-name="${row.name}" data-status="${row.status}" data-running="${row.running}">
    <td class="objective">${name}<div class="muted small" title="${row.file}">${row.file}</div></td>
    <td class="status">${badge}${row.error ? html`<div class="error small">${row.error}</div>` : ""}</td>
    <td class="checks-cell">${checksBar(row)}</td>
    <td class="tokens num">${count(row.tokens)}</td>
    <td class="cost num">${usd(row.usd)}</td>
    <td class="elapsed num">${duration(row.elapsed_s)}</td>
  </tr>`;
}

function totalsRow(batch) {
  const { totals, caps } = batch;
  return html`<tr class="totals">
    <th scope="row">Total</th>
    <td class="ended">${totals.ended} / ${totals.goals} ended</td>
    <td class="small">${statusCounts(totals.counts)}</td>
    <td class="tokens num">${ofBudget(totals.tokens, caps.tokens)}</td>
    <td class="cost num">${ofBudget(totals.usd, caps.usd, usd)}</td>
    <td class="elapsed num">${ofBudget(totals.elapsed_s, caps.time_s, duration)}</td>
  </tr>`;
}
