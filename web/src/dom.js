// dom.js — small helpers for building and finding elements.
//
// Text always goes in through textContent (never innerHTML): the only HTML
// the page inserts is sanitized markdown (see markdown.js).

/** The element with this id; throws when the page lacks it (a build error). */
export function byId(id) {
  const el = document.getElementById(id);
  if (!el) throw new Error(`page element #${id} is missing`);
  return el;
}

/**
 * h('button', {class: 'btn', onclick: fn, 'aria-label': 'x'}, 'text', child)
 * Attributes starting with "on" become listeners; `dataset` takes an object;
 * false/null/undefined attributes and children are skipped.
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === false || v === null || v === undefined) continue;
    if (k.startsWith('on') && typeof v === 'function') {
      el.addEventListener(k.slice(2), v);
    } else if (k === 'dataset') {
      Object.assign(el.dataset, v);
    } else if (k === 'text') {
      el.textContent = v;
    } else {
      el.setAttribute(k, v === true ? '' : String(v));
    }
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

/** Sets a status line's text and kind (info, ok, error, busy). */
export function setStatus(el, text, kind = 'info') {
  el.textContent = text || '';
  el.dataset.kind = text ? kind : '';
}

/**
 * A button that asks for confirmation on its first press: the label turns
 * into `confirmLabel` for a few seconds, and only a second press runs `fn`.
 */
export function confirmButton(label, confirmLabel, ariaLabel, fn) {
  let armed = null;
  const btn = h('button', { type: 'button', class: 'btn small danger-ghost', 'aria-label': ariaLabel }, label);
  const disarm = () => {
    clearTimeout(armed);
    armed = null;
    btn.textContent = label;
    btn.classList.remove('armed');
    btn.setAttribute('aria-label', ariaLabel);
  };
  btn.addEventListener('click', (ev) => {
    ev.stopPropagation();
    if (!armed) {
      btn.textContent = confirmLabel;
      btn.classList.add('armed');
      btn.setAttribute('aria-label', `${confirmLabel}: ${ariaLabel}`);
      armed = setTimeout(disarm, 4000);
      return;
    }
    disarm();
    fn();
  });
  btn.addEventListener('blur', () => { if (armed) disarm(); });
  return btn;
}

/**
 * Wires a <dialog>: its .dialog-close buttons close it, and closing it puts
 * the focus back where it was when openDialog ran (or on `fallback()`, when
 * that element is gone or hidden, as a menu item is).
 */
export function wireDialog(dlg, fallback) {
  for (const b of dlg.querySelectorAll('.dialog-close')) b.addEventListener('click', () => dlg.close());
  dlg.addEventListener('close', () => {
    const back = dlg.opener;
    dlg.opener = null;
    const target = back && back.isConnected && back.offsetParent !== null ? back : fallback && fallback();
    if (target) target.focus();
  });
}

/** Opens a wired dialog as a modal, focusing `first` (or its first field). */
export function openDialog(dlg, first) {
  if (dlg.open) return;
  dlg.opener = document.activeElement;
  dlg.showModal();
  const f = first || dlg.querySelector('input:not([type="hidden"]):not([readonly]), select, textarea, button');
  if (f) f.focus();
}

/** Puts text on the clipboard; resolves to whether it worked. */
export async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    // the clipboard API needs a secure context; fall back to a selection
    const ta = h('textarea', { class: 'visually-hidden', 'aria-hidden': 'true' });
    ta.value = text;
    document.body.append(ta);
    ta.select();
    let ok = false;
    try { ok = document.execCommand('copy'); } catch { ok = false; }
    ta.remove();
    return ok;
  }
}

/**
 * Once the user edits a field a form marked invalid (aria-invalid), the
 * mark goes: the next check says again what is wrong.
 */
export function clearInvalidOnInput(form) {
  form.addEventListener('input', (ev) => {
    const f = ev.target;
    if (f && f.getAttribute && f.getAttribute('aria-invalid') === 'true') f.removeAttribute('aria-invalid');
  });
}
