// chat.js — the conversation: streamed answers rendered as sanitized
// markdown, Enter to send (Shift+Enter for a new line), Stop (aborts the
// request, which stops the generation), Clear (a new session), a copy button
// and the cache figures under each answer, where each answer came from (a
// long document's part, its pages or sections, the passages that matched:
// a click shows one in the preview; which document, in a chat about
// several), and the list of past sessions.
import { ApiError, del, events as sse, get, post, request } from './api.js';
import { byId, confirmButton, copyText, h, setStatus } from './dom.js';
import { ago, fullTime, int, lastHeading, ms, pages, sourceLine, tierName } from './format.js';
import { openPassage, setChatDocs } from './documents.js';
import { chatDocIds, docById, emit, isAdmin, newId, on, saved, state } from './state.js';
import { setMarkdown } from './markdown.js';

const el = {};
const session = { id: '', onServer: false };
let busy = false;
let controller = null;
let sessions = [];
let restoring = false;     // opening a session moves the selector: no notice then
let docPicks = 0;          // the user's changes of the chat's documents
let openSeq = 0;           // the latest opening of a session

/* ---- messages ---- */

function nearBottom() {
  const m = el.messages;
  return m.scrollHeight - m.scrollTop - m.clientHeight < 80;
}

function scrollDown(force) {
  if (force || nearBottom()) el.messages.scrollTop = el.messages.scrollHeight;
}

function clearMessages() {
  el.messages.replaceChildren(el.empty);
  el.empty.hidden = false;
}

function addMessage(node) {
  el.empty.hidden = true;
  const stick = nearBottom();
  el.messages.append(node);
  scrollDown(stick);
  return node;
}

function userMessage(text) {
  return addMessage(h('article', { class: 'msg user', 'aria-label': 'Your message' },
    h('div', { class: 'msg-role' }, 'You'),
    h('div', { class: 'msg-body plain' }, text)));
}

/**
 * An answer bubble. Returns {node, setText, setSource, finish, fail, stop};
 * the raw markdown is kept for the copy button.
 */
function assistantMessage() {
  let raw = '';
  let pending = false;
  const body = h('div', { class: 'msg-body markdown' }, h('span', { class: 'typing', 'aria-label': 'Generating' }, h('i'), h('i'), h('i')));
  const error = h('div', { class: 'msg-error', role: 'alert', hidden: true });
  const source = h('div', { class: 'msg-source', hidden: true });
  const metrics = h('p', { class: 'msg-metrics' });
  const copy = h('button', { type: 'button', class: 'btn small ghost copy-btn', disabled: true, 'aria-label': 'Copy this answer' }, 'Copy');
  copy.addEventListener('click', async () => {
    const ok = await copyText(raw);
    copy.textContent = ok ? 'Copied' : 'Copy failed';
    setTimeout(() => { copy.textContent = 'Copy'; }, 1500);
  });
  const node = addMessage(h('article', { class: 'msg assistant', dataset: { state: 'streaming' }, 'aria-label': 'Answer', 'aria-busy': 'true' },
    h('div', { class: 'msg-role' }, 'Assistant'),
    body, error, source,
    h('footer', { class: 'msg-foot' }, metrics, copy)));

  const render = () => {
    pending = false;
    const stick = nearBottom();
    setMarkdown(body, raw);
    scrollDown(stick);
  };
  const settle = (stateName) => {
    node.dataset.state = stateName;
    node.removeAttribute('aria-busy');
    if (pending || !raw) render();
    copy.disabled = !raw;
  };
  return {
    node,
    setSource(info, sources) {
      showSource(source, info, sources);
    },
    setText(text) {
      raw = text;
      if (!pending) {
        pending = true;
        requestAnimationFrame(render);
      }
    },
    finish(text, info) {
      raw = text;
      pending = true;
      settle('done');
      showMetrics(metrics, info);
    },
    fail(detail, status, info) {
      settle('error');
      if (!raw) body.replaceChildren();
      error.hidden = false;
      error.replaceChildren(...errorContent(detail, status));
      if (info) showMetrics(metrics, info);
    },
    stop(info) {
      settle('stopped');
      if (!raw) body.replaceChildren();
      showMetrics(metrics, { ...info, stopped: true });
    },
  };
}

