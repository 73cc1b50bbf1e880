// main.js — starts the page: asks who uses it (GET /auth/me), then the
// documents, chat, model and logs (the logs for admins only), the phone
// view switcher, and the connection and API-key banners. With accounts,
// auth.js shows the sign-in page first and starts the parts once someone
// has signed in; in local mode they start at once, as always.
import { bus, setApiKey } from './api.js';
import { initAccounts, whoAmI } from './auth.js';
import { initChat } from './chat.js';
import { byId } from './dom.js';
import { initDocuments } from './documents.js';
import { initLogs } from './logs.js';
import { initModel } from './model.js';
import { hasAccounts, isAdmin, on, state } from './state.js';

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
    // with accounts a 401 means the login ended: auth.js signs in again
    if (hasAccounts()) return;
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

/** The documents, chat, model and (for admins) logs. */
function startParts() {
  initModel();
  const docsReady = initDocuments();
  initChat(docsReady);
  if (isAdmin()) initLogs();
}

async function start() {
  initTabs();
  initBanners();
  state.me = await whoAmI();
  if (hasAccounts()) initAccounts(startParts);
  else startParts();
}

if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
else start();
