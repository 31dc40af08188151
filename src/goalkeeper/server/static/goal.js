// The goal page (#/threads/ID): summary, controls, contract, checklist, timeline, evidence, diff and report,
// refreshed from the thread's own event stream.

import { getJSON, getText, postJSON, streamEvents, Unauthorized } from "./api.js";
import { html, mount } from "./html.js";
import * as sections from "./sections.js";
import { keyedThrottle } from "./widgets.js";

const SUMMARY_MS = 250;
const DETAILS_MS = 1500;
const PAUSABLE = new Set(["pursuing"]);
const RESUMABLE = new Set(["paused", "budget_limited"]);

/** Show the goal of thread `threadId` in `root` until `signal` aborts. */
export async function showGoal(root, threadId, { signal, onUnauthorized, onStreamState }) {
  const base = `/threads/${encodeURIComponent(threadId)}`;
  mount(root, skeleton());
  const $ = (selector) => root.querySelector(selector);
  let thread = null;
  let goal = null;

  const guard = (promise) => promise.catch((error) => {
    if (error instanceof Unauthorized) onUnauthorized();
    else if (!signal.aborted) say(error.message, true);
  });
  function say(text, isError = false) {
    const box = $("#control-message");
    box.textContent = `${new Date().toLocaleTimeString("en-GB")} · ${text}`;
    box.classList.toggle("error", isError);
  }

  async function loadSummary() {
    goal = await getJSON(`${base}/goal`);
    if (signal.aborted) return;
    if (!goal) {
      mount($("#goal-summary"), html`<h1 id="goal-title">No goal</h1>
        <p class="muted">This thread has no goal (it was never set, or it was cleared).</p>`);
      root.querySelectorAll(".needs-goal").forEach((element) => { element.hidden = true; });
      return;
    }
    root.querySelectorAll(".needs-goal").forEach((element) => { element.hidden = false; });
    mount($("#goal-summary"), sections.summary(goal, thread));
    mount($("#contract"), sections.contract(goal.contract));
    mount($("#checklist"), sections.checklist(goal.checklist));
    mount($("#children"), sections.children(goal.children));
    mount($("#evidence"), sections.evidence(goal.evidence, [goal.metric_baseline, ...(goal.metric_trend ?? [])].filter(Boolean)));
    $("#pause").disabled = !PAUSABLE.has(goal.status);
    $("#resume").disabled = !RESUMABLE.has(goal.status);
    $("#clear").disabled = false;
    document.title = `${goal.label || goal.status} · ${goal.objective} · goalkeeper`;
  }

  async function loadDetails() {
    if (!goal) return;
    const [checkpoints, changes, markdown] = await Promise.all([
      getJSON(`${base}/checkpoints`), getJSON(`${base}/diff`).catch(unavailable),
      getText(`${base}/report?format=markdown`).catch(unavailable),
    ]);
    if (signal.aborted) return;
    mount($("#timeline"), sections.timeline(listOf(checkpoints, "checkpoints")));
    mount($("#diff"), changes instanceof Error ? html`<p class="muted">Diff unavailable: ${changes.message}</p>`
      : sections.diff(changes));
    mount($("#report"), markdown instanceof Error ? html`<p class="muted">Report unavailable: ${markdown.message}</p>`
      : sections.report(markdown));
  }

  const refresh = keyedThrottle((what) => guard(what === "summary" ? loadSummary() : loadDetails()), SUMMARY_MS);
  const refreshDetails = keyedThrottle(() => refresh("details"), DETAILS_MS);

  wireControls(root, base, { guard, say, reload: () => guard(loadSummary().then(loadDetails)) });
  thread = await guard(getJSON(base));
  if (signal.aborted) return;
  if (thread === null) {
    mount($("#goal-summary"), html`<h1 id="goal-title">Unknown thread</h1>
      <p>No thread <code>${threadId}</code> in this store. <a href="#/">Back to the goals</a>.</p>`);
    root.querySelectorAll(".needs-goal").forEach((element) => { element.hidden = true; });
    return;
  }
  await guard(loadSummary().then(loadDetails));
  if (signal.aborted) return;
  // The all-threads stream starts at now (a thread's own stream replays its whole history first).
  streamEvents("/events/stream", {
    signal,
    onEvent: ({ data }) => {
      if (data?.thread_id !== threadId) return;
      refresh("summary");
      refreshDetails("details");
    },
    onState: (state) => {
      if (state === "unauthorized") onUnauthorized();
      else onStreamState(state);
      if (state === "live") { // catch up on anything committed while the stream was not yet open
        refresh("summary");
        refreshDetails("details");
      }
    },
  });
}

