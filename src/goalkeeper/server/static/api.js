// The server's REST API and its event streams, with the token kept in this browser tab's sessionStorage.
// EventSource cannot send an Authorization header, so streams are read with fetch() and parsed here.

const TOKEN_KEY = "goalkeeper-token";

/** Thrown when the server refuses the token (HTTP 401); the page then asks for it again. */
export class Unauthorized extends Error {}

/** Any other failed request: the status and the server's own message. */
export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

export function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function setToken(value) {
  sessionStorage.setItem(TOKEN_KEY, value.trim());
}

export function forgetToken() {
  sessionStorage.removeItem(TOKEN_KEY);
}

function headers(extra = {}) {
  return { Authorization: `Bearer ${token() ?? ""}`, ...extra };
}

async function failure(response) {
  if (response.status === 401) {
    forgetToken();
    return new Unauthorized("the server refused the token");
  }
  let message = `${response.status} ${response.statusText}`;
  try {
    const body = await response.json();
    const detail = body.detail ?? body.message ?? body.error;
    if (detail) message = typeof detail === "string" ? detail : JSON.stringify(detail);
    if (body.hint) message += ` (${body.hint})`;
  } catch {
    // Not JSON: the status line says enough.
  }
  return new ApiError(response.status, message);
}

/** GET a JSON resource; null when it does not exist (404). */
export async function getJSON(path) {
  const response = await fetch(path, { headers: headers({ Accept: "application/json" }), cache: "no-store" });
  if (response.status === 404) return null;
  if (!response.ok) throw await failure(response);
  return response.json();
}

/** GET a text resource (a Markdown report); a JSON-wrapped string is unwrapped. */
export async function getText(path) {
  const response = await fetch(path, { headers: headers(), cache: "no-store" });
  if (response.status === 404) return null;
  if (!response.ok) throw await failure(response);
  const type = response.headers.get("Content-Type") ?? "";
  if (!type.includes("json")) return response.text();
  const body = await response.json();
  return typeof body === "string" ? body : (body.markdown ?? body.report ?? body.text ?? JSON.stringify(body, null, 2));
}

/** POST a JSON body and return the JSON answer. */
export async function postJSON(path, body = {}) {
  const response = await fetch(path, {
    method: "POST",
    headers: headers({ "Content-Type": "application/json", Accept: "application/json" }),
    body: JSON.stringify(body),
  });
  if (!response.ok) throw await failure(response);
  return response.json();
}

/**
 * Read a server-sent event stream until `signal` aborts, reconnecting with Last-Event-ID.
 * `onEvent({id, event, data})` gets each event (data is parsed JSON when it parses);
 * `onState("live" | "reconnecting" | "unauthorized")` follows the connection.
 */
export async function streamEvents(path, { onEvent, onState, signal, after = null }) {
  let lastId = after;
  let retryMs = 1000;
  while (!signal.aborted) {
    try {
      const extra = { Accept: "text/event-stream" };
      if (lastId !== null) extra["Last-Event-ID"] = String(lastId);
      const response = await fetch(path, { headers: headers(extra), signal, cache: "no-store" });
      if (response.status === 401) {
        forgetToken();
        onState("unauthorized");
        return;
      }
      if (!response.ok || !response.body) throw new ApiError(response.status, "stream refused");
      onState("live");
      await readStream(response.body, signal, (message) => {
        if (message.id !== null) lastId = message.id;
        if (message.retry !== null) retryMs = message.retry;
        if (message.data !== null) onEvent(message);
      });
    } catch (error) {
      if (signal.aborted) return;
      console.warn("event stream:", error);
    }
    if (signal.aborted) return;
    onState("reconnecting");
    await sleep(retryMs, signal);
  }
}

function sleep(ms, signal) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => {
      clearTimeout(timer);
      resolve();
    }, { once: true });
  });
}

/** Parse the text/event-stream format (WHATWG HTML §9.2) from a byte stream, one message per blank line. */
async function readStream(body, signal, dispatch) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  signal.addEventListener("abort", () => reader.cancel().catch(() => {}), { once: true });
  const parser = sseParser(dispatch);
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    parser.push(value);
  }
}

/** An incremental SSE parser: push() text chunks, and dispatch() gets {id, event, data, retry}. */
export function sseParser(dispatch) {
  let buffer = "";
  let message = fresh();
  function fresh() {
    return { id: null, event: "message", data: null, retry: null };
  }
  function line(text) {
    if (text === "") {
      if (message.data !== null || message.id !== null) {
        let data = message.data;
        if (data !== null) {
          try {
            data = JSON.parse(data);
          } catch {
            // Plain text data stays a string.
          }
        }
        dispatch({ ...message, data });
      }
      message = fresh();
      return;
    }
    if (text.startsWith(":")) return;
    const colon = text.indexOf(":");
    const field = colon === -1 ? text : text.slice(0, colon);
    let value = colon === -1 ? "" : text.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "data") message.data = message.data === null ? value : `${message.data}\n${value}`;
    else if (field === "event") message.event = value;
    else if (field === "id" && !value.includes("\0")) message.id = value;
    else if (field === "retry" && /^\d+$/.test(value)) message.retry = Number(value);
  }
  return {
    push(chunk) {
      buffer += chunk;
      for (;;) {
        const match = /\r\n|\n|\r/.exec(buffer);
        // A lone \r at the end may be the first half of \r\n: wait for the next chunk.
        if (!match || (match[0] === "\r" && match.index === buffer.length - 1)) return;
        line(buffer.slice(0, match.index));
        buffer = buffer.slice(match.index + match[0].length);
      }
    },
  };
}
