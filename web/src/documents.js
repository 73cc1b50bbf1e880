// documents.js — upload (picker and drag-and-drop, several files, checked
// before sending), the Cache button with streamed progress, the library list
// with each document's cache state (and which documents the chat uses, with
// a button to add or take out each), the chat's document selector and the
// preview of the selected document.
//
// A long document is planned by the server into parts (the API's groups),
// each cached on its own: the library shows them ("9 parts · 4 cached", a
// row of cells, one per part), caching shows the part under way and the
// time left, and the preview can show any passage (a chunk and its
// neighbours) with the source of an answer highlighted (openPassage).
//
// With accounts, a document shared with every user says so ("shared"), an
// admin sees whose each document is and can share or unshare it (when the
// server has POST /documents/{id}/share), and a user is not offered to
// delete a shared document that is not theirs.
import { ApiError, del, events as sse, get, post, request, upload } from './api.js';
import { byId, confirmButton, h, setStatus } from './dom.js';
import { bytes, cacheState, eta, int, lastHeading, ms, pages, partState, partsSummary, tierName } from './format.js';
import { chatDocIds, docById, emit, hasAccounts, isAdmin, on, saved, state } from './state.js';

/** What the server accepts, checked here before sending: its defaults
 * until GET /documents/limits answers with the configured values. */
export const limits = {
  ext: ['txt', 'md', 'markdown', 'pdf', 'docx', 'odt', 'html', 'htm', 'epub', 'pptx', 'odp',
    'xlsx', 'ods', 'csv', 'tsv', 'png', 'jpg', 'jpeg', 'tif', 'tiff', 'webp'],
  maxMb: 50,
};

/** The preview shows at most this much of the first lines. */
const PREVIEW_MAX_CHARS = 2000;
/** Parts lists loaded at once (one GET /groups per document). */
const PARTS_CONCURRENCY = 3;
/** A long document lists at most this many failed parts by name. */
const FAILED_SHOWN = 3;

/** The formats kvchat reads, as the upload hint names them. */
const TYPES_TEXT = 'txt, md, pdf, docx, odt, html, epub, pptx, odp, xlsx, ods, csv, images';

const el = {};
/** Files chosen and not yet uploaded: {file, error, state, message}. */
let pending = [];
let uploading = false;
let previewSeq = 0;
let pollTimer = null;
let engineStarted = 0;
/** Whether this server shares documents (POST /documents/{id}/share, admins). */
let canShare = false;

function extOf(name) {
  const dot = name.lastIndexOf('.');
  return dot > 0 ? name.slice(dot + 1).toLowerCase() : '';
}

/** Why a file cannot be uploaded, or '' when it can. */
export function checkFile(file) {
  const ext = extOf(file.name);
  if (!limits.ext.includes(ext)) {
    return `Unsupported type${ext ? ` .${ext}` : ' (no extension)'}: use ${TYPES_TEXT}`;
  }
  if (file.size > limits.maxMb * 1024 * 1024) {
    return `Too large (${bytes(file.size)}): the limit is ${limits.maxMb} MB`;
  }
  if (file.size === 0) return 'The file is empty';
  return '';
}

function addFiles(list) {
  pending = pending.filter((p) => p.state === 'pending');
  for (const file of list) {
    if (pending.some((p) => p.file.name === file.name && p.file.size === file.size)) continue;
    const error = checkFile(file);
    pending.push({ file, error, state: error ? 'rejected' : 'pending', message: error });
  }
  renderPending();
  const ok = pending.filter((p) => p.state === 'pending').length;
  const bad = pending.length - ok;
  if (!pending.length) return;
  setStatus(el.status,
    `${ok} file${ok === 1 ? '' : 's'} ready to upload${bad ? `, ${bad} rejected (see the list)` : ''}.`,
    bad ? 'error' : 'info');
}

function renderPending() {
  el.pending.replaceChildren(...pending.map((p, i) => {
    const remove = p.state === 'uploading' ? null : h('button', {
      type: 'button', class: 'btn small ghost', 'aria-label': `Remove ${p.file.name} from the list`,
      onclick: () => { pending.splice(i, 1); renderPending(); },
    }, '×');
    return h('li', { class: 'pending-item', dataset: { state: p.state } },
      h('span', { class: 'pending-name' }, p.file.name),
      h('span', { class: 'pending-size muted' }, bytes(p.file.size)),
      remove,
      p.message ? h('span', { class: 'pending-msg', role: p.state === 'rejected' || p.state === 'failed' ? 'alert' : null }, p.message) : null);
  }));
  el.uploadBtn.disabled = uploading || !pending.some((p) => p.state === 'pending');
}