/** The error text plus what the user can do about it. */
function errorContent(detail, status) {
  const parts = [h('strong', {}, status ? `Error ${status}: ` : 'Error: '), detail];
  const down = status === 503 || /not running|nothing answers|still starting|connection refused/i.test(detail);
  if (down && !isAdmin()) {
    parts.push(h('span', { class: 'hint-line' }, 'Ask an admin to start the model server.'));
  } else if (down) {
    parts.push(' ', h('button', {
      type: 'button', class: 'btn small', onclick: () => { emit('view', 'model'); emit('start-model'); },
    }, 'Start the model server'));
  } else if (/too long|context|exceeds|n_ctx/i.test(detail)) {
    const n = state.engine.status && state.engine.status.n_ctx;
    parts.push(h('span', { class: 'hint-line' },
      `The document and the conversation must fit in the model's context${n ? ` (${int(n)} tokens per conversation)` : ''}: use a shorter document, or Clear to start a new session.`));
  }
  return parts;
}

/**
 * Where an answer came from, under it: for a part of a long document
 * "From pages 20–23 of manual.pdf, part 4 of 9" and the passages that
 * matched (heading, pages, snippet; a click shows the passage in the
 * preview); for a whole document a quiet note. Everything here comes from
 * the document, so it goes in as text only.
 */
function showSource(box, info, sources) {
  const line = sourceLine(info);
  const list = Array.isArray(sources) ? sources.filter((x) => x && Number.isInteger(x.chunk_id)) : [];
  if (!line && !list.length) {
    box.hidden = true;
    return;
  }
  box.hidden = false;
  const rag = info && info.method === 'rag';
  box.dataset.method = (info && info.method) || '';
  if (rag && Number.isFinite(info.group_id)) {
    box.dataset.part = String(info.group_id + 1);
    box.dataset.totalParts = String(info.total_groups);
  }
  const items = list.map((x) => {
    const head = lastHeading(x.heading);
    const where = pages(x.page_numbers, x.page_labels);
    const label = [head, where].filter(Boolean).join(', ') || `passage ${x.chunk_id + 1}`;
    return h('li', {},
      h('button', {
        type: 'button', class: 'source',
        dataset: { docId: x.document_id || '', chunkId: x.chunk_id },
        title: [x.heading, where, x.filename].filter(Boolean).join(' · '),
        'aria-label': `Show the source passage: ${label}${x.filename ? ` in ${x.filename}` : ''}`,
        onclick: () => openPassage(x.document_id || (info && info.document_id), x.chunk_id),
      },
      h('span', { class: 'source-place' }, label),
      x.snippet ? h('span', { class: 'source-snippet' }, x.snippet) : null));
  });
  box.replaceChildren(...[
    line ? h('p', { class: rag ? 'msg-where' : 'msg-where quiet' }, 'From ', h('span', { class: 'msg-where-text' }, line)) : null,
    items.length ? h('ol', { class: 'msg-sources', 'aria-label': 'Sources' }, ...items) : null,
  ].filter(Boolean));
}

/**
 * The figures under an answer. info: {usage, timings, ttft_ms, finish_reason,
 * clientTtft, clientMs, stopped, incomplete}. Each figure is also put in a
 * data- attribute for tests and tools.
 */
function showMetrics(p, info) {
  const t = info.timings || {};
  const u = info.usage || {};
  const items = [];
  const ttft = Number.isFinite(t.ttft_ms) ? t.ttft_ms : Number.isFinite(info.ttft_ms) ? info.ttft_ms : info.clientTtft;
  if (Number.isFinite(ttft)) {
    items.push(h('span', { class: 'metric', title: 'Time to the first token' }, `TTFT ${ms(ttft)}`));
    p.dataset.ttftMs = String(Math.round(ttft));
  }
  let tps = t.predicted_per_second;
  if (!Number.isFinite(tps) && u.completion_tokens > 0 && info.clientMs > 0) tps = u.completion_tokens / (info.clientMs / 1000);
  if (Number.isFinite(tps) && tps > 0) {
    items.push(h('span', { class: 'metric', title: 'Generation speed' }, `${tps >= 100 ? Math.round(tps) : tps.toFixed(1)} tokens/s`));
    p.dataset.tokensPerSecond = tps.toFixed(1);
  }
  const prompt = Number.isFinite(u.prompt_tokens) ? u.prompt_tokens : null;
  const cached = Number.isFinite(u.cached_tokens) ? u.cached_tokens : Number.isFinite(t.cache_n) ? t.cache_n : null;
  if (cached !== null) {
    const tier = t.cache_tier && t.cache_tier !== 'none' ? ` (${tierName(t.cache_tier)})` : '';
    const of = prompt !== null ? ` of ${int(prompt)}` : '';
    const restore = Number.isFinite(t.restore_ms) && t.restore_ms > 0 && cached > 0 ? `, restored in ${ms(t.restore_ms)}` : '';
    items.push(h('span', { class: 'metric cache-metric', dataset: { hit: cached > 0 ? 'yes' : 'no' }, title: 'Prompt tokens restored from the KV cache instead of being computed' },
      `${int(cached)}${of} prompt tokens from cache${tier}${restore}`));
    p.dataset.cachedTokens = String(cached);
    if (prompt !== null) p.dataset.promptTokens = String(prompt);
    if (t.cache_tier) p.dataset.cacheTier = t.cache_tier;
  } else if (prompt !== null) {
    items.push(h('span', { class: 'metric' }, `${int(prompt)} prompt tokens`));
  }
  if (Number.isFinite(u.completion_tokens)) items.push(h('span', { class: 'metric' }, `${int(u.completion_tokens)} tokens`));
  if (info.finish_reason === 'length') items.push(h('span', { class: 'metric warn-text' }, 'cut at the token limit'));
  if (info.stopped) items.push(h('span', { class: 'metric warn-text' }, 'stopped'));
  if (info.incomplete && !info.stopped) items.push(h('span', { class: 'metric warn-text' }, 'incomplete'));
  p.replaceChildren(...items);
}

