// account.js — the signed-in user's menu in the header (name and role):
// the admin page (admins), API tokens, change password, log out, log out
// everywhere.
//
// The menu follows the WAI-ARIA menu button pattern: Enter, Space or the
// arrow keys open it on its first or last item, the arrows, Home and End
// move, Escape closes it back to the button, Tab or a click elsewhere
// closes it. API tokens and the password are modal <dialog>s (Escape
// closes them; the focus goes back to the menu button). A new token's
// secret is shown once, with a Copy button, and wiped from the page when
// the dialog closes.
import { ApiError, del, get, post } from './api.js';
import { byId, clearInvalidOnInput, confirmButton, copyText, h, openDialog, setStatus, wireDialog } from './dom.js';
import { ago, fullTime } from './format.js';
import { isAdmin, state } from './state.js';

const el = {};
let logOutFn = null;

/* ---- the menu ---- */

function items() {
  return [...el.list.querySelectorAll('[role="menuitem"]')].filter((i) => !i.hidden);
}

function openMenu(which = 'first') {
  setStatus(el.status, '');
  el.pop.hidden = false;
  el.btn.setAttribute('aria-expanded', 'true');
  const all = items();
  const target = which === 'last' ? all[all.length - 1] : all[0];
  if (target) target.focus();
}

function closeMenu(refocus) {
  if (el.pop.hidden) return;
  el.pop.hidden = true;
  el.btn.setAttribute('aria-expanded', 'false');
  if (refocus) el.btn.focus();
}

function onMenuKey(ev) {
  const all = items();
  const i = all.indexOf(document.activeElement);
  const move = (j) => { ev.preventDefault(); all[(j + all.length) % all.length].focus(); };
  switch (ev.key) {
    case 'ArrowDown': move(i + 1); break;
    case 'ArrowUp': move(i - 1); break;
    case 'Home': move(0); break;
    case 'End': move(all.length - 1); break;
    case 'Escape': ev.preventDefault(); closeMenu(true); break;
    case 'Tab': closeMenu(false); break;
    default: break;
  }
}

/** Runs a menu item: the menu closes first (a dialog's focus returns to the button). */
function item(id, fn) {
  byId(id).addEventListener('click', () => {
    closeMenu(false);
    el.btn.focus();
    fn();
  });
}

/** Fills the menu for state.me (called at every sign-in). */
export function showAccount() {
  const { user, via } = state.me;
  el.root.hidden = false;
  el.name.textContent = user.name;
  el.role.textContent = user.role;
  el.avatar.textContent = (user.name || '?').slice(0, 1).toUpperCase();
  el.who.textContent = user.name;
  el.via.textContent = ` · ${user.role}${via === 'token' ? ' · with an API token' : via === 'api_key' ? ' · with the server\'s API key' : via === 'header' ? ' · through the proxy' : ''}`;
  el.btn.setAttribute('aria-label', `Account: ${user.name}, ${user.role}`);
  // what each way of signing in can do: a password belongs to a login, a
  // token list to a user, logging out to a login (or a key kept here)
  byId('menu-tokens').hidden = via === 'api_key';
  byId('menu-password').hidden = via !== 'login';
  byId('menu-logout').hidden = via === 'header';
  byId('menu-logout').textContent = via === 'api_key' || via === 'token' ? 'Forget the key kept by this browser' : 'Log out';
  byId('menu-logout-all').hidden = via !== 'login';
  byId('menu-admin').hidden = !isAdmin();
}

/** Closes the menu and the dialogs (the login ended). */
export function closeAccountUi() {
  closeMenu(false);
  for (const d of [el.tokens, el.password]) if (d.open) d.close();
  for (const d of document.querySelectorAll('dialog[open]')) d.close();
}

async function doLogOut(everywhere) {
  try {
    await logOutFn(everywhere);
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) return; // ended already: the sign-in page shows
    openMenu();
    setStatus(el.status, `Cannot log out: ${err.detail || err}`, 'error');
  }
}

/* ---- API tokens ---- */

function hideSecret() {
  el.secretValue.value = '';
  el.secret.hidden = true;
}

function expiryText(t) {
  if (!t.expires_at) return 'never expires';
  const d = new Date(t.expires_at).toLocaleDateString();
  return t.expired ? `expired ${d}` : `expires ${d}`;
}

