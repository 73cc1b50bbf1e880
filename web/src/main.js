// main.js — starts the page: documents, chat, model and logs, the phone
// view switcher, and the connection and API-key banners.
import { bus, setApiKey } from './api.js';
import { initChat } from './chat.js';
import { byId } from './dom.js';
import { initDocuments } from './documents.js';
import { initLogs } from './logs.js';
import { initModel } from './model.js';
import { on } from './state.js';

/** On narrow screens one column shows at a time; the tabs pick it. */
function setView(view) {
  document.body.dataset.view = view;
  for (const t of document.querySelectorAll('.tabs .tab')) {
    t.setAttribute('aria-pressed', t.dataset.view === view ? 'true' : 'false');
  }
}

function initTabs() {
  for (const t of document.querySelectorAll('.tabs .tab')) {
    t.addEventListener('click', () => setView(t.dataset.view));
  }
  on('view', setView);
}

function initBanners() {
  const conn = byId('banner-conn');
  bus.addEventListener('offline', () => { conn.hidden = false; });
  bus.addEventListener('online', () => { conn.hidden = true; });

  const keyForm = byId('banner-key');
  const keyInput = byId('api-key-input');
  bus.addEventListener('auth', () => {
    if (keyForm.hidden) {
      keyForm.hidden = false;
      keyInput.focus();
    }
  });
  keyForm.addEventListener('submit', (ev) => {
    ev.preventDefault();
    setApiKey(keyInput.value.trim());
    window.location.reload();
  });
}

function start() {
  initTabs();
  initBanners();
  initModel();
  const docsReady = initDocuments();
  initChat(docsReady);
  initLogs();
}

if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
else start();