/* ---- sending ---- */

function setBusy(b) {
  busy = b;
  el.send.disabled = b;
  el.stop.disabled = !b;
  el.form.setAttribute('aria-busy', b ? 'true' : 'false');
}

async function send() {
  const text = el.input.value.trim();
  if (!text || busy) return;
  resetDrafts();
  setBusy(true);
  setStatus(el.status, '');
  userMessage(text);
  el.input.value = '';
  // several documents go as document_ids (the session keeps the set); one
  // (or none) as document_id, which also sets the session's set to it
  const docIds = chatDocIds();
  const docId = docIds[0] || null;
  const msg = assistantMessage();
  controller = new AbortController();
  const t0 = performance.now();
  let first = null;
  let acc = '';
  const clientInfo = () => ({
    clientTtft: first !== null ? first - t0 : undefined,
    clientMs: performance.now() - (first ?? t0),
  });
  try {
    if (!session.onServer) {
      try {
        await post('/session', { session_id: session.id, document_id: docId || undefined, title: titleOf(text) }, { signal: controller.signal });
      } catch (err) {
        if (!(err instanceof ApiError) || err.status !== 409) throw err;
      }
      session.onServer = true;
      saved.set('kvchat.session', session.id);
    }
    const res = await request('POST', `/session/${encodeURIComponent(session.id)}/messages/stream`, {
      json: docIds.length > 1 ? { message: text, document_ids: docIds } : { message: text, document_id: docId },
      accept: 'text/event-stream', signal: controller.signal,
    });
    let end = null;
    for await (const ev of sse(res)) {
      if (ev.error) { end = ev; break; }
      if (ev.rag_info || ev.sources) msg.setSource(ev.rag_info, ev.sources);
      if (ev.chunk) {
        if (first === null) first = performance.now();
        acc += ev.chunk;
        msg.setText(acc);
      }
      if (ev.done) { end = ev; break; }
    }
    if (!end) {
      msg.fail('The answer was cut off: the connection closed before it ended.', 0, clientInfo());
    } else if (end.error) {
      msg.fail(end.error, end.status || 0);
    } else {
      msg.finish(typeof end.full_response === 'string' ? end.full_response : acc,
        { usage: end.usage, timings: end.timings, finish_reason: end.finish_reason, ...clientInfo() });
    }
  } catch (err) {
    if (err && err.name === 'AbortError') {
      msg.stop(clientInfo());
      setStatus(el.status, 'Generation stopped.', 'info');
    } else {
      const e = err instanceof ApiError ? err : new ApiError(0, String(err));
      msg.fail(e.detail, e.status);
    }
  } finally {
    controller = null;
    setBusy(false);
    refreshSessions();
    emit('engine-activity');
  }
}

/* ---- drafts: the question read ahead while it is typed ----
 *
 * At a word boundary after a short pause (or inside a word after a longer
 * one: the question may be finished), the text so far goes to
 * POST /session/{id}/draft: the model server prefills it (when it has
 * nothing else to do), so the answer to the whole question starts sooner;
 * sent as last drafted, it starts after one token's work.
 * At most one in flight; none for very short text, while an answer runs,
 * when the model server is not running, or when turned off (the
 * composer's checkbox, kept in this browser). An answer saying the draft
 * was not taken (a remote provider, a full server) stops them until the
 * next question. Nothing shows: answers just start sooner. */