function renderTokens(list) {
  if (!list.length) {
    el.tokenList.replaceChildren(h('li', { class: 'empty-item muted' }, 'No tokens yet.'));
    return;
  }
  el.tokenList.replaceChildren(...list.map((t) => h('li', { class: 'token-item', dataset: { tokenId: t.id, expired: t.expired ? 'true' : 'false' } },
    h('div', { class: 'token-main' },
      h('span', { class: 'token-name' }, t.name),
      h('span', { class: 'badge', dataset: { scope: t.scope } }, t.scope),
      t.expired ? h('span', { class: 'badge', dataset: { state: 'failed' } }, 'expired') : null),
    h('span', { class: 'token-meta muted' },
      h('span', { title: fullTime(t.created_at) }, `made ${ago(t.created_at)}`), ' · ',
      h('span', { title: t.expires_at ? fullTime(t.expires_at) : null }, expiryText(t)), ' · ',
      h('span', { title: t.last_used_at ? fullTime(t.last_used_at) : null }, t.last_used_at ? `last used ${ago(t.last_used_at)}` : 'never used')),
    confirmButton('Revoke', 'Confirm', `Revoke the token ${t.name}`, () => revokeToken(t)))));
}

async function loadTokens() {
  try {
    const r = await get('/auth/tokens');
    renderTokens(Array.isArray(r.tokens) ? r.tokens : []);
  } catch (err) {
    el.tokenList.replaceChildren(h('li', { class: 'empty-item error-text', role: 'alert' }, `Cannot list the tokens: ${err.detail || err}`));
  }
}

async function revokeToken(t) {
  try {
    await del(`/auth/tokens/${encodeURIComponent(t.id)}`);
    setStatus(el.tokenStatus, `Token “${t.name}” revoked: it no longer works.`, 'ok');
  } catch (err) {
    setStatus(el.tokenStatus, `Cannot revoke “${t.name}”: ${err.detail || err}`, 'error');
  }
  await loadTokens();
  el.tokenName.focus();
}

async function createToken(ev) {
  ev.preventDefault();
  const name = el.tokenName.value.trim();
  if (!name) {
    el.tokenName.setAttribute('aria-invalid', 'true');
    setStatus(el.tokenStatus, 'Name the token (what it is for).', 'error');
    el.tokenName.focus();
    return;
  }
  el.tokenName.removeAttribute('aria-invalid');
  const exp = el.tokenExpiry.value;
  el.tokenCreate.disabled = true;
  try {
    const r = await post('/auth/tokens', { name, scope: el.tokenScope.value, expires_in: exp ? Number(exp) : null });
    el.secretValue.value = r.token;
    el.secret.hidden = false;
    el.tokenName.value = '';
    setStatus(el.tokenStatus, `Token “${r.name}” made (${r.scope}${r.expires_at ? `, expires ${new Date(r.expires_at).toLocaleDateString()}` : ', never expires'}). Copy it now: it is shown only once.`, 'ok');
    el.secretValue.focus();
    el.secretValue.select();
    loadTokens();
  } catch (err) {
    setStatus(el.tokenStatus, `Cannot make the token: ${err.detail || err}`, 'error');
  } finally {
    el.tokenCreate.disabled = false;
  }
}

function openTokens() {
  hideSecret();
  setStatus(el.tokenStatus, '');
  // a token can do no more than its maker
  for (const o of el.tokenScope.options) if (o.value === 'admin') { o.hidden = !isAdmin(); o.disabled = !isAdmin(); }
  if (el.tokenScope.value === 'admin' && !isAdmin()) el.tokenScope.value = 'chat';
  el.tokenList.replaceChildren(h('li', { class: 'empty-item muted' }, 'Loading…'));
  openDialog(el.tokens, el.tokenName);
  loadTokens();
}

/* ---- password ---- */

function fieldError(field, on) {
  if (on) field.setAttribute('aria-invalid', 'true'); else field.removeAttribute('aria-invalid');
}

