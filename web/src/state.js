// state.js — what the page's parts share: the document list, the selected
// document, the model server as last seen, and an event bus between them.
//
// Events (CustomEvent on `events`):
//   docs            the document list was reloaded
//   doc-selected    the chat's documents changed (detail: the selected
//                   doc_id or ''; chatDocIds() has them all)
//   model-status    a new /model/status arrived (detail: the status)
//   model-busy      a start/stop/switch began (detail: {what})
//   model-settled   it ended (detail: {ok})
//   view            the phone view should switch (detail: 'chat'|'docs'|'model')
//   signed-in       someone signed in again after their login ended (the
//                   parts reload what they show)
//   users           the admin page changed or reloaded the users (detail:
//                   the list)

export const events = new EventTarget();

export function emit(name, detail) {
  events.dispatchEvent(new CustomEvent(name, { detail }));
}

export function on(name, fn) {
  events.addEventListener(name, (ev) => fn(ev.detail));
}

export const state = {
  /** GET /documents/list, as last loaded */
  docs: [],
  /** the document the chat uses ('' = none) */
  selectedDocId: '',
  /** more documents the chat uses with it, in order (a chat about several) */
  moreDocIds: [],
  /** the document this page uploaded last (the Cache button's fallback) */
  lastUploadedId: '',
  /** doc_id → the caching run this page started: {percent, groups, part,
   * total, eta, complete} (all but percent only for a document of several
   * parts; see documents.js cacheDoc) */
  caching: new Map(),
  /** doc_id → {key, groups, stale}: the document's parts for the model in
   * use (GET /documents/{id}/groups), reloaded when its cache state changes */
  parts: new Map(),
  /** the model server: running, started (ms since the epoch), last status */
  engine: { running: false, startedAt: 0, status: null },
  /** who uses the page (GET /auth/me): mode 'local' (no accounts: anyone may
   * do anything) or 'accounts' with the signed-in user {id, name, role} */
  me: { mode: 'local', user: null, via: '' },
  /** user id → name, for the documents' owners (admins only; may be empty) */
  userNames: new Map(),
};

/** Whether the page may offer admin things (always, in local mode). */
export function isAdmin() {
  return state.me.mode === 'local' || (!!state.me.user && state.me.user.role === 'admin');
}

/** Whether the page runs with accounts. */
export function hasAccounts() {
  return state.me.mode === 'accounts';
}

export function docById(id) {
  return state.docs.find((d) => d.doc_id === id) || null;
}

/** The documents the next question is about, in order (those still listed). */
export function chatDocIds() {
  if (!state.selectedDocId || !docById(state.selectedDocId)) return [];
  return [state.selectedDocId, ...state.moreDocIds.filter((id) => id !== state.selectedDocId && docById(id))];
}

/** A random RFC 4122 version 4 id (crypto.randomUUID needs a secure context). */
export function newId() {
  const b = new Uint8Array(16);
  crypto.getRandomValues(b);
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const hex = [...b].map((x) => x.toString(16).padStart(2, '0')).join('');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/** localStorage that tolerates being unavailable (private modes, policies). */
export const saved = {
  get(k) { try { return window.localStorage.getItem(k); } catch { return null; } },
  set(k, v) { try { if (v) window.localStorage.setItem(k, v); else window.localStorage.removeItem(k); } catch { /* not kept */ } },
};
