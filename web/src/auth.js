// auth.js — who uses the page, with accounts (auth.mode = accounts).
//
// At start GET /auth/me says the mode. Local mode: nothing here runs and
// the page is as it always was. Accounts mode: a signed-in user gets the
// app (and, for admins, the admin page at #admin); anyone else the sign-in
// page, or the "Create the first admin" form when the address holds the
// one-time set-up link (#setup=kvl_..., printed on kvchat's console).
//
// A login is an HttpOnly cookie: the page never sees it, and learns that
// it has ended (idle too long, logged out elsewhere, user disabled) from a
// 401 on any request (api.js announces it on `bus`). Then the sign-in page
// comes back over the app, which stays as it was underneath: the same user
// signing in again finds the message box as they left it. What they typed
// is also kept in sessionStorage for a reload in between, and for the
// reload that a role change or another user signing in makes.
import { ApiError, bus, get, hasApiKey, post, setApiKey, setSignedOut } from './api.js';
import { initAccountMenu, closeAccountUi, showAccount } from './account.js';
import { initAdmin } from './admin.js';
import { byId, clearInvalidOnInput } from './dom.js';
import { routedPage, showPage } from './page.js';
import { emit, hasAccounts, isAdmin, saved, state } from './state.js';

const DRAFT = 'kvchat.draft';        // sessionStorage: {user, text} of the message box
const FAREWELL = 'kvchat.loggedOut'; // sessionStorage: 'one' | 'everywhere', said once on the sign-in page
/** localStorage keys that belong to the user who set them (their chat, their documents) */
const PER_USER = ['kvchat.session', 'kvchat.document', 'kvchat.moreDocuments'];

const el = {};
let startParts = null;   // main.js's start of the documents, chat, model and logs
let partsStarted = false;
let ended = false;       // the login ended; the sign-in page shows over the app
let setupToken = '';
let lockTimer = null;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function session() {
  try { return window.sessionStorage; } catch { return null; }
}

/* ---- who is asking ---- */

/**
 * GET /auth/me: {mode: 'local'|'accounts', user, via}. A 401 means accounts
 * mode without a login, except local mode's "Invalid or missing API key"
 * (the key banner asks for it, as before accounts). An API key this browser
 * kept that the server refuses is forgotten: it would spoil every request.
 * A server that cannot be reached is asked again until it answers.
 */
export async function whoAmI() {
  for (let attempt = 0; ; attempt++) {
    try {
      const me = await get('/auth/me', { anon: true });
      const mode = me && me.mode === 'accounts' ? 'accounts' : 'local';
      return { mode, user: mode === 'accounts' && me.user ? me.user : null, via: (me && me.via) || '' };
    } catch (err) {
      if (!(err instanceof ApiError)) throw err;
      if (err.status === 401) {
        if (/API key/i.test(err.detail) && !/token|sign in/i.test(err.detail)) return { mode: 'local', user: null, via: '' };
        if (hasApiKey() && attempt < 3) {
          setApiKey('');
          continue;
        }
        return { mode: 'accounts', user: null, via: '' };
      }
      // a server from before accounts has no /auth/me
      if (err.status === 404 || err.status === 405) return { mode: 'local', user: null, via: '' };
      await sleep(Math.min(1000 * 2 ** Math.min(attempt, 3), 8000));
    }
  }
}

/* ---- what was typed ---- */

function keepDraft() {
  const s = session();
  const text = byId('chat-input').value;
  if (!s || !state.me.user) return;
  if (text) s.setItem(DRAFT, JSON.stringify({ user: state.me.user.id, text }));
  else s.removeItem(DRAFT);
}

export function dropDraft() {
  session()?.removeItem(DRAFT);
}

/** Puts back what this user typed before a reload (when the box is empty). */
function restoreDraft() {
  const s = session();
  let d = null;
  try { d = JSON.parse(s?.getItem(DRAFT) || 'null'); } catch { d = null; }
  s?.removeItem(DRAFT);
  const input = byId('chat-input');
  if (d && typeof d.text === 'string' && d.user === state.me.user.id && !input.value) input.value = d.text;
}

/* ---- roles ---- */

/** Shows admins' controls to admins only (model controls, logs, admin page). */
function applyRole() {
  const admin = isAdmin();
  for (const n of document.querySelectorAll('[data-admin-only]')) {
    n.hidden = !admin;
    if (n.tagName === 'OPTION') n.disabled = !admin;
  }
  byId('model-readonly').hidden = admin;
  const tab = document.querySelector('.tab[data-view="model"]');
  if (tab) tab.textContent = admin ? 'Model & logs' : 'Model';
}

/* ---- in and out ---- */