async function uploadAll() {
  const todo = pending.filter((p) => p.state === 'pending');
  if (!todo.length || uploading) return;
  uploading = true;
  el.uploadBtn.disabled = true;
  let done = 0;
  let failed = 0;
  let lastId = '';
  for (const [i, p] of todo.entries()) {
    p.state = 'uploading';
    p.message = 'uploading…';
    renderPending();
    const label = `Uploading ${todo.length > 1 ? `${i + 1} of ${todo.length}: ` : ''}${p.file.name}`;
    setStatus(el.status, `${label}…`, 'busy');
    try {
      const res = await upload('/documents/upload', p.file, (f) => {
        setStatus(el.status, `${label} (${Math.round(f * 100)}%)…`, 'busy');
      }, (ev) => {
        // the server's progress once the bytes are in: its extraction queue
        const what = ev.stage === 'queued' ? `waiting for extraction (position ${ev.position})`
          : ev.stage === 'extracting' ? 'extracting text'
            : ev.stage === 'ocr' ? ocrProgressText(ev)
              : ev.stage === 'storing' ? 'storing' : '';
        if (!what) return;
        p.message = `${what}…`;
        renderPending();
        setStatus(el.status, `${label}: ${what}…`, 'busy');
      });
      p.state = 'done';
      p.message = res.existed ? 'already in the library (identical content)' : 'uploaded';
      lastId = res.doc_id;
      done++;
    } catch (err) {
      p.state = 'failed';
      p.message = uploadError(err);
      failed++;
    }
    renderPending();
  }
  uploading = false;
  renderPending();
  if (lastId) state.lastUploadedId = lastId;
  await refreshDocs();
  if (lastId) selectDoc(lastId);
  const parts = [];
  if (done) parts.push(`Uploaded ${done} document${done === 1 ? '' : 's'}${lastId && docById(lastId) ? ` — press Cache to prefill ${docById(lastId).filename}` : ''}.`);
  if (failed) parts.push(`${failed} upload${failed === 1 ? '' : 's'} rejected: ${todo.filter((p) => p.state === 'failed').map((p) => `${p.file.name}: ${p.message}`).join('; ')}`);
  setStatus(el.status, parts.join(' '), failed ? 'error' : 'ok');
}

function uploadError(err) {
  if (!(err instanceof ApiError)) return String(err);
  switch (err.status) {
    case 400: return `Rejected: ${err.detail}`;
    case 413: return `Too large: ${err.detail}`;
    case 422: return `Text could not be extracted: ${err.detail}`;
    case 0: return err.detail;
    default: return `Upload failed (${err.status}): ${err.detail}`;
  }
}

/**
 * Caches a document in the engine, streaming progress. A document of
 * several parts reports each part (init, then progress per part with the
 * overall percent and the time left, then complete); `run` keeps what the
 * stream said so the library can draw it while it goes.
 */
export async function cacheDoc(id) {
  const doc = docById(id);
  const name = doc ? doc.filename : 'the document';
  if (state.caching.has(id)) return;
  const known = state.parts.get(id);
  const run = {
    percent: 0,
    groups: known && known.groups.length > 1 ? known.groups.map((g) => ({ ...g })) : null,
    part: -1,
    total: 0,
    eta: NaN,
    complete: null,
  };
  state.caching.set(id, run);
  renderDocs();
  setStatus(el.status, `Caching ${name}…`, 'busy');
  let outcome = null;
  try {
    const res = await request('POST', `/documents/cache/${encodeURIComponent(id)}`, { accept: 'text/event-stream' });
    for await (const ev of sse(res)) {
      if (ev.event === 'init') {
        if (Array.isArray(ev.groups) && ev.groups.length) run.groups = ev.groups.map((g) => ({ ...g }));
        run.total = ev.total_groups || (run.groups ? run.groups.length : 0);
        renderDocs();
      } else if (ev.event === 'progress') {
        if (Number.isFinite(ev.percent)) run.percent = ev.percent;
        if (Number.isInteger(ev.group_id)) {
          partProgress(run, ev);
          const left = eta(ev.eta_s);
          setStatus(el.status, `Caching ${name}: part ${run.part + 1} of ${int(run.total)}, ${run.percent}%${left ? ` — ${left}` : ''}…`, 'busy');
        } else {
          setStatus(el.status, `Caching ${name}: ${ev.percent}% (${int(ev.done)} of ${int(ev.total)} tokens)…`, 'busy');
        }
        renderDocs();
      } else if (ev.event === 'complete') {
        run.complete = ev;
      } else if (ev.event === 'done' || ev.event === 'error') {
        outcome = ev;
      }
    }
    if (!outcome) throw new ApiError(0, 'the connection closed before caching finished');
    if (outcome.event === 'error') throw new ApiError(outcome.status || 500, outcome.detail || 'caching failed');
    if (outcome.total_groups > 1) {
      setStatus(el.status, partsOutcome(name, outcome), outcome.failed_groups ? 'error' : 'ok');
    } else {
      const how = outcome.already_cached ? 'was already cached' : `cached in ${ms(outcome.prefill_ms)}`;
      setStatus(el.status, `${name} ${how}: ${int(outcome.n_tokens)} tokens, ${bytes(outcome.bytes)} of KV cache ${tierName(outcome.tier)}.`, 'ok');
    }
    if (Array.isArray(outcome.groups) && outcome.groups.length) run.groups = outcome.groups;
  } catch (err) {
    const e = err instanceof ApiError ? err : new ApiError(0, String(err));
    let text;
    if (e.status === 422) text = `Cannot cache ${name}: ${e.detail}`;
    else if (e.status === 503) text = `Cannot cache ${name}: ${e.detail}`;
    else text = `Caching ${name} failed${e.status ? ` (${e.status})` : ''}: ${e.detail}`;
    const c = run.complete;
    if (c && c.total_groups > 1) {
      text = `${name}: ${int(c.cached_groups)} of ${int(c.total_groups)} parts cached, ${int(c.failed_groups)} failed${e.detail ? ` (${e.detail})` : ''}.`;
    }
    setStatus(el.status, text, 'error');
  } finally {
    // what the run saw stays on screen until the server's parts list is back
    if (run.groups) state.parts.set(id, { key: null, groups: run.groups, stale: true });
    state.caching.delete(id);
    await refreshDocs();
    emit('engine-activity');
  }
}

