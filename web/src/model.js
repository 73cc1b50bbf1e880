// model.js — the model server: Start with reset, Start without reset, Stop
// (each showing progress and its outcome), the model selector (local GGUF
// files and configured remote models, switched with /model/switch), the
// status panel, the header's status pill and the random-weights banner.
import { get, post } from './api.js';
import { byId, h, setStatus } from './dom.js';
import { bytes, int, ms } from './format.js';
import { emit, on, state } from './state.js';

const el = {};
let op = null;            // the running start/stop/switch: {what, t0, timer}
let pollTimer = null;
let models = { models: [], current: '' };
/** the model whose random-weights notice the user hid (until reload) */
let bannerHidden = '';
/** model name → random_weights, as last seen while it ran */
const randomByModel = new Map();

const STATE_TEXT = {
  running: 'running',
  starting: 'starting…',
  stopped: 'stopped',
  crashed: 'crashed',
  stopping: 'stopping…',
};

/* ---- status ---- */

async function pollStatus() {
  clearTimeout(pollTimer);
  try {
    const st = await get('/model/status');
    applyStatus(st);
  } catch (err) {
    setPill('unknown', `Model: unknown (${err.detail || err})`);
  }
  const fast = op || (state.engine.status && state.engine.status.status === 'starting');
  pollTimer = setTimeout(pollStatus, fast ? 1000 : document.hidden ? 15000 : 4000);
}

function setPill(kind, text) {
  el.pill.dataset.state = kind;
  // unchanged text is not rewritten: the pill is a live region
  if (el.pillText.textContent !== text) el.pillText.textContent = text;
}

function applyStatus(st) {
  const prev = state.engine;
  const running = st.status === 'running';
  const startedAt = running && st.create_time ? Math.round(st.create_time * 1000) : 0;
  state.engine = { running, startedAt, status: st };
  if (prev.running !== running || prev.startedAt !== startedAt) emit('engine', state.engine);
  emit('model-status', st);

  if (typeof st.random_weights === 'boolean' && st.model_name) randomByModel.set(st.model_name, st.random_weights);
  const remote = st.provider && st.provider !== 'local';
  const engines = Array.isArray(st.engines) ? st.engines : null;
  const answering = engines ? engines.filter((e) => e.healthy).length : 0;
  if (remote) {
    setPill('running', `Model: ${st.serving_name} (remote, ${st.provider})`);
  } else {
    setPill(engines && answering < engines.length && answering ? 'degraded' : st.status,
      `Model: ${STATE_TEXT[st.status] || st.status}${st.model_name ? ` · ${st.model_name}` : ''}${engines ? ` · ${answering} of ${engines.length} engines` : ''}${randomByModel.get(st.model_name) ? ' · random weights' : ''}`);
  }

  const random = !remote && (st.random_weights === true || (st.random_weights === undefined && randomByModel.get(st.model_name) === true));
  el.banner.hidden = !random || bannerHidden === st.model_name;

  const rows = [
    ['State', st.status],
    ['Message', st.message],
    ['Serving', `${st.serving_name || '–'}${st.provider ? ` (${st.provider})` : ''}`],
    ['Local model', st.model_name || '–'],
  ];
  if (st.random_weights !== undefined) rows.push(['Weights', st.random_weights ? 'random (demo model)' : 'trained']);
  if (st.pid) rows.push(['Process', `pid ${st.pid}${st.port ? `, port ${st.port}` : ''}`]);
  if (running) {
    rows.push(['Memory', bytes(st.memory_usage)]);
    rows.push(['CPU', Number.isFinite(st.cpu_percent) ? `${st.cpu_percent.toFixed(0)}%` : '–']);
  }
  if (st.n_ctx) rows.push(['Context', `${int(st.n_ctx)} tokens per conversation`]);
  if (st.cache) {
    rows.push(['KV cache', `${int(st.cache.entries)} entr${st.cache.entries === 1 ? 'y' : 'ies'} · ${bytes(st.cache.bytes_ram)} in RAM · ${bytes(st.cache.bytes_disk)} on disk`]);
  }
  if (st.restarts) rows.push(['Restarts', String(st.restarts)]);
  if (engines) {
    rows.push(['Engines', `${answering} of ${engines.length} answering; each document's questions go to the engine that cached it`]);
    engines.forEach((e, i) => rows.push([`Engine ${i + 1}`,
      `${e.url.replace(/\/v1$/, '')} · ${e.healthy ? `answering · ${int(e.inflight)} in flight` : `down${e.error ? `: ${e.error}` : ''}`}`]));
  }
  el.dl.replaceChildren(...rows.flatMap(([k, v]) => [h('dt', {}, k), h('dd', { dataset: { key: k.toLowerCase().replace(/\s+/g, '-') } }, v ?? '–')]));
  updateButtons();
}

