// Syntax highlighting for a unified diff: file headers, hunk headers, added and removed lines, and inside
// them a light colouring of Python and JavaScript/TypeScript tokens (keywords, strings, comments, numbers).
// Every piece of text is escaped; only the spans are markup.

import { escape, trusted } from "./html.js";

const KEYWORDS = {
  python: new Set(("and as assert async await break class continue def del elif else except False finally for "
    + "from global if import in is lambda None nonlocal not or pass raise return True try while with yield "
    + "match case self").split(" ")),
  js: new Set(("async await break case catch class const continue debugger default delete do else export "
    + "extends false finally for function if import in instanceof let new null of return static super switch "
    + "this throw true try typeof undefined var void while with yield interface type enum").split(" ")),
};

const TOKENS = {
  python: /(#.*$)|("""[^]*?"""|'''[^]*?'''|[rbfu]{0,2}"(?:\\.|[^"\\])*"|[rbfu]{0,2}'(?:\\.|[^'\\])*')|(\b\d[\d_]*(?:\.\d+)?(?:e[+-]?\d+)?\b)|(@?[A-Za-z_]\w*)/gm,
  js: /(\/\/.*$)|(`(?:\\.|[^`\\])*`|"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*')|(\b\d[\d_]*(?:\.\d+)?\b)|([A-Za-z_$][\w$]*)/gm,
};

/** The language of a path, by its extension (null: no token colouring). */
export function languageOf(path) {
  if (/\.pyi?$/.test(path)) return "python";
  if (/\.(m?js|cjs|jsx|tsx?)$/.test(path)) return "js";
  return null;
}

/** Colour one line of code: returns escaped HTML. */
export function highlightCode(code, language) {
  const pattern = TOKENS[language];
  if (!pattern) return escape(code);
  let out = "";
  let last = 0;
  pattern.lastIndex = 0;
  for (let match = pattern.exec(code); match; match = pattern.exec(code)) {
    out += escape(code.slice(last, match.index));
    const [text, comment, string, number, word] = match;
    let kind = null;
    if (comment) kind = "tok-comment";
    else if (string) kind = "tok-string";
    else if (number) kind = "tok-number";
    else if (word && KEYWORDS[language].has(word)) kind = "tok-keyword";
    else if (word && word.startsWith("@")) kind = "tok-decorator";
    out += kind ? `<span class="${kind}">${escape(text)}</span>` : escape(text);
    last = match.index + text.length;
    if (text.length === 0) pattern.lastIndex += 1;
  }
  return out + escape(code.slice(last));
}

/** A unified diff as highlighted lines (a `Safe` value: one block <span> per line, for a <pre>). */
export function highlightDiff(diff) {
  let language = null;
  const lines = (diff ?? "").replace(/\n$/, "").split("\n").map((line) => {
    if (line.startsWith("diff --git")) {
      language = languageOf(line.split(" b/").pop() ?? "");
      return span("diff-file", escape(line));
    }
    if (line.startsWith("+++ ") || line.startsWith("--- ")) {
      if (line.startsWith("+++ ")) language = languageOf(line.slice(4)) ?? language;
      return span("diff-file", escape(line));
    }
    if (/^(index |new file|deleted file|similarity|rename |old mode|new mode|Binary)/.test(line)) {
      return span("diff-meta", escape(line));
    }
    if (line.startsWith("@@")) {
      const parts = line.match(/^(@@[^@]*@@)(.*)$/);
      if (!parts) return span("diff-hunk", escape(line));
      return span("diff-hunk", `${escape(parts[1])}${highlightCode(parts[2], language)}`);
    }
    if (line.startsWith("+")) return span("diff-add", `+${highlightCode(line.slice(1), language)}`);
    if (line.startsWith("-")) return span("diff-del", `-${highlightCode(line.slice(1), language)}`);
    return span("diff-context", highlightCode(line, language));
  });
  return trusted(lines.join(""));
}

/** One line as a block; the newline stays inside it so that copied text keeps its lines. */
function span(kind, inner) {
  return `<span class="${kind}">${inner}\n</span>`;
}