/** One part's progress event into the run's record of the parts. */
function partProgress(run, ev) {
  run.part = ev.group_id;
  if (Number.isInteger(ev.total_groups)) run.total = ev.total_groups;
  run.eta = Number.isFinite(ev.eta_s) ? ev.eta_s : NaN;
  if (!run.groups || run.groups.length < Math.max(run.total, ev.group_id + 1)) {
    // no init event (or a short one): placeholders for the parts not named yet
    const have = new Map((run.groups || []).map((g) => [g.group_id, g]));
    run.groups = Array.from({ length: Math.max(run.total, ev.group_id + 1) },
      (_, i) => have.get(i) || { group_id: i, status: 'none' });
  }
  const g = run.groups.find((x) => x.group_id === ev.group_id);
  g.status = ev.status;
  g.cached = ev.status === 'cached';
  if (ev.status === 'failed') g.error = ev.error || ev.detail || g.error || null;
}

/** The status line once every part has been tried. */
function partsOutcome(name, o) {
  const total = int(o.total_groups);
  const all = `${int(o.cached_groups)} of ${total} parts cached`;
  const failed = o.failed_groups ? `, ${int(o.failed_groups)} failed` : '';
  if (o.already_cached) return `${name}: ${all} (all were already cached).`;
  const how = [o.n_tokens >= 0 ? `${int(o.n_tokens)} tokens` : '', o.bytes >= 0 ? `${bytes(o.bytes)} of KV cache ${tierName(o.tier)}` : '',
    o.prefill_ms >= 0 ? `in ${ms(o.prefill_ms)}` : ''].filter(Boolean).join(', ');
  return `${name}: ${all}${failed}${how ? ` (${how})` : ''}.`;
}

function onCacheButton() {
  const id = state.selectedDocId || state.lastUploadedId;
  if (!id || !docById(id)) {
    setStatus(el.status, 'Nothing to cache: select a document (or upload one) first.', 'error');
    return;
  }
  cacheDoc(id);
}

async function deleteDoc(doc) {
  try {
    await del(`/documents/${encodeURIComponent(doc.doc_id)}`);
    if (state.lastUploadedId === doc.doc_id) state.lastUploadedId = '';
    setStatus(el.status, `Deleted ${doc.filename}.`, 'ok');
  } catch (err) {
    setStatus(el.status, `Cannot delete ${doc.filename}: ${err.detail || err}`, 'error');
  }
  await refreshDocs();
}

/* ---- sharing (accounts) ---- */

/**
 * Whether the server has the share route: its OpenAPI description lists
 * every route (a POST that is not there would answer 404, as would a
 * document that is gone).
 */
async function probeSharing() {
  try {
    const api = await get('/openapi.json');
    canShare = Object.entries((api && api.paths) || {})
      .some(([p, ops]) => /\/documents\/\{[^}]+\}\/share$/.test(p) && ops && ops.post);
  } catch {
    canShare = false;
  }
  renderDocs();
}