function unavailable(error) {
  if (error instanceof Unauthorized) throw error;
  return error instanceof Error ? error : new Error(String(error));
}

/** What the server says it did with a control request (ControlOut), in words. */
function describe(answer) {
  const by = { here: "applied", runner: "applied by the running runner", queued: "queued: the runner applies it at its next boundary" };
  return by[answer.applied_by] ?? (answer.applied ? "applied" : "queued for the runner");
}

function listOf(data, key) {
  if (Array.isArray(data)) return data;
  return data?.[key] ?? [];
}

function wireControls(root, base, { guard, say, reload }) {
  const act = (action, body) => guard((async () => {
    say(`${action}…`);
    const answer = await postJSON(`${base}/goal/${action}`, body);
    say(`${action}: ${describe(answer)}${answer.status ? `; status ${answer.status.replaceAll("_", " ")}` : ""}`);
    await reload();
  })());
  root.querySelector("#pause").addEventListener("click", () => act("pause"));
  root.querySelector("#resume").addEventListener("click", () => {
    const note = root.querySelector("#resume-note").value.trim();
    act("resume", note ? { note } : undefined).then(() => { root.querySelector("#resume-note").value = ""; });
  });
  root.querySelector("#clear").addEventListener("click", () => {
    if (window.confirm("Clear this goal? Its history stays in the store, but the goal is deleted.")) act("clear");
  });
  root.querySelector("#budget-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const form = new FormData(event.target);
    const body = {};
    for (const key of ["add_tokens", "add_usd", "add_time_s", "add_turns"]) {
      const value = String(form.get(key) ?? "").trim();
      if (value !== "") body[key] = key === "add_time_s" ? Number(value) * 60 : Number(value);
    }
    if (Object.keys(body).length === 0) {
      say("Enter an amount to add to at least one budget.", true);
      return;
    }
    act("budget", body).then(() => event.target.reset());
  });
}

function skeleton() {
  return html`<p><a href="#/">← All goals</a></p>
  <section id="goal-summary" aria-live="polite"><h1 id="goal-title">Loading…</h1></section>
  <section class="controls needs-goal" aria-label="Controls">
    <div class="buttons">
      <button type="button" id="pause" disabled>Pause</button>
      <button type="button" id="resume" disabled>Resume</button>
      <label>note <input id="resume-note" type="text" maxlength="20000"
        placeholder="feedback the model reads when it resumes (optional)"></label>
      <button type="button" id="clear" class="danger" disabled>Clear</button>
    </div>
    <form id="budget-form" class="budget-form" aria-label="Raise budget">
      <span class="form-title">Raise budget:</span>
      <label>tokens <input name="add_tokens" type="number" min="1" step="1" inputmode="numeric"></label>
      <label>USD <input name="add_usd" type="number" min="0.01" step="0.01"></label>
      <label>minutes <input name="add_time_s" type="number" min="1" step="1"></label>
      <label>turns <input name="add_turns" type="number" min="1" step="1"></label>
      <button type="submit">Add</button>
    </form>
    <p id="control-message" role="status" aria-live="polite"></p>
  </section>
  <div class="columns needs-goal">
    <div>
      <section aria-labelledby="contract-title"><h2 id="contract-title">Contract</h2><div id="contract"></div></section>
      <section aria-labelledby="checklist-title"><h2 id="checklist-title">Checklist</h2><div id="checklist"></div></section>
      <section aria-labelledby="children-title"><h2 id="children-title">Child agents</h2><div id="children"></div></section>
      <section aria-labelledby="timeline-title"><h2 id="timeline-title">Checkpoints</h2><div id="timeline"></div></section>
    </div>
    <div>
      <section aria-labelledby="evidence-title"><h2 id="evidence-title">Evidence</h2><div id="evidence"></div></section>
      <section aria-labelledby="diff-title"><h2 id="diff-title">Diff</h2><div id="diff"></div></section>
    </div>
  </div>
  <section class="needs-goal" aria-labelledby="report-title"><h2 id="report-title">Report</h2>
    <div id="report"></div></section>`;
}
