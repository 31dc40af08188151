// A small, safe Markdown renderer for goal reports: the text is HTML-escaped first, and only then are
// headings, lists, tables, fenced code, inline code, bold, italics and http(s) links turned into markup.
// Raw HTML in a report therefore shows as text; it is never interpreted.

import { escape, trusted } from "./html.js";

/** Render Markdown as safe HTML (a `Safe` value for `mount` / `html`). */
export function markdown(source) {
  const lines = escape(source ?? "").replace(/\u0000/g, "").split(/\r?\n/);
  const out = [];
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    if (/^```/.test(line)) {
      const code = [];
      for (i += 1; i < lines.length && !/^```/.test(lines[i]); i += 1) code.push(lines[i]);
      out.push(`<pre><code>${code.join("\n")}</code></pre>`);
      i += 1;
    } else if (/^#{1,6}\s/.test(line)) {
      const level = Math.min(6, line.match(/^#+/)[0].length + 1); // the page's h1 is the goal itself
      out.push(`<h${level}>${inline(line.replace(/^#+\s*/, ""))}</h${level}>`);
      i += 1;
    } else if (/^\s*\|.*\|\s*$/.test(line) && /^\s*\|[\s:|-]+\|\s*$/.test(lines[i + 1] ?? "")) {
      const rows = [];
      for (; i < lines.length && /^\s*\|.*\|\s*$/.test(lines[i]); i += 1) rows.push(lines[i]);
      out.push(table(rows));
    } else if (/^\s*([-*+]|\d+[.)])\s+/.test(line)) {
      const item = /^\s*\d/.test(line) ? /^\s*\d+[.)]\s+/ : /^\s*[-*+]\s+/; // one kind of list at a time
      const items = [];
      for (; i < lines.length && item.test(lines[i]); i += 1) items.push(lines[i]);
      out.push(list(items));
    } else if (/^\s*(---|\*\*\*)\s*$/.test(line)) {
      out.push("<hr>");
      i += 1;
    } else if (line.trim() === "") {
      i += 1;
    } else {
      const paragraph = [];
      for (; i < lines.length && lines[i].trim() !== "" && !startsBlock(lines, i); i += 1) paragraph.push(lines[i]);
      out.push(`<p>${inline(paragraph.join("\n"))}</p>`);
    }
  }
  return trusted(out.join("\n"));
}

function startsBlock(lines, i) {
  const line = lines[i];
  return /^```/.test(line) || /^#{1,6}\s/.test(line) || /^\s*([-*+]|\d+[.)])\s+/.test(line)
    || (/^\s*\|.*\|\s*$/.test(line) && /^\s*\|[\s:|-]+\|\s*$/.test(lines[i + 1] ?? ""));
}

// A cell may hold a literal pipe written `\|` (GFM): split only on unescaped pipes, then unescape.
function cells(row) {
  return row.trim().replace(/^\|/, "").replace(/(^|[^\\])\|$/, "$1").split(/(?<!\\)\|/)
    .map((cell) => cell.replace(/\\\|/g, "|").trim());
}

function table(rows) {
  const [head, , ...body] = rows;
  const th = cells(head).map((cell) => `<th scope="col">${inline(cell)}</th>`).join("");
  const trs = body.map((row) => `<tr>${cells(row).map((cell) => `<td>${inline(cell)}</td>`).join("")}</tr>`);
  return `<table class="md-table"><thead><tr>${th}</tr></thead><tbody>${trs.join("")}</tbody></table>`;
}

function list(items) {
  const ordered = /^\s*\d/.test(items[0]);
  const lis = items.map((item) => {
    const text = item.replace(/^\s*([-*+]|\d+[.)])\s+/, "");
    const box = text.match(/^\[([ xX])\]\s+/);
    if (!box) return `<li>${inline(text)}</li>`;
    const done = box[1] !== " ";
    return `<li class="task"><span aria-label="${done ? "done" : "not done"}">${done ? "☑" : "☐"}</span> `
      + `${inline(text.slice(box[0].length))}</li>`;
  });
  const tag = ordered ? "ol" : "ul";
  return `<${tag}>${lis.join("")}</${tag}>`;
}

/** Inline spans on already-escaped text: code first, so nothing inside backticks is reinterpreted. */
function inline(text) {
  const codes = [];
  let out = text.replace(/`([^`]+)`/g, (_, code) => {
    codes.push(`<code>${code}</code>`);
    return `\u0000${codes.length - 1}\u0000`;
  });
  out = out
    .replace(/\*\*([^*]+)\*\*/g, "<strong>$1</strong>")
    .replace(/(^|[^*\w])\*([^*\s][^*]*)\*(?!\w)/g, "$1<em>$2</em>")
    .replace(/\[([^\]]+)\]\((https?:\/\/[^\s)]+)\)/g, '<a href="$2" rel="noopener noreferrer">$1</a>');
  return out.replace(/\u0000(\d+)\u0000/g, (_, n) => codes[Number(n)]);
}
