// The dashboard's entry point: asks for the server token once (kept in sessionStorage), then routes
// between the goals table (#/), a goal page (#/threads/ID) and the batch views (#/batches, #/batches/ID).
// Plain ES modules, no build step.

import { forgetToken, setToken, token } from "./api.js";
import { showBatch, showBatches } from "./batch.js";
import { showGoal } from "./goal.js";
import { showGoals } from "./goals.js";

const view = document.querySelector("#view");
const tokenPanel = document.querySelector("#token-panel");
const tokenForm = document.querySelector("#token-form");
const tokenInput = document.querySelector("#token-input");
const tokenMessage = document.querySelector("#token-message");
const live = document.querySelector("#live");
const forget = document.querySelector("#forget-token");
let current = null;

const STREAM_WORDS = { live: "live", reconnecting: "reconnecting…", idle: "" };

function streamState(state) {
  live.textContent = STREAM_WORDS[state] ?? state;
  live.dataset.state = state;
}

function askForToken(message) {
  current?.abort();
  current = null;
  forgetToken();
  view.hidden = true;
  tokenPanel.hidden = false;
  forget.hidden = true;
  tokenMessage.textContent = message ?? "";
  streamState("idle");
  tokenInput.focus();
}

function route() {
  if (!token()) {
    askForToken();
    return;
  }
  current?.abort();
  current = new AbortController();
  tokenPanel.hidden = true;
  view.hidden = false;
  forget.hidden = false;
  streamState("idle");
  const context = {
    signal: current.signal,
    onUnauthorized: () => askForToken("The server refused that token. Paste the token gk serve printed."),
    onStreamState: streamState,
  };
  const match = location.hash.match(/^#\/threads\/([^/?#]+)/);
  const batch = location.hash.match(/^#\/batches(?:\/([^/?#]+))?\/?$/);
  if (match) showGoal(view, decodeURIComponent(match[1]), context);
  else if (batch?.[1]) showBatch(view, decodeURIComponent(batch[1]), context);
  else if (batch) showBatches(view, context);
  else {
    document.title = "goalkeeper";
    showGoals(view, context);
  }
}

tokenForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const value = tokenInput.value.trim();
  if (!value) {
    tokenMessage.textContent = "Paste the token first.";
    return;
  }
  setToken(value);
  tokenInput.value = "";
  route();
});

forget.addEventListener("click", () => askForToken("Token forgotten for this tab."));
window.addEventListener("hashchange", route);
route();