async function changePassword(ev) {
  ev.preventDefault();
  const cur = el.pwCurrent.value;
  const nw = el.pwNew.value;
  for (const f of [el.pwCurrent, el.pwNew, el.pwRepeat]) fieldError(f, false);
  const fail = (field, text) => { fieldError(field, true); setStatus(el.pwStatus, text, 'error'); field.focus(); };
  if (!cur) return fail(el.pwCurrent, 'Enter your current password.');
  if (nw.length < 8) return fail(el.pwNew, 'The new password is too short: at least 8 characters.');
  if (nw !== el.pwRepeat.value) return fail(el.pwRepeat, 'The two new passwords differ.');
  el.pwSave.disabled = true;
  setStatus(el.pwStatus, 'Changing the password…', 'busy');
  try {
    await post('/auth/password', { current_password: cur, new_password: nw });
    for (const f of [el.pwCurrent, el.pwNew, el.pwRepeat]) f.value = '';
    setStatus(el.pwStatus, 'Password changed. Your other sign-ins have ended.', 'ok');
  } catch (err) {
    if (err.status === 403) fail(el.pwCurrent, 'The current password is wrong.');
    else if (err.status === 400) fail(el.pwNew, err.detail);
    else setStatus(el.pwStatus, `Cannot change the password: ${err.detail || err}`, 'error');
  } finally {
    el.pwSave.disabled = false;
  }
  return undefined;
}

function openPassword() {
  for (const f of [el.pwCurrent, el.pwNew, el.pwRepeat]) { f.value = ''; fieldError(f, false); }
  setStatus(el.pwStatus, '');
  openDialog(el.password, el.pwCurrent);
}

/* ---- start ---- */

/** Wires the menu and its dialogs; `logOut(everywhere)` ends the login. */
export function initAccountMenu({ logOut }) {
  logOutFn = logOut;
  el.root = byId('user-menu');
  el.btn = byId('user-menu-btn');
  el.pop = byId('user-menu-pop');
  el.list = byId('user-menu-list');
  el.name = byId('user-menu-name');
  el.role = byId('user-menu-role');
  el.avatar = byId('user-avatar');
  el.who = byId('user-menu-who');
  el.via = byId('user-menu-via');
  el.status = h('p', { id: 'user-menu-status', class: 'status', role: 'status', 'aria-live': 'polite' });
  el.pop.append(el.status);

  el.btn.addEventListener('click', () => (el.pop.hidden ? openMenu() : closeMenu(true)));
  el.btn.addEventListener('keydown', (ev) => {
    if (ev.key === 'ArrowDown') { ev.preventDefault(); openMenu('first'); }
    if (ev.key === 'ArrowUp') { ev.preventDefault(); openMenu('last'); }
  });
  el.list.addEventListener('keydown', onMenuKey);
  document.addEventListener('click', (ev) => { if (!el.root.contains(ev.target)) closeMenu(false); });
  el.root.addEventListener('focusout', (ev) => {
    if (ev.relatedTarget && !el.root.contains(ev.relatedTarget)) closeMenu(false);
  });

  item('menu-admin', () => { window.location.hash = 'admin'; });
  item('menu-tokens', openTokens);
  item('menu-password', openPassword);
  item('menu-logout', () => doLogOut(false));
  item('menu-logout-all', () => doLogOut(true));

  el.tokens = byId('tokens-dialog');
  el.tokenForm = byId('token-form');
  el.tokenName = byId('token-name');
  el.tokenScope = byId('token-scope');
  el.tokenExpiry = byId('token-expiry');
  el.tokenCreate = byId('token-create');
  el.tokenStatus = byId('tokens-status');
  el.tokenList = byId('tokens-list');
  el.secret = byId('token-secret');
  el.secretValue = byId('token-secret-value');
  wireDialog(el.tokens, () => el.btn);
  el.tokens.addEventListener('close', hideSecret);
  el.tokenForm.addEventListener('submit', createToken);
  byId('token-copy').addEventListener('click', async (ev) => {
    const b = ev.currentTarget;
    const ok = await copyText(el.secretValue.value);
    b.textContent = ok ? 'Copied' : 'Copy failed: select it and copy';
    b.focus();
    setTimeout(() => { b.textContent = 'Copy'; }, 2000);
  });
  byId('token-secret-done').addEventListener('click', () => {
    hideSecret();
    setStatus(el.tokenStatus, '');
    el.tokenName.focus();
  });

  el.password = byId('password-dialog');
  el.pwCurrent = byId('password-current');
  el.pwNew = byId('password-new');
  el.pwRepeat = byId('password-repeat');
  el.pwSave = byId('password-save');
  el.pwStatus = byId('password-status');
  wireDialog(el.password, () => el.btn);
  byId('password-form').addEventListener('submit', changePassword);
  clearInvalidOnInput(byId('password-form'));
  clearInvalidOnInput(el.tokenForm);
}