const DRAFT_PAUSE_MS = 350;
const DRAFT_IDLE_MS = 900;
const DRAFT_MIN_CHARS = 12;
const drafts = { timer: 0, inFlight: false, sent: '', declined: false };

function draftsOn() {
  if (state.engine.status && state.engine.status.drafts === false) return false;   // llm.drafts
  return saved.get('kvchat.drafts') !== 'off';
}

function resetDrafts() {
  clearTimeout(drafts.timer);
  drafts.sent = '';
  drafts.declined = false;
}

function scheduleDraft() {
  clearTimeout(drafts.timer);
  if (!draftsOn() || busy || drafts.declined || !state.engine.running) return;
  const boundary = /[\s.,;:!?]$/.test(el.input.value);
  drafts.timer = setTimeout(sendDraft, boundary ? DRAFT_PAUSE_MS : DRAFT_IDLE_MS);
}

async function sendDraft() {
  const text = el.input.value.trim();
  if (busy || drafts.inFlight || drafts.declined || text.length < DRAFT_MIN_CHARS || text === drafts.sent) return;
  drafts.inFlight = true;
  drafts.sent = text;
  const docIds = chatDocIds();
  try {
    const r = await post(`/session/${encodeURIComponent(session.id)}/draft`,
      docIds.length > 1 ? { message: text, document_ids: docIds } : { message: text, document_id: docIds[0] || null });
    if (r && r.accepted === false) drafts.declined = true;
  } catch {
    drafts.declined = true;   // advice only: never an error to show
  } finally {
    drafts.inFlight = false;
  }
}

function titleOf(text) {
  const one = text.replace(/\s+/g, ' ').trim();
  return one.length > 80 ? `${one.slice(0, 77)}…` : one;
}

function stop() {
  if (controller) controller.abort();
}

/* ---- sessions ---- */

function newSession() {
  stop();
  resetDrafts();
  session.id = newId();
  session.onServer = false;
  saved.set('kvchat.session', '');
  clearMessages();
  renderSessions();
}

function renderHistory(messages) {
  clearMessages();
  for (const m of messages) {
    if (m.role === 'user') {
      userMessage(m.content);
    } else if (m.role === 'assistant') {
      const a = assistantMessage();
      if (m.rag_info || m.sources) a.setSource(m.rag_info, m.sources);
      a.finish(m.content, { usage: m.usage, timings: m.timings, ttft_ms: m.ttft_ms, finish_reason: m.finish_reason, incomplete: m.incomplete });
    }
  }
  scrollDown(true);
}

/**
 * Opens a stored session: its messages, and its documents in the selector
 * (GET /session/{id} has the set, in order; the list has only the first),
 * unless the user picked documents since `picks` (docPicks when the
 * opening was asked for).
 */
async function openSession(id, item, picks = docPicks) {
  if (busy) stop();
  const seq = ++openSeq;
  try {
    const r = await get(`/session/${encodeURIComponent(id)}/messages`);
    // a later opening wins
    if (seq !== openSeq) return true;
    session.id = id;
    session.onServer = true;
    saved.set('kvchat.session', id);
    renderHistory(r.messages || []);
    const info = await get(`/session/${encodeURIComponent(id)}`).catch(() => null)
      || item || sessions.find((s) => s.session_id === id) || null;
    const ids = info && Array.isArray(info.document_ids) && info.document_ids.length ? info.document_ids
      : info && info.document_id ? [info.document_id] : [];
    if (seq !== openSeq) return true;
    // documents the user picked meanwhile (the page restores the last
    // session as it loads) are the ones the next question uses
    if (docPicks !== picks) {
      renderSessions();
      return true;
    }
    const gone = ids.filter((x) => !docById(x)).length;
    restoring = true;
    setChatDocs(ids);
    restoring = false;
    if (!gone) {
      setStatus(el.status, '');
    } else if (ids.length > 1) {
      setStatus(el.status, `${gone} of this session's ${ids.length} documents ${gone === 1 ? 'is' : 'are'} no longer in the library.`, 'info');
    } else {
      setStatus(el.status, `This session's document (${(info && info.document_filename) || 'unknown'}) is no longer in the library.`, 'info');
    }
    renderSessions();
    return true;
  } catch (err) {
    if (item) setStatus(el.status, `Cannot open the session: ${err.detail || err}`, 'error');
    return false;
  }
}

