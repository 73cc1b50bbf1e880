// markdown.js — model answers as HTML: marked for the markdown, DOMPurify
// for safety. Model output (and the document text it may quote) is
// untrusted, so two layers:
//  1. raw HTML in the markdown is shown as text, never parsed as markup
//     (an answer quoting "<img onerror=...>" shows exactly that);
//  2. DOMPurify cleans what marked produced: no scripts, event handlers,
//     styles, forms, frames or javascript: links; links open in a new tab
//     without access to this page.
import { Marked } from 'marked';
import DOMPurify from 'dompurify';

const ESC = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };
const escapeHtml = (s) => s.replace(/[&<>"']/g, (c) => ESC[c]);

const marked = new Marked({
  gfm: true,
  breaks: true,
  async: false,
  renderer: {
    // block and inline HTML alike: as text
    html({ text }) {
      return escapeHtml(text);
    },
  },
});

const purify = DOMPurify(window);
purify.addHook('afterSanitizeAttributes', (node) => {
  if (node.tagName === 'A' && node.hasAttribute('href')) {
    node.setAttribute('target', '_blank');
    node.setAttribute('rel', 'noopener noreferrer nofollow');
  }
});

const CONFIG = {
  USE_PROFILES: { html: true },
  FORBID_TAGS: ['style', 'form', 'input', 'button', 'textarea', 'select', 'iframe', 'object', 'embed'],
  FORBID_ATTR: ['style', 'srcset'],
  ALLOW_DATA_ATTR: false,
};

/** Markdown text → sanitized HTML string. */
export function renderMarkdown(text) {
  const html = marked.parse(text || '');
  return purify.sanitize(html, CONFIG);
}

/** Replaces el's content with the sanitized rendering of text. */
export function setMarkdown(el, text) {
  el.innerHTML = renderMarkdown(text);
}
