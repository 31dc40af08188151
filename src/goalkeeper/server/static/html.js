// Safe HTML: every value interpolated into `html` is escaped unless it is itself `html` output.
// The page only ever writes markup through `mount`, which accepts nothing but `Safe` values, so a string
// from the API can never reach innerHTML unescaped.

export class Safe {
  constructor(text) {
    this.text = text;
  }

  toString() {
    return this.text;
  }
}

const ENTITIES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };

/** Escape text for an HTML text node or a quoted attribute value. */
export function escape(value) {
  return String(value).replace(/[&<>"']/g, (c) => ENTITIES[c]);
}

/** Markup already made safe (escaped here or built by `html`). Use only on text this code produced. */
export function trusted(text) {
  return new Safe(text);
}

function fragment(value) {
  if (value instanceof Safe) return value.text;
  if (Array.isArray(value)) return value.map(fragment).join("");
  if (value === null || value === undefined || value === false) return "";
  return escape(value);
}

/** Tagged template: `html\`<td>${name}</td>\`` escapes `name`; arrays and nested `html` compose. */
export function html(strings, ...values) {
  let out = strings[0];
  values.forEach((value, i) => {
    out += fragment(value) + strings[i + 1];
  });
  return new Safe(out);
}

/** Replace an element's content with safe markup. */
export function mount(element, safe) {
  if (!(safe instanceof Safe)) throw new TypeError("mount() takes html`...` output only");
  element.innerHTML = safe.text;
}

/** Replace an element itself with safe markup. */
export function replace(element, safe) {
  if (!(safe instanceof Safe)) throw new TypeError("replace() takes html`...` output only");
  element.outerHTML = safe.text;
}
