// documents.js — upload (picker and drag-and-drop, several files, checked
// before sending), the Cache button with streamed progress, the library list
// with each document's cache state, the chat's document selector and the
// preview of the selected document.
import { ApiError, del, events as sse, get, request, upload } from './api.js';
import { byId, confirmButton, h, setStatus } from './dom.js';
import { bytes, cacheState, int, ms, tierName } from './format.js';
import { docById, emit, on, saved, state } from './state.js';

/** What the server accepts, checked here before sending: its defaults
 * until GET /documents/limits answers with the configured values. */
export const limits = {
  ext: ['txt', 'md', 'markdown', 'pdf', 'docx', 'odt', 'html', 'htm', 'epub'],
  maxMb: 50,
};

/** The preview shows at most this much of the first lines. */
const PREVIEW_MAX_CHARS = 2000;

const el = {};
/** Files chosen and not yet uploaded: {file, error, state, message}. */
let pending = [];
let uploading = false;
let previewSeq = 0;
let pollTimer = null;

function extOf(name) {
  const dot = name.lastIndexOf('.');
  return dot > 0 ? name.slice(dot + 1).toLowerCase() : '';
}

/** Why a file cannot be uploaded, or '' when it can. */
export function checkFile(file) {
  const ext = extOf(file.name);
  if (!limits.ext.includes(ext)) {
    return `Unsupported type${ext ? ` .${ext}` : ' (no extension)'}: use txt, md, pdf, docx, odt, html or epub`;
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

/** Caches a document's prefix in the engine, streaming progress. */
export async function cacheDoc(id) {
  const doc = docById(id);
  const name = doc ? doc.filename : 'the document';
  if (state.caching.has(id)) return;
  state.caching.set(id, 0);
  renderDocs();
  setStatus(el.status, `Caching ${name}…`, 'busy');
  let outcome = null;
  try {
    const res = await request('POST', `/documents/cache/${encodeURIComponent(id)}`, { accept: 'text/event-stream' });
    for await (const ev of sse(res)) {
      if (ev.event === 'progress') {
        state.caching.set(id, ev.percent);
        setStatus(el.status, `Caching ${name}: ${ev.percent}% (${int(ev.done)} of ${int(ev.total)} tokens)…`, 'busy');
        renderDocs();
      } else if (ev.event === 'done' || ev.event === 'error') {
        outcome = ev;
      }
    }
    if (!outcome) throw new ApiError(0, 'the connection closed before caching finished');
    if (outcome.event === 'error') throw new ApiError(outcome.status || 500, outcome.detail || 'caching failed');
    const how = outcome.already_cached ? 'was already cached' : `cached in ${ms(outcome.prefill_ms)}`;
    setStatus(el.status, `${name} ${how}: ${int(outcome.n_tokens)} tokens, ${bytes(outcome.bytes)} of KV cache ${tierName(outcome.tier)}.`, 'ok');
  } catch (err) {
    const e = err instanceof ApiError ? err : new ApiError(0, String(err));
    let text;
    if (e.status === 422) text = `Cannot cache ${name}: ${e.detail}`;
    else if (e.status === 503) text = `Cannot cache ${name}: ${e.detail}`;
    else text = `Caching ${name} failed${e.status ? ` (${e.status})` : ''}: ${e.detail}`;
    setStatus(el.status, text, 'error');
  } finally {
    state.caching.delete(id);
    await refreshDocs();
    emit('engine-activity');
  }
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

/** Reloads the document list; keeps the selection when it still exists. */
export async function refreshDocs() {
  try {
    const list = await get('/documents/list');
    state.docs = Array.isArray(list) ? list : [];
    el.listError = '';
  } catch (err) {
    el.listError = `Cannot load the documents: ${err.detail || err}`;
  }
  if (state.selectedDocId && !docById(state.selectedDocId)) selectDoc('');
  renderDocs();
  emit('docs');
  schedulePoll();
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
    renderList();
    renderBadge();
  });
}

function renderSelector() {
  const items = [['', 'No document']];
  for (const d of state.docs) {
    const cs = cacheState(d, state.caching.get(d.doc_id), state.engine);
    items.push([d.doc_id, `${d.filename} — ${cs.short}`]);
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

function renderList() {
  if (el.listError) {
    el.list.replaceChildren(h('li', { class: 'empty-item error-text', role: 'alert' }, el.listError));
    return;
  }
  if (!state.docs.length) {
    el.list.replaceChildren(h('li', { class: 'empty-item muted' }, 'No documents yet. Upload one above.'));
    return;
  }
  el.list.replaceChildren(...state.docs.map((d) => {
    const progress = state.caching.get(d.doc_id);
    const cs = cacheState(d, progress, state.engine);
    const selected = d.doc_id === state.selectedDocId;
    const meta = [d.content_type, bytes(d.file_size), d.n_tokens >= 0 ? `${int(d.n_tokens)} tokens` : null]
      .filter(Boolean).join(' · ');
    return h('li', { class: 'doc-item', dataset: { docId: d.doc_id, state: cs.state }, 'aria-current': selected ? 'true' : null },
      h('button', {
        type: 'button', class: 'doc-name', title: `Use ${d.filename} in the chat`,
        dataset: { focusKey: `use-${d.doc_id}` }, 'aria-pressed': selected ? 'true' : 'false',
        onclick: () => { selectDoc(d.doc_id); emit('view', 'chat'); },
      }, d.filename),
      h('span', { class: 'doc-meta muted' }, meta),
      h('span', { class: 'badge doc-cache', dataset: { state: cs.state, tier: cs.tier || '' }, title: cs.detail }, cs.label),
      cs.state === 'caching'
        ? h('progress', { max: 100, value: progress ?? null, 'aria-label': `Caching ${d.filename}` })
        : null,
      cs.state === 'failed' ? h('span', { class: 'doc-error error-text' }, cs.detail) : null,
      h('span', { class: 'doc-actions' },
        h('button', {
          type: 'button', class: 'btn small', disabled: cs.state === 'caching',
          dataset: { focusKey: `cache-${d.doc_id}` }, 'aria-label': `Cache ${d.filename}`,
          onclick: () => cacheDoc(d.doc_id),
        }, cs.state === 'cached' ? 'Re-cache' : 'Cache'),
        confirmButton('Delete', 'Confirm', `Delete ${d.filename}`, () => deleteDoc(d))));
  }));
}

function renderBadge() {
  const d = docById(state.selectedDocId);
  if (!d) {
    el.badge.hidden = true;
    return;
  }
  const cs = cacheState(d, state.caching.get(d.doc_id), state.engine);
  el.badge.hidden = false;
  el.badge.textContent = cs.label;
  el.badge.title = cs.detail;
  el.badge.dataset.state = cs.state;
}

/** Selects a document for the chat ('' = no document) and loads its preview. */
export function selectDoc(id) {
  const changed = id !== state.selectedDocId;
  state.selectedDocId = id && docById(id) ? id : '';
  saved.set('kvchat.document', state.selectedDocId);
  el.select.value = state.selectedDocId;
  renderDocs();
  if (changed) emit('doc-selected', state.selectedDocId);
  loadPreview();
}

async function loadPreview() {
  const id = state.selectedDocId;
  const seq = ++previewSeq;
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
    el.previewMeta.textContent = `— ${d.filename}: ${cut ? 'the beginning' : `first ${Math.min(shown, d.total_lines ?? shown)}`} of ${int(d.total_lines)} line${d.total_lines === 1 ? '' : 's'}, ${int(d.n_chars)} characters`;
  } catch (err) {
    if (seq !== previewSeq) return;
    el.previewText.textContent = '';
    el.previewMeta.textContent = `— cannot load the preview: ${err.detail || err}`;
  }
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
  byId('upload-hint').textContent = `txt, md, pdf, docx, odt, html, epub · up to ${limits.maxMb} MB each`;
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
  el.preview = byId('preview');
  el.previewText = byId('preview-text');
  el.previewMeta = byId('preview-meta');
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
  byId('doc-refresh').addEventListener('click', refreshDocs);
  byId('doc-list-refresh').addEventListener('click', refreshDocs);
  on('engine', () => renderDocs());
  on('model-settled', () => refreshDocs());

  state.selectedDocId = saved.get('kvchat.document') || '';
  return refreshDocs().then(() => loadPreview());
}