/** The signed-in user's page: the app (started the first time) or #admin. */
function enter() {
  ended = false;
  setSignedOut(false);
  applyRole();
  showAccount();
  if (!partsStarted) {
    // the documents and chat this browser remembers are the last user's
    if (saved.get('kvchat.user') !== state.me.user.id) for (const k of PER_USER) saved.set(k, '');
    saved.set('kvchat.user', state.me.user.id);
    partsStarted = true;
    startParts();
    restoreDraft();
  } else {
    dropDraft();
    emit('signed-in');
  }
  showPage(routedPage());
}

/**
 * After a sign-in (or the first admin made): the app, or a reload when
 * the page was someone else's or the role changed (what it shows and may
 * do would be stale).
 */
function signedIn(user) {
  const prev = state.me.user;
  const me = { id: user.id, name: user.name, role: user.role };
  if (partsStarted && prev && (prev.id !== me.id || prev.role !== me.role)) {
    if (prev.id === me.id) keepDraft(); else dropDraft();
    state.me = { mode: 'accounts', user: me, via: 'login' };
    setSignedOut(true);
    window.location.reload();
    return;
  }
  state.me = { mode: 'accounts', user: me, via: 'login' };
  el.loginPassword.value = '';
  enter();
}

/** A 401 while signed in: the login ended. Back to the sign-in page, keeping the app as it is. */
function loginEnded() {
  if (!hasAccounts() || ended || !state.me.user || !partsStarted) return;
  ended = true;
  setSignedOut(true);
  keepDraft();
  closeAccountUi();
  showSignIn({
    note: 'Your sign-in has ended (it expired, or you were logged out elsewhere). Sign in again to go on: what you typed is kept.',
    name: state.me.via === 'login' ? state.me.user.name : '',
  });
}

/** Ends this login (or all of the user's): back to an empty sign-in page. */
async function logOut(everywhere) {
  if (state.me.via === 'login' || state.me.via === 'header') {
    await post('/auth/logout', everywhere ? { everywhere: true } : {});
  }
  // a key or token kept by this browser is how it signed in: forget it
  if (state.me.via === 'api_key' || state.me.via === 'token') setApiKey('');
  dropDraft();
  session()?.setItem(FAREWELL, everywhere ? 'everywhere' : 'one');
  setSignedOut(true);
  window.location.replace(window.location.pathname);
}

/* ---- the sign-in page ---- */

function setError(p, text, field) {
  p.textContent = text || '';
  for (const f of p.closest('form').querySelectorAll('input')) {
    if (f === field && text) {
      f.setAttribute('aria-invalid', 'true');
      f.setAttribute('aria-errormessage', p.id);
    } else {
      f.removeAttribute('aria-invalid');
      f.removeAttribute('aria-errormessage');
    }
  }
}

/** Shows the sign-in page (or the first-admin form, with a set-up token). */
function showSignIn({ note = '', name = '' } = {}) {
  showPage('signin');
  const setup = !!setupToken;
  el.loginCard.hidden = setup;
  el.setupCard.hidden = !setup;
  el.loginNote.textContent = note;
  el.loginNote.hidden = !note;
  if (setup) {
    el.setupUser.focus();
    return;
  }
  if (name) el.loginUser.value = name;
  (el.loginUser.value ? el.loginPassword : el.loginUser).focus();
}

/** "Sign in (12 s)" until a 429's wait is over. */
function lockFor(seconds, locked) {
  clearInterval(lockTimer);
  let left = Math.max(1, Math.ceil(seconds || 1));
  const mins = left >= 120 ? ` (about ${Math.round(left / 60)} min)` : '';
  setError(el.loginError, locked
    ? `Too many failed sign-ins: the account is locked for now. Try again in ${left} s${mins}.`
    : `Too many failed sign-ins: try again in ${left} s${mins}.`);
  el.loginBtn.disabled = true;
  const tick = () => {
    if (left <= 0) {
      clearInterval(lockTimer);
      lockTimer = null;
      el.loginBtn.disabled = false;
      el.loginBtn.textContent = 'Sign in';
      return;
    }
    el.loginBtn.textContent = `Sign in (${left} s)`;
    left--;
  };
  tick();
  lockTimer = setInterval(tick, 1000);
}

async function onLogin(ev) {
  ev.preventDefault();
  if (el.loginBtn.disabled) return;
  const name = el.loginUser.value.trim();
  const pw = el.loginPassword.value;
  if (!name) { setError(el.loginError, 'Enter your user name.', el.loginUser); el.loginUser.focus(); return; }
  if (!pw) { setError(el.loginError, 'Enter your password.', el.loginPassword); el.loginPassword.focus(); return; }
  setError(el.loginError, '');
  el.loginBtn.disabled = true;
  el.loginBtn.textContent = 'Signing in…';
  let waited = false;
  try {
    const r = await post('/auth/login', { username: name, password: pw }, { anon: true, noKey: true });
    signedIn(r.user);
  } catch (err) {
    const e = err instanceof ApiError ? err : new ApiError(0, String(err));
    if (e.status === 401) {
      setError(el.loginError, 'Wrong user name or password.', el.loginPassword);
      el.loginPassword.select();
      el.loginPassword.focus();
    } else if (e.status === 429) {
      waited = true;
      lockFor(e.retryAfter, /locked/i.test(e.detail));
    } else {
      setError(el.loginError, `Cannot sign in${e.status ? ` (${e.status})` : ''}: ${e.detail}`);
    }
  } finally {
    if (!waited) {
      el.loginBtn.disabled = false;
      el.loginBtn.textContent = 'Sign in';
    }
  }
}