async function shareDoc(doc, everyone) {
  setStatus(el.status, `${everyone ? 'Sharing' : 'Unsharing'} ${doc.filename}…`, 'busy');
  try {
    await post(`/documents/${encodeURIComponent(doc.doc_id)}/share`, { everyone });
    setStatus(el.status, everyone
      ? `${doc.filename} is shared: every user can read it and chat with it. Its cache is made anew.`
      : `${doc.filename} is its owner's alone again.`, 'ok');
  } catch (err) {
    // no such route (an older server): "Not found: /api/v1/..." or a 405
    if (err instanceof ApiError && (err.status === 405 || (err.status === 404 && /^Not found: \//.test(err.detail)))) {
      canShare = false;
      setStatus(el.status, 'Sharing is not available on this server yet.', 'error');
    } else {
      setStatus(el.status, `Cannot ${everyone ? 'share' : 'unshare'} ${doc.filename}: ${err.detail || err}`, 'error');
    }
  }
  await refreshDocs();
}

/** Whose a document is, for an admin ('' when theirs, or unknown). */
function ownerText(d) {
  if (!hasAccounts() || !isAdmin() || d.owner === undefined) return '';
  if (d.owner === null) return 'no owner';
  if (state.me.user && d.owner === state.me.user.id) return '';
  const name = state.userNames.get(d.owner);
  return name ? `owner ${name}` : '';
}

/** Whether this user may delete the document (a shared one only its owner or an admin). */
function mayDelete(d) {
  if (!hasAccounts() || isAdmin() || !d.shared) return true;
  return !!state.me.user && d.owner === state.me.user.id;
}

/** Reloads the document list; keeps the selection when it still exists. */
export async function refreshDocs() {
  try {
    const list = await get('/documents/list');
    state.docs = Array.isArray(list) ? list : [];
    el.listError = '';
  } catch (err) {
    el.listError = `Cannot load the documents: ${err.detail || err}`;
  }
  if (!el.listError) state.moreDocIds = state.moreDocIds.filter(docById);
  // the chat's first document gone: the next one it uses takes its place
  if (state.selectedDocId && !docById(state.selectedDocId)) setChatDocs(state.moreDocIds);
  renderDocs();
  emit('docs');
  schedulePoll();
  if (await loadParts()) renderDocs();
}

/** What a document's parts list depends on: when it changes, reload it. */
function partsKey(d) {
  const c = d.cache || {};
  return [d.cache_status, c.status, c.tier, c.tokens, c.cached_at, c.error, c.evicted ? 'evicted' : '', d.total_chunks].join('|');
}

let partsChain = Promise.resolve(false);

/** loadPartsPass() after the pass under way (one at a time). */
function loadParts() {
  partsChain = partsChain.then(loadPartsPass, loadPartsPass);
  return partsChain;
}

/**
 * Loads the parts of every document whose cache state changed since its
 * parts were last loaded (a few at a time); resolves to true when some
 * came back different. A document being cached here is drawn from its
 * stream instead. A failed load keeps what was known (a short document
 * shows as it always did).
 */
async function loadPartsPass() {
  const todo = state.docs.filter((d) => {
    if (state.caching.has(d.doc_id)) return false;
    const known = state.parts.get(d.doc_id);
    return !known || known.stale || known.key !== partsKey(d) || d.cache_status === 'caching';
  });
  for (const id of [...state.parts.keys()]) if (!docById(id)) state.parts.delete(id);
  if (!todo.length) return false;
  let changed = false;
  const one = async (d) => {
    const key = partsKey(d);
    try {
      const groups = await get(`/documents/${encodeURIComponent(d.doc_id)}/groups`);
      if (!Array.isArray(groups) || state.caching.has(d.doc_id)) return;
      const before = state.parts.get(d.doc_id);
      if (!before || JSON.stringify(before.groups) !== JSON.stringify(groups)) changed = true;
      state.parts.set(d.doc_id, { key, groups, stale: false });
    } catch {
      const before = state.parts.get(d.doc_id);
      if (before) before.stale = false;
    }
  };
  const queue = [...todo];
  await Promise.all(Array.from({ length: Math.min(PARTS_CONCURRENCY, queue.length) }, async () => {
    while (queue.length) await one(queue.shift());
  }));
  return changed;
}

/** The parts a document shows: its caching run's, else the last loaded. */
function partsOf(id) {
  const run = state.caching.get(id);
  if (run && run.groups && run.groups.length) return run.groups;
  const known = state.parts.get(id);
  return known ? known.groups : null;
}

/**
 * A document's cache state, parts included: a document of several parts
 * is cached when every part is, and says how many are when only some are.
 * Returns cacheState()'s object plus `parts` (partsSummary) and `run`.
 */
function docState(d) {
  const run = state.caching.get(d.doc_id);
  const cs = cacheState(d, run ? run.percent : undefined, state.engine);
  const ps = partsSummary(partsOf(d.doc_id));
  const out = { ...cs, parts: ps, run };
  if (!ps.long || run) return out;
  if (ps.cached === ps.total) {
    if (cs.state !== 'cached') Object.assign(out, { state: 'cached', label: 'cached', short: 'cached', detail: `All ${ps.total} parts are in the KV cache` });
  } else if (ps.failed) {
    Object.assign(out, { state: 'failed', label: `${ps.cached} of ${ps.total} parts cached`, short: `${ps.failed} part${ps.failed === 1 ? '' : 's'} failed`, detail: `${ps.failed} of ${ps.total} parts could not be cached: press Cache to try them again` });
  } else if (ps.caching) {
    Object.assign(out, { state: 'caching', label: `caching… ${ps.cached} of ${ps.total} parts`, short: 'caching…' });
  } else if (ps.cached) {
    Object.assign(out, { state: 'partial', label: `${ps.cached} of ${ps.total} parts cached`, short: 'partly cached', detail: 'Some parts are not in the KV cache (evicted or not cached yet): press Cache' });
  } else if (cs.state === 'cached') {
    Object.assign(out, { state: 'none', label: 'not cached', short: 'not cached', detail: 'The model server no longer holds its parts: press Cache' });
  }
  return out;
}

/** While some document is caching (from elsewhere), poll the list. */
function schedulePoll() {
  clearTimeout(pollTimer);
  const busy = state.docs.some((d) => d.cache_status === 'caching' && !state.caching.has(d.doc_id));
  if (busy) pollTimer = setTimeout(refreshDocs, 3000);
}

function keepFocus(render) {
  const key = document.activeElement && document.activeElement.dataset ? document.activeElement.dataset.focusKey : null;
  render();
  if (key) {
    const again = document.querySelector(`[data-focus-key="${CSS.escape(key)}"]`);
    if (again) again.focus();
  }
}

export function renderDocs() {
  keepFocus(() => {
    renderSelector();
    renderMore();
    renderList();
    renderBadge();
  });
}

function renderSelector() {
  const items = [['', 'No document']];
  for (const d of state.docs) {
    const cs = docState(d);
    items.push([d.doc_id, `${d.filename} — ${cs.short}${cs.parts.long ? ` · ${int(cs.parts.total)} parts` : ''}`]);
  }
  const opts = [...el.select.options];
  if (opts.length === items.length && opts.every((o, i) => o.value === items[i][0])) {
    // the same documents: relabel in place (an open dropdown stays open)
    opts.forEach((o, i) => { if (o.textContent !== items[i][1]) o.textContent = items[i][1]; });
  } else {
    el.select.replaceChildren(...items.map(([v, t]) => h('option', { value: v }, t)));
  }
  el.select.value = state.selectedDocId;
}

// OCR (text recognised from page images): the upload's progress, page by page.
function ocrProgressText(ev) {
  const total = Number(ev.total) || 0;
  return `recognising text in images (OCR): page ${Math.min((Number(ev.done) || 0) + 1, total)} of ${total}`;
}

// A document whose text was (partly) recognised from images says so, with
// the pages and Tesseract's mean confidence.
function ocrBadge(d) {
  const o = d.ocr;
  if (!o || !Array.isArray(o.pages) || !o.pages.length) return null;
  const pages = o.pages.length === 1 ? `page ${o.pages[0]}` : `${o.pages.length} pages`;
  return h('span', {
    class: 'badge doc-ocr',
    title: `Text recognised from images (OCR) on ${o.pages.length === 1 ? 'page' : 'pages'} `
      + `${o.pages.join(', ')}; mean confidence ${o.confidence}%. It may contain misread words.`,
  }, `text recognised from images (OCR) · ${pages} · ${o.confidence}% confidence`);
}

function renderList() {
  if (el.listError) {
    el.list.replaceChildren(h('li', { class: 'empty-item error-text', role: 'alert' }, el.listError));
    return;
  }
  if (!state.docs.length) {
    el.list.replaceChildren(h('li', { class: 'empty-item muted' }, 'No documents yet. Upload one above.'));
    return;
  }
  const used = chatDocIds();
  el.list.replaceChildren(...state.docs.map((d) => {
    const cs = docState(d);
    const { run, parts: ps } = cs;
    const selected = d.doc_id === state.selectedDocId;
    const inChat = used.includes(d.doc_id);
    const meta = [d.content_type, bytes(d.file_size), d.n_tokens >= 0 ? `${int(d.n_tokens)} tokens` : null,
      d.total_pages > 0 ? `${int(d.total_pages)} page${d.total_pages === 1 ? '' : 's'}` : null, ownerText(d)]
      .filter(Boolean).join(' · ');
    const shareable = canShare && hasAccounts() && isAdmin() && typeof d.shared === 'boolean';
    const failedParts = ps.long ? partsOf(d.doc_id).filter((g) => partState(g) === 'failed') : [];
    return h('li', {
      class: 'doc-item', dataset: { docId: d.doc_id, state: cs.state, inChat: inChat ? 'true' : 'false' },
      'aria-current': selected ? 'true' : null,
    },
      h('button', {
        type: 'button', class: 'doc-name', title: `Use ${d.filename} in the chat`,
        dataset: { focusKey: `use-${d.doc_id}` }, 'aria-pressed': selected ? 'true' : 'false',
        onclick: () => { selectDoc(d.doc_id); emit('view', 'chat'); },
      }, d.filename),
      h('span', { class: 'doc-meta muted' }, meta),
      h('div', { class: 'doc-tags' },
        h('span', { class: 'badge doc-cache', dataset: { state: cs.state, tier: cs.tier || '' }, title: cs.detail }, cs.label),
        inChat ? h('span', { class: 'badge doc-in-chat', title: 'The next questions use this document' }, 'in this chat') : null,
        ocrBadge(d),
        d.shared === true ? h('span', { class: 'badge doc-shared', title: 'Shared: every user can read this document and chat with it' }, 'shared') : null,
        h('button', {
          type: 'button', class: 'btn small ghost doc-chat-toggle',
          dataset: { focusKey: `chat-${d.doc_id}` },
          'aria-label': inChat ? `Remove ${d.filename} from this chat` : `Add ${d.filename} to this chat`,
          onclick: () => toggleInChat(d.doc_id),
        }, inChat ? 'Remove from chat' : '+ Add to chat')),
      ps.long ? partsRow(d, ps, partsOf(d.doc_id), run) : null,
      cs.state === 'caching' && run
        ? h('progress', { max: 100, value: run.percent ?? null, 'aria-label': `Caching ${d.filename}` })
        : null,
      run && ps.long && run.part >= 0 ? h('span', { class: 'doc-progress muted', role: 'status' }, progressText(run, ps)) : null,
      cs.state === 'failed' && !failedParts.length ? h('span', { class: 'doc-error error-text' }, cs.detail) : null,
      failedParts.length ? failedList(failedParts) : null,
      h('span', { class: 'doc-actions' },
        h('button', {
          type: 'button', class: 'btn small', disabled: cs.state === 'caching',
          dataset: { focusKey: `cache-${d.doc_id}` }, 'aria-label': `Cache ${d.filename}`,
          onclick: () => cacheDoc(d.doc_id),
        }, cs.state === 'cached' ? 'Re-cache' : 'Cache'),
        shareable ? h('button', {
          type: 'button', class: 'btn small ghost doc-share', dataset: { focusKey: `share-${d.doc_id}` },
          'aria-label': d.shared ? `Stop sharing ${d.filename}` : `Share ${d.filename} with every user`,
          onclick: () => shareDoc(d, !d.shared),
        }, d.shared ? 'Unshare' : 'Share') : null,
        mayDelete(d) ? confirmButton('Delete', 'Confirm', `Delete ${d.filename}`, () => deleteDoc(d)) : null));
  }));
}

/** "9 parts · 4 cached" and a cell per part (cached, caching, failed, none). */
function partsRow(d, ps, groups, run) {
  const stateText = { cached: 'cached', caching: 'caching…', failed: 'failed', none: 'not cached' };
  return h('div', { class: 'doc-parts', dataset: { total: ps.total, cached: ps.cached, failed: ps.failed } },
    h('span', { class: 'doc-parts-label' }, ps.label),
    h('span', { class: 'part-cells', 'aria-hidden': 'true', dataset: { many: ps.total > 48 ? 'yes' : 'no' } },
      ...groups.map((g) => {
        const st = partState(g);
        const now = run && run.part === g.group_id && st === 'caching';
        return h('span', {
          class: 'part-cell',
          dataset: { state: st, part: g.group_id + 1, current: now ? 'yes' : null },
          title: `Part ${g.group_id + 1} of ${ps.total}${g.where ? ` (${g.where})` : ''}: ${stateText[st]}${st === 'failed' && g.error ? ` — ${g.error}` : ''}`,
        });
      })));
}

/** "part 4 of 9 · 41% · about 12 s left" while a run goes. */
function progressText(run, ps) {
  const total = run.total || ps.total;
  return [`part ${run.part + 1} of ${int(total)}`, `${run.percent}%`, eta(run.eta)].filter(Boolean).join(' · ');
}

/** The failed parts with their errors (the first few). */
function failedList(failed) {
  const lines = failed.slice(0, FAILED_SHOWN).map((g) => h('li', {},
    `Part ${g.group_id + 1}${g.where ? ` (${g.where})` : ''} failed${g.error ? `: ${g.error}` : ''}`));
  if (failed.length > FAILED_SHOWN) lines.push(h('li', {}, `and ${failed.length - FAILED_SHOWN} more`));
  return h('ul', { class: 'doc-error doc-part-errors error-text' }, ...lines);
}

function renderBadge() {
  const d = docById(state.selectedDocId);
  if (!d) {
    el.badge.hidden = true;
    return;
  }
  const cs = docState(d);
  el.badge.hidden = false;
  let text = cs.label;
  if (cs.parts.long) {
    const total = `${int(cs.parts.total)} parts`;
    if (cs.run) text = cs.run.part >= 0 ? `${cs.label} · part ${cs.run.part + 1} of ${int(cs.run.total || cs.parts.total)}` : cs.label;
    else if (cs.state === 'cached') text = `${cs.short} · ${total}`;
    else if (!/parts/.test(cs.label)) text = `${cs.label} · ${total}`;
  }
  el.badge.textContent = text;
  el.badge.title = cs.detail;
  el.badge.dataset.state = cs.state;
}

/**
 * The documents a chat may use beside the selected one: a chip per added
 * document (× takes it out) and a selector of the others. Shown once a
 * document is selected and the library has another.
 */
function renderMore() {
  const others = state.docs.filter((d) => d.doc_id !== state.selectedDocId && !state.moreDocIds.includes(d.doc_id));
  el.more.hidden = !state.selectedDocId || state.docs.length < 2;
  el.extra.replaceChildren(...state.moreDocIds.filter(docById).map((id) => {
    const d = docById(id);
    return h('li', { class: 'chip', dataset: { docId: id } },
      h('span', { class: 'chip-name', title: d.filename }, d.filename),
      h('button', {
        type: 'button', class: 'chip-remove', 'aria-label': `Remove ${d.filename} from this chat`,
        dataset: { focusKey: `unadd-${id}` },
        onclick: () => setMoreDocs(state.moreDocIds.filter((x) => x !== id)),
      }, '×'));
  }));
  const items = [['', state.moreDocIds.length ? '+ Add another…' : '+ Add a document…'],
    ...others.map((d) => [d.doc_id, d.filename])];
  const opts = [...el.add.options];
  if (opts.length !== items.length || opts.some((o, i) => o.value !== items[i][0] || o.textContent !== items[i][1])) {
    el.add.replaceChildren(...items.map(([v, t]) => h('option', { value: v }, t)));
  }
  el.add.value = '';
  el.add.disabled = !others.length;
}

/**
 * The chat's documents: `first` selected ('' = none), `more` beside it (in
 * order; none without a first). Remembered for the next visit; the chat
 * hears of a change (doc-selected).
 */
function useDocs(first, more) {
  const before = chatDocIds().join(',');
  state.selectedDocId = first && docById(first) ? first : '';
  state.moreDocIds = state.selectedDocId
    ? [...new Set(more)].filter((x) => x !== state.selectedDocId && docById(x)) : [];
  saved.set('kvchat.document', state.selectedDocId);
  saved.set('kvchat.moreDocuments', state.moreDocIds.join(','));
  el.select.value = state.selectedDocId;
  renderDocs();
  if (chatDocIds().join(',') !== before) emit('doc-selected', state.selectedDocId);
}

/** Sets the documents used beside the selected one (ids, in order). */
function setMoreDocs(ids) {
  useDocs(state.selectedDocId, ids);
}

/**
 * The library's toggle: adds a document to the chat's documents (the first
 * when the chat has none, else beside the others) or takes it out (the next
 * one becomes the first when the first goes), as the selector and the
 * chips do, and says so in the documents' status line (unless an upload
 * or a caching is reporting there).
 */
function toggleInChat(id) {
  const d = docById(id);
  if (!d) return;
  const ids = chatDocIds();
  if (!ids.includes(id)) {
    if (ids.length) setMoreDocs([...state.moreDocIds, id]);
    else selectDoc(id);
  } else if (id === state.selectedDocId) {
    setChatDocs(ids.slice(1));
  } else {
    setMoreDocs(state.moreDocIds.filter((x) => x !== id));
  }
  // an upload or a caching under way keeps the status line
  if (el.status.dataset.kind === 'busy') return;
  const n = chatDocIds().length;
  setStatus(el.status, ids.includes(id)
    ? `${d.filename} is no longer in this chat${n ? ` (${n} document${n === 1 ? '' : 's'} left)` : ''}.`
    : `${d.filename} is in this chat now${n > 1 ? ` (${n} documents)` : ''}.`, 'info');
}

/** Sets every document of the chat at once (a session's set, in order). */
export function setChatDocs(ids) {
  const listed = ids.filter(docById);
  useDocs(listed[0] || '', listed.slice(1));
  loadPreview();
}

/**
 * Selects a document for the chat ('' = no document, and none beside it)
 * and loads its preview; the documents added beside it stay.
 */
export function selectDoc(id) {
  useDocs(id, state.moreDocIds);
  loadPreview();
}

async function loadPreview() {
  const id = state.selectedDocId;
  const seq = ++previewSeq;
  passage = null;
  el.passage.hidden = true;
  el.previewText.hidden = false;
  if (!id) {
    el.preview.hidden = true;
    return;
  }
  el.preview.hidden = false;
  el.previewMeta.textContent = '(loading…)';
  try {
    const d = await get(`/documents/${encodeURIComponent(id)}?include_preview=true`);
    if (seq !== previewSeq) return;
    let text = d.content_preview || '';
    // the first lines can be long (a one-line document comes whole)
    const cut = text.length > PREVIEW_MAX_CHARS;
    if (cut) text = `${text.slice(0, PREVIEW_MAX_CHARS)}…`;
    const shown = text.split('\n').filter((_, i, a) => i < a.length - 1 || a[i] !== '').length;
    el.previewText.textContent = text || '(no text)';
    const ps = partsSummary(partsOf(id));
    el.previewMeta.textContent = `— ${d.filename}: ${cut ? 'the beginning' : `first ${Math.min(shown, d.total_lines ?? shown)}`} of ${int(d.total_lines)} line${d.total_lines === 1 ? '' : 's'}, ${int(d.n_chars)} characters${ps.long ? `, ${int(ps.total)} parts` : ''}`;
  } catch (err) {
    if (seq !== previewSeq) return;
    el.previewText.textContent = '';
    el.previewMeta.textContent = `— cannot load the preview: ${err.detail || err}`;
  }
}

/* ---- a passage: an answer's source in its place ---- */

/** The passage the preview shows: {docId, filename, total, chunks, hit}. */
let passage = null;

/** GET one chunk ({chunk_id, heading, page_numbers, ..., content}). */
async function fetchChunk(docId, chunkId) {
  const r = await get(`/documents/${encodeURIComponent(docId)}/chunks/${chunkId}`);
  if (!r || !r.chunk || typeof r.chunk.content !== 'string') throw new ApiError(0, 'the server sent no passage');
  return r.chunk;
}

/**
 * Shows a document's chunk in the preview with the chunks before and after
 * it, the chunk itself highlighted (.passage-hit) and scrolled into view.
 * The chat's document stays as it is; Close goes back to its first lines.
 */
export async function openPassage(docId, chunkId) {
  if (!docId || !Number.isInteger(chunkId) || chunkId < 0) return;
  const seq = ++previewSeq;
  const doc = docById(docId);
  const filename = doc ? doc.filename : 'the document';
  const total = doc && Number.isInteger(doc.total_chunks) ? doc.total_chunks : Infinity;
  el.preview.hidden = false;
  el.preview.open = true;
  el.previewText.hidden = true;
  el.passage.hidden = false;
  el.passageText.replaceChildren();
  el.passageEarlier.disabled = true;
  el.passageLater.disabled = true;
  el.previewMeta.textContent = `— ${filename}: loading the passage…`;
  const ids = [chunkId - 1, chunkId, chunkId + 1].filter((i) => i >= 0 && i < total);
  const got = await Promise.all(ids.map((i) => fetchChunk(docId, i).catch((err) => (i === chunkId ? err : null))));
  if (seq !== previewSeq) return;
  const hit = got[ids.indexOf(chunkId)];
  if (!hit || hit instanceof Error) {
    passage = null;
    el.previewMeta.textContent = `— ${filename}: cannot load the passage: ${(hit && (hit.detail || hit.message)) || 'not found'}`;
    return;
  }
  passage = { docId, filename, total, chunks: got.filter((c) => c && !(c instanceof Error)), hit: chunkId };
  renderPassage();
  // the highlighted chunk in view: centred, or its start when it is taller
  const mark = el.passageText.querySelector('.passage-hit');
  const box = el.passageText;
  if (mark) box.scrollTop = Math.max(0, mark.offsetTop - Math.max(8, (box.clientHeight - mark.offsetHeight) / 2));
  el.passageText.focus({ preventScroll: true });
}

function renderPassage() {
  const p = passage;
  const hit = p.chunks.find((c) => c.chunk_id === p.hit);
  const where = [lastHeading(hit.heading), pages(hit.page_numbers, hit.page_labels)].filter(Boolean).join(', ');
  el.previewMeta.textContent = `— ${p.filename}${where ? `: ${where}` : ''} (passage ${int(p.hit + 1)}${Number.isFinite(p.total) ? ` of ${int(p.total)}` : ''})`;
  el.passageText.replaceChildren(...p.chunks.map((c, i) => {
    const prev = p.chunks[i - 1];
    const isHit = c.chunk_id === p.hit;
    const place = [c.heading, pages(c.page_numbers, c.page_labels)].filter(Boolean).join(' · ');
    const prevPlace = prev ? [prev.heading, pages(prev.page_numbers, prev.page_labels)].filter(Boolean).join(' · ') : '';
    return h('section', {
      class: isHit ? 'passage-chunk passage-hit' : 'passage-chunk',
      dataset: { chunkId: c.chunk_id, hit: isHit ? 'true' : null },
      'aria-label': isHit ? 'The source passage' : null,
    },
    place && place !== prevPlace ? h('p', { class: 'passage-place' }, place) : null,
    h('div', { class: 'passage-body' }, isHit ? h('mark', { class: 'passage-mark' }, c.content) : c.content));
  }));
  el.passageEarlier.disabled = p.chunks[0].chunk_id <= 0;
  el.passageLater.disabled = p.chunks[p.chunks.length - 1].chunk_id >= p.total - 1;
}

/** One more chunk before (dir -1) or after (+1) the passage. */
async function extendPassage(dir) {
  const p = passage;
  if (!p) return;
  const seq = previewSeq;
  const id = dir < 0 ? p.chunks[0].chunk_id - 1 : p.chunks[p.chunks.length - 1].chunk_id + 1;
  if (id < 0 || id >= p.total) return;
  let c;
  try {
    c = await fetchChunk(p.docId, id);
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) {
      p.total = id;
      renderPassage();
    }
    return;
  }
  if (seq !== previewSeq || passage !== p) return;
  const box = el.passageText;
  const fromBottom = box.scrollHeight - box.scrollTop;
  if (dir < 0) p.chunks.unshift(c); else p.chunks.push(c);
  renderPassage();
  // what was in view stays in view
  if (dir < 0) box.scrollTop = box.scrollHeight - fromBottom;
}

function setupDrop() {
  const zone = el.dropzone;
  let depth = 0;
  const hasFiles = (ev) => ev.dataTransfer && [...ev.dataTransfer.types].includes('Files');
  zone.addEventListener('dragenter', (ev) => {
    if (!hasFiles(ev)) return;
    ev.preventDefault();
    depth++;
    zone.classList.add('over');
  });
  zone.addEventListener('dragover', (ev) => {
    if (!hasFiles(ev)) return;
    ev.preventDefault();
    ev.dataTransfer.dropEffect = 'copy';
  });
  zone.addEventListener('dragleave', () => {
    depth = Math.max(0, depth - 1);
    if (!depth) zone.classList.remove('over');
  });
  zone.addEventListener('drop', (ev) => {
    ev.preventDefault();
    depth = 0;
    zone.classList.remove('over');
    if (ev.dataTransfer && ev.dataTransfer.files.length) addFiles(ev.dataTransfer.files);
  });
  // A file dropped beside the zone must not replace the page.
  for (const type of ['dragover', 'drop']) {
    window.addEventListener(type, (ev) => {
      if (hasFiles(ev) && !zone.contains(ev.target)) {
        ev.preventDefault();
        if (type === 'dragover') ev.dataTransfer.dropEffect = 'none';
      }
    });
  }
}

function showUploadHint() {
  byId('upload-hint').textContent = `${TYPES_TEXT} · up to ${limits.maxMb} MB each`;
}

/** The server's configured limits; the defaults stay if it cannot say. */
async function loadLimits() {
  try {
    const l = await get('/documents/limits');
    if (Number.isInteger(l.max_upload_mb) && l.max_upload_mb > 0) limits.maxMb = l.max_upload_mb;
    if (Array.isArray(l.allowed_extensions) && l.allowed_extensions.length) {
      limits.ext = l.allowed_extensions.map((e) => String(e).toLowerCase());
    }
    showUploadHint();
  } catch {
    // an older server: keep the defaults
  }
}

/** Wires the documents part; resolves once the first list has loaded. */
export function initDocuments() {
  el.dropzone = byId('dropzone');
  el.input = byId('file-input');
  el.pending = byId('pending-list');
  el.uploadBtn = byId('upload-btn');
  el.cacheBtn = byId('cache-btn');
  el.status = byId('upload-status');
  el.list = byId('doc-list');
  el.select = byId('doc-select');
  el.badge = byId('doc-state');
  el.more = byId('doc-more');
  el.extra = byId('doc-extra');
  el.add = byId('doc-add');
  el.add.addEventListener('change', () => {
    if (el.add.value) setMoreDocs([...state.moreDocIds, el.add.value]);
  });
  el.preview = byId('preview');
  el.previewText = byId('preview-text');
  el.previewMeta = byId('preview-meta');
  el.passage = byId('passage');
  el.passageText = byId('passage-text');
  el.passageEarlier = byId('passage-earlier');
  el.passageLater = byId('passage-later');
  el.passageEarlier.addEventListener('click', () => extendPassage(-1));
  el.passageLater.addEventListener('click', () => extendPassage(1));
  byId('passage-close').addEventListener('click', () => loadPreview());
  // the preview starts folded on phones, where the chat needs the room
  const phone = window.matchMedia('(max-width: 760px)');
  el.preview.open = !phone.matches;
  phone.addEventListener('change', () => { el.preview.open = !phone.matches; });
  showUploadHint();
  loadLimits();

  el.input.addEventListener('change', () => {
    addFiles(el.input.files);
    el.input.value = '';
  });
  setupDrop();
  el.uploadBtn.addEventListener('click', uploadAll);
  el.cacheBtn.addEventListener('click', onCacheButton);
  el.select.addEventListener('change', () => selectDoc(el.select.value));
  // a Refresh asks for every document's parts again too
  const refreshAll = () => {
    for (const p of state.parts.values()) p.stale = true;
    refreshDocs();
  };
  byId('doc-refresh').addEventListener('click', refreshAll);
  byId('doc-list-refresh').addEventListener('click', refreshAll);
  on('engine', (engine) => {
    // another engine (a restart, a reset): the parts it holds may differ
    if (engineStarted && engine.startedAt !== engineStarted) {
      for (const p of state.parts.values()) p.stale = true;
      loadParts().then((changed) => { if (changed) renderDocs(); });
    }
    engineStarted = engine.startedAt;
    renderDocs();
  });
  on('model-settled', () => {
    // another model plans the parts anew
    for (const p of state.parts.values()) p.stale = true;
    refreshDocs();
  });

  on('signed-in', refreshAll);
  if (hasAccounts() && isAdmin()) {
    // the owners' names (the admin page keeps them up to date)
    on('users', (list) => {
      state.userNames = new Map(list.map((u) => [u.id, u.name]));
      renderDocs();
    });
    get('/users').then((r) => emit('users', Array.isArray(r.users) ? r.users : [])).catch(() => {});
    probeSharing();
  }

  state.selectedDocId = saved.get('kvchat.document') || '';
  state.moreDocIds = (saved.get('kvchat.moreDocuments') || '').split(',').filter(Boolean);
  return refreshDocs().then(() => loadPreview());
}