function updateButtons() {
  const busy = !!op;
  el.startReset.disabled = busy;
  el.startResume.disabled = busy;
  el.stopBtn.disabled = busy || !(state.engine.status && ['running', 'starting', 'crashed'].includes(state.engine.status.status));
  el.switchBtn.disabled = busy || !el.select.value;
}

/* ---- operations ---- */

/** Runs one model operation with a ticking progress line and its outcome. */
async function run(what, label, fn) {
  if (op) return;
  op = { what, t0: performance.now() };
  updateButtons();
  emit('model-busy', { what });
  const tick = () => setStatus(el.progress, `${label}… ${((performance.now() - op.t0) / 1000).toFixed(1)} s`, 'busy');
  tick();
  op.timer = setInterval(tick, 200);
  pollStatus();
  let ok = false;
  try {
    const r = await fn();
    ok = true;
    const took = ms(performance.now() - op.t0);
    setStatus(el.progress, `${r && r.message ? r.message : 'Done'} — took ${took}.`, 'ok');
  } catch (err) {
    setStatus(el.progress, `${label} failed${err.status ? ` (${err.status})` : ''}: ${err.detail || err}`, 'error');
  } finally {
    clearInterval(op.timer);
    op = null;
    updateButtons();
    emit('model-settled', { what, ok });
    await pollStatus();
    refreshModels();
  }
}

/** The local model picked in the selector, to start (undefined: the current one). */
function pickedLocal() {
  const m = models.models.find((x) => x.name === el.select.value);
  return m && m.kind === 'local' ? m.name : undefined;
}

export function startModel(reset) {
  const name = pickedLocal();
  const body = name ? { model_name: name } : {};
  return run(reset ? 'start-reset' : 'start-resume',
    reset ? 'Starting with an empty KV cache' : 'Starting, keeping the KV cache',
    () => post(reset ? '/model/up/reset' : '/model/up/without_reset', body));
}

function stopModel() {
  return run('stop', 'Stopping the model server', () => post('/model/down', {}));
}

function switchModel() {
  const name = el.select.value;
  if (!name) return undefined;
  return run('switch', `Switching to ${name}`, () => post('/model/switch', { serving_name: name }));
}

/* ---- model list ---- */

export async function refreshModels() {
  try {
    models = await get('/model/list');
  } catch (err) {
    setStatus(el.progress, `Cannot list the models: ${err.detail || err}`, 'error');
    return;
  }
  const local = models.models.filter((m) => m.kind === 'local');
  const remote = models.models.filter((m) => m.kind !== 'local');
  const opt = (m) => h('option', { value: m.name },
    `${m.name}${m.kind === 'local' && m.size ? ` (${bytes(m.size)})` : ''}${m.kind !== 'local' && m.provider ? ` (${m.provider}${m.model ? `: ${m.model}` : ''})` : ''}${m.active ? ' — serving' : ''}`);
  const groups = [];
  if (local.length) groups.push(h('optgroup', { label: 'Local models' }, local.map(opt)));
  if (remote.length) groups.push(h('optgroup', { label: 'Remote models' }, remote.map(opt)));
  if (!groups.length) groups.push(h('option', { value: '' }, 'No models found'));
  const keep = el.select.dataset.touched ? el.select.value : '';
  el.select.replaceChildren(...groups);
  const has = (name) => models.models.some((m) => m.name === name);
  el.select.value = keep && has(keep) ? keep : has(models.current) ? models.current : el.select.options[0]?.value || '';
  updateButtons();
}

export function initModel() {
  el.pill = byId('model-pill');
  el.pillText = byId('model-pill-text');
  el.banner = byId('banner-random');
  el.dl = byId('model-status');
  el.progress = byId('model-progress');
  el.select = byId('model-select');
  el.switchBtn = byId('model-switch');
  el.startReset = byId('start-reset');
  el.startResume = byId('start-resume');
  el.stopBtn = byId('stop-model');

  byId('banner-random-hide').addEventListener('click', () => {
    bannerHidden = state.engine.status ? state.engine.status.model_name : '';
    el.banner.hidden = true;
    byId('chat-input').focus({ preventScroll: true });
  });
  el.startReset.addEventListener('click', () => startModel(true));
  el.startResume.addEventListener('click', () => startModel(false));
  el.stopBtn.addEventListener('click', stopModel);
  el.switchBtn.addEventListener('click', switchModel);
  el.select.addEventListener('change', () => { el.select.dataset.touched = '1'; updateButtons(); });
  byId('model-list-refresh').addEventListener('click', refreshModels);
  on('start-model', () => { if (!op) startModel(false); });
  on('engine-activity', () => { if (!op) pollStatus(); });
  on('signed-in', () => { pollStatus(); refreshModels(); });
  document.addEventListener('visibilitychange', () => { if (!document.hidden) pollStatus(); });

  pollStatus();
  refreshModels();
}