/** The #setup=kvl_... of the address ('' when none). */
function setupFromHash() {
  const m = /^#setup=(kvl_[A-Za-z0-9_-]+)$/.exec(window.location.hash);
  return m ? m[1] : '';
}

/** Takes the set-up link out of the address (and the history). */
function dropSetupHash() {
  if (window.location.hash.startsWith('#setup=')) {
    window.history.replaceState(null, '', window.location.pathname + window.location.search);
  }
}

async function onSetup(ev) {
  ev.preventDefault();
  const name = el.setupUser.value.trim();
  const pw = el.setupPassword.value;
  if (!/^[A-Za-z0-9._@-]{1,64}$/.test(name)) {
    setError(el.setupError, 'A user name is 1 to 64 letters, digits and . _ - @', el.setupUser);
    el.setupUser.focus();
    return;
  }
  if (pw.length < 8) {
    setError(el.setupError, 'The password is too short: at least 8 characters.', el.setupPassword);
    el.setupPassword.focus();
    return;
  }
  if (pw !== el.setupRepeat.value) {
    setError(el.setupError, 'The two passwords differ.', el.setupRepeat);
    el.setupRepeat.focus();
    return;
  }
  setError(el.setupError, '');
  el.setupBtn.disabled = true;
  try {
    const r = await post('/auth/setup', { token: setupToken, username: name, password: pw }, { anon: true, noKey: true });
    setupToken = '';
    dropSetupHash();
    el.setupPassword.value = '';
    el.setupRepeat.value = '';
    signedIn(r.user);
  } catch (err) {
    const e = err instanceof ApiError ? err : new ApiError(0, String(err));
    if (e.status === 403) {
      setupToken = '';
      dropSetupHash();
      setError(el.setupError, 'This set-up link is not valid any more: it works once. Sign in with the account made with it.');
    } else {
      setError(el.setupError, e.detail, e.status === 409 ? el.setupUser : /password/i.test(e.detail) ? el.setupPassword : null);
    }
  } finally {
    el.setupBtn.disabled = false;
  }
}

/* ---- start ---- */

/**
 * Accounts mode (state.me set by whoAmI): wires the sign-in page, the
 * account menu and the admin page; shows the app for a signed-in user
 * (calling `start` to start its parts) or the sign-in page.
 */
export function initAccounts(start) {
  startParts = start;
  el.loginCard = byId('login-card');
  el.loginNote = byId('login-note');
  el.loginUser = byId('login-user');
  el.loginPassword = byId('login-password');
  el.loginError = byId('login-error');
  el.loginBtn = byId('login-btn');
  el.setupCard = byId('setup-card');
  el.setupUser = byId('setup-user');
  el.setupPassword = byId('setup-password');
  el.setupRepeat = byId('setup-repeat');
  el.setupError = byId('setup-error');
  el.setupBtn = byId('setup-btn');

  byId('login-form').addEventListener('submit', onLogin);
  byId('setup-form').addEventListener('submit', onSetup);
  clearInvalidOnInput(byId('login-form'));
  clearInvalidOnInput(byId('setup-form'));
  // the wait of a 429 is the account's: another name may try at once
  el.loginUser.addEventListener('input', () => {
    if (!lockTimer) return;
    clearInterval(lockTimer);
    lockTimer = null;
    el.loginBtn.disabled = false;
    el.loginBtn.textContent = 'Sign in';
    setError(el.loginError, '');
  });
  byId('setup-to-login').addEventListener('click', () => {
    setupToken = '';
    dropSetupHash();
    showSignIn();
  });
  initAccountMenu({ logOut });
  initAdmin();
  bus.addEventListener('auth', loginEnded);
  window.addEventListener('hashchange', () => {
    if (state.me.user && !ended) {
      showPage(routedPage());
    } else if (!state.me.user && setupFromHash()) {
      // the set-up link pasted into the sign-in page's tab
      setupToken = setupFromHash();
      showSignIn();
    }
  });

  setupToken = setupFromHash();
  if (state.me.user) {
    setupToken = '';
    dropSetupHash();
    enter();
    return;
  }
  const bye = session()?.getItem(FAREWELL);
  session()?.removeItem(FAREWELL);
  showSignIn({
    note: bye === 'everywhere' ? 'You have logged out everywhere: every sign-in of yours has ended.'
      : bye ? 'You have logged out.' : '',
  });
}