async function deleteSession(s) {
  try {
    await del(`/session/${encodeURIComponent(s.session_id)}`);
    if (s.session_id === session.id) newSession();
  } catch (err) {
    setStatus(el.status, `Cannot delete the session: ${err.detail || err}`, 'error');
  }
  refreshSessions();
}

export async function refreshSessions() {
  try {
    const list = await get('/sessions');
    sessions = Array.isArray(list) ? list : [];
    el.sessionsError = '';
  } catch (err) {
    el.sessionsError = `Cannot load the sessions: ${err.detail || err}`;
  }
  renderSessions();
}

function renderSessions() {
  if (el.sessionsError) {
    el.sessions.replaceChildren(h('li', { class: 'empty-item error-text', role: 'alert' }, el.sessionsError));
    return;
  }
  if (!sessions.length) {
    el.sessions.replaceChildren(h('li', { class: 'empty-item muted' }, 'No past sessions yet.'));
    return;
  }
  const focusKey = document.activeElement?.dataset?.focusKey;
  el.sessions.replaceChildren(...sessions.map((s) => {
    const current = s.session_id === session.id;
    const title = s.title || (s.document_filename ? `About ${s.document_filename}` : 'Untitled session');
    const meta = [`${s.message_count} message${s.message_count === 1 ? '' : 's'}`,
      s.document_filename, ago(s.last_active)].filter(Boolean).join(' · ');
    return h('li', { class: 'session-item', dataset: { sessionId: s.session_id }, 'aria-current': current ? 'true' : null },
      h('button', {
        type: 'button', class: 'session-open', title: `Last active ${fullTime(s.last_active)}`,
        dataset: { focusKey: `open-${s.session_id}` },
        onclick: async () => { if (await openSession(s.session_id, s)) emit('view', 'chat'); },
      }, title),
      h('span', { class: 'session-meta muted' }, meta),
      confirmButton('Delete', 'Confirm', `Delete session “${title}”`, () => deleteSession(s)));
  }));
  if (focusKey) document.querySelector(`[data-focus-key="${CSS.escape(focusKey)}"]`)?.focus();
}

/** Wires the chat; reopens the last session once `docsReady` resolves. */
export function initChat(docsReady) {
  el.messages = byId('messages');
  el.empty = byId('chat-empty');
  el.form = byId('composer');
  el.input = byId('chat-input');
  el.send = byId('send-btn');
  el.stop = byId('stop-btn');
  el.status = byId('chat-status');
  el.sessions = byId('session-list');

  el.form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    send();
  });
  el.input.addEventListener('keydown', (ev) => {
    if (ev.key === 'Enter' && !ev.shiftKey && !ev.altKey && !ev.ctrlKey && !ev.metaKey && !ev.isComposing) {
      ev.preventDefault();
      send();
    }
  });
  el.input.addEventListener('input', scheduleDraft);
  const draftsToggle = byId('drafts-toggle');
  draftsToggle.checked = draftsOn();
  draftsToggle.addEventListener('change', () => {
    saved.set('kvchat.drafts', draftsToggle.checked ? 'on' : 'off');
    resetDrafts();
  });
  // turned off on the server (llm.drafts = false): no choice to offer
  on('model-status', (st) => {
    draftsToggle.closest('.composer-options').hidden = st.drafts === false;
  });
  el.stop.addEventListener('click', stop);
  byId('clear-btn').addEventListener('click', () => {
    newSession();
    setStatus(el.status, 'New session started.', 'info');
    el.input.focus();
  });
  byId('session-refresh').addEventListener('click', refreshSessions);
  on('signed-in', refreshSessions);
  on('doc-selected', () => {
    if (!restoring) docPicks++;
    if (!restoring && session.onServer && el.messages.querySelector('.msg')) {
      const names = chatDocIds().map((x) => docById(x).filename);
      const list = names.length > 1 ? `${names.slice(0, -1).join(', ')} and ${names[names.length - 1]}` : names[0];
      setStatus(el.status, list ? `Next questions use ${list}.` : 'Next questions use no document.', 'info');
    }
  });

  setBusy(false);
  const last = saved.get('kvchat.session');
  session.id = newId();
  // a pick made while the documents load (their marks show before the
  // previews are in) is the user's too: counted from now, not from then
  const picks = docPicks;
  Promise.resolve(docsReady).then(() => (last ? openSession(last, undefined, picks) : false)).then((ok) => {
    if (!ok) newSession();
    refreshSessions();
  });
}
