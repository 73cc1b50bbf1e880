// logs.js — the deployment-logs viewer: the engine's recent log lines with a
// regular-expression filter (applied by the server, which refuses a filter
// over its limits with a 400 saying why), a line count, Refresh, and
// auto-refresh (switched on by the user, and on by itself while the model
// server starts).
import { ApiError, get } from './api.js';
import { byId, setStatus } from './dom.js';
import { on } from './state.js';

const el = {};
let timer = null;
let inflight = false;
let rerun = false;        // asked for again while a request was out
let opBusy = false;       // this page is starting the model server
let engineStarting = false; // the status says it is starting
let filterTimer = null;
let seq = 0;

function isStarting() {
  return opBusy || engineStarting;
}

function autoOn() {
  return el.auto.checked || isStarting();
}

function schedule() {
  clearTimeout(timer);
  if (autoOn()) timer = setTimeout(refreshLogs, isStarting() ? 1000 : 2500);
}

// The server's "Invalid pattern: …", "Pattern refused: …" or "Pattern too
// costly: …", named after the field the user typed in.
function filterError(detail) {
  const m = /^(?:Invalid pattern|Pattern (refused|too costly)): ([^]*)$/.exec(detail);
  if (!m) return `Invalid filter: ${detail}`;
  return `${m[1] ? `Filter ${m[1]}` : 'Invalid filter'}: ${m[2]}`;
}

export async function refreshLogs() {
  clearTimeout(timer);
  if (inflight) { rerun = true; return; }
  inflight = true;
  const my = ++seq;
  const q = new URLSearchParams({ lines: el.lines.value });
  const pattern = el.filter.value.trim();
  if (pattern) q.set('pattern', pattern);
  try {
    const r = await get(`/logs/recent?${q}`);
    if (my !== seq) return;
    el.filter.removeAttribute('aria-invalid');
    const stick = el.view.scrollHeight - el.view.scrollTop - el.view.clientHeight < 40;
    el.view.textContent = (r.logs || []).join('\n');
    if (stick || !el.view.dataset.loaded) el.view.scrollTop = el.view.scrollHeight;
    el.view.dataset.loaded = '1';
    const n = r.lines_count ?? (r.logs || []).length;
    const when = new Date().toLocaleTimeString();
    // complete false: the server's search stopped at its time or size limit.
    const cut = r.complete === false ? ' · search stopped early, older lines not searched' : '';
    setStatus(el.status, `${r.session_id || 'engine log'} · ${n} line${n === 1 ? '' : 's'}${pattern ? ` matching /${pattern}/` : ''}${cut} · updated ${when}${autoOn() ? ' · auto-refreshing' : ''}`, 'info');
  } catch (err) {
    if (my !== seq) return;
    const e = err instanceof ApiError ? err : new ApiError(0, String(err));
    if (e.status === 400 && pattern) {
      el.filter.setAttribute('aria-invalid', 'true');
      setStatus(el.status, filterError(e.detail), 'error');
    } else if (e.status === 404) {
      el.view.textContent = '';
      setStatus(el.status, 'No engine log yet: the model server has not been started.', 'info');
    } else {
      setStatus(el.status, `Cannot load the logs: ${e.detail}`, 'error');
    }
  } finally {
    inflight = false;
    if (rerun) {
      rerun = false;
      refreshLogs();
    } else {
      schedule();
    }
  }
}

export function initLogs() {
  el.form = byId('log-form');
  el.filter = byId('log-filter');
  el.lines = byId('log-lines');
  el.auto = byId('log-auto');
  el.status = byId('log-status');
  el.view = byId('log-view');

  el.form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    refreshLogs();
  });
  el.filter.addEventListener('input', () => {
    clearTimeout(filterTimer);
    filterTimer = setTimeout(refreshLogs, 500);
  });
  el.lines.addEventListener('change', refreshLogs);
  el.auto.addEventListener('change', refreshLogs);

  on('signed-in', refreshLogs);
  on('model-busy', ({ what }) => {
    if (what !== 'stop') {
      opBusy = true;
      refreshLogs();
    }
  });
  on('model-settled', () => {
    opBusy = false;
    refreshLogs();
  });
  on('model-status', (st) => {
    const was = isStarting();
    engineStarting = st.status === 'starting';
    if (!was && isStarting()) refreshLogs();
  });

  refreshLogs();
}
