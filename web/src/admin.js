// admin.js — the admin page (#admin, admins with accounts): the users
// (role, disabled, documents and bytes; add, change role, disable or
// enable, reset password, delete with confirmation) and the audit log
// (newest first, filtered by who and action, a page at a time).
//
// Every change goes to the server first and the table is reloaded from its
// answer, so what shows is what the server keeps; a refusal (409: it would
// leave no enabled admin) is said in the status line and the row is put
// back as it was. Admins cannot disable or delete themselves here.
import { ApiError, del, get, patch, post } from './api.js';
import { byId, clearInvalidOnInput, h, openDialog, setStatus, wireDialog } from './dom.js';
import { ago, bytes, fullTime, int } from './format.js';
import { emit, on, state } from './state.js';

const AUDIT_PAGE = 50;
/** the actions the server records (the action filter suggests them) */
const ACTIONS = ['login.ok', 'login.fail', 'login.backoff', 'login.locked', 'logout', 'logout.everywhere',
  'password.change', 'password.fail', 'setup.fail', 'token.create', 'token.revoke', 'user.create',
  'user.change', 'user.delete', 'document.delete', 'document.share', 'document.unshare',
  'model.start', 'model.reset', 'model.stop', 'model.switch'];

const el = {};
let users = [];
const audit = { offset: 0, actor: '', action: '', seq: 0 };
let pending = null;       // the user a dialog (reset, delete) is about

const isMe = (u) => state.me.user && u.id === state.me.user.id;

/* ---- users ---- */

async function loadUsers() {
  try {
    const r = await get('/users');
    users = Array.isArray(r.users) ? r.users : [];
    emit('users', users);
    renderUsers();
  } catch (err) {
    setStatus(el.usersStatus, `Cannot list the users: ${err.detail || err}`, 'error');
  }
}

function renderUsers() {
  const focusKey = document.activeElement?.dataset?.focusKey;
  if (!users.length) {
    el.usersBody.replaceChildren(h('tr', {}, h('td', { colspan: 6, class: 'muted' }, 'No users.')));
    return;
  }
  el.usersBody.replaceChildren(...users.map((u) => {
    const me = isMe(u);
    const role = h('select', { 'aria-label': `Role of ${u.name}`, dataset: { focusKey: `role-${u.id}` } },
      h('option', { value: 'user' }, 'user'), h('option', { value: 'admin' }, 'admin'));
    role.value = u.role;
    role.addEventListener('change', () => changeUser(u, { role: role.value },
      `${u.name} is ${role.value === 'admin' ? 'an admin' : 'a user'} now.`, () => { role.value = u.role; }));
    const selfNote = me ? 'You cannot disable or delete yourself here' : null;
    return h('tr', { dataset: { userId: u.id, userName: u.name, disabled: u.disabled ? 'true' : 'false' } },
      h('td', { dataset: { label: 'User' }, class: 'user-cell' },
        h('span', { class: 'user-cell-name' }, u.name), me ? h('span', { class: 'muted' }, ' (you)') : null),
      h('td', { dataset: { label: 'Role' } }, role),
      h('td', { dataset: { label: 'State' } },
        h('span', { class: 'badge user-state', dataset: { state: u.disabled ? 'failed' : 'cached' } }, u.disabled ? 'disabled' : 'active')),
      h('td', { dataset: { label: 'Documents' } }, `${int(u.documents)} · ${bytes(u.bytes)}`),
      h('td', { dataset: { label: 'Created' } }, h('span', { title: fullTime(u.created_at) }, ago(u.created_at))),
      h('td', { class: 'actions-cell' }, h('div', { class: 'row-actions' },
        h('button', {
          type: 'button', class: 'btn small', disabled: me, title: selfNote,
          'aria-label': `${u.disabled ? 'Enable' : 'Disable'} ${u.name}`, dataset: { focusKey: `dis-${u.id}` },
          onclick: () => changeUser(u, { disabled: !u.disabled },
            u.disabled ? `${u.name} is enabled again.` : `${u.name} is disabled: their sign-ins and tokens stop working.`),
        }, u.disabled ? 'Enable' : 'Disable'),
        h('button', {
          type: 'button', class: 'btn small', 'aria-label': `Reset the password of ${u.name}`,
          dataset: { focusKey: `pw-${u.id}` }, onclick: () => openReset(u),
        }, 'Reset password'),
        h('button', {
          type: 'button', class: 'btn small danger-ghost', disabled: me, title: selfNote,
          'aria-label': `Delete ${u.name}`, dataset: { focusKey: `del-${u.id}` }, onclick: () => openDelete(u),
        }, 'Delete'))));
  }));
  if (focusKey) document.querySelector(`[data-focus-key="${CSS.escape(focusKey)}"]`)?.focus();
}

/** PATCH /users/{id}; `undo` puts the control back when the server refuses. */
async function changeUser(u, body, done, undo) {
  setStatus(el.usersStatus, `Changing ${u.name}…`, 'busy');
  try {
    await patch(`/users/${encodeURIComponent(u.id)}`, body);
    setStatus(el.usersStatus, done, 'ok');
    // one's own role changed: what this page may do changed with it
    if (isMe(u) && body.role && body.role !== state.me.user.role) {
      window.location.hash = '';
      window.location.reload();
      return true;
    }
  } catch (err) {
    if (undo) undo();
    const why = err instanceof ApiError && err.status === 409
      ? 'that would leave no enabled admin' : err.detail || String(err);
    setStatus(el.usersStatus, `Cannot change ${u.name}: ${why}.`, 'error');
    return false;
  } finally {
    loadUsers();
    loadAudit();
  }
  return true;
}

async function addUser(ev) {
  ev.preventDefault();
  const name = el.addName.value.trim();
  const pw = el.addPassword.value;
  for (const f of [el.addName, el.addPassword]) f.removeAttribute('aria-invalid');
  const fail = (f, text) => { f.setAttribute('aria-invalid', 'true'); setStatus(el.usersStatus, text, 'error'); f.focus(); };
  if (!/^[A-Za-z0-9._@-]{1,64}$/.test(name)) return fail(el.addName, 'A user name is 1 to 64 letters, digits and . _ - @');
  if (pw.length < 8) return fail(el.addPassword, 'The password is too short: at least 8 characters.');
  el.addBtn.disabled = true;
  try {
    const u = await post('/users', { username: name, password: pw, role: el.addRole.value });
    el.addName.value = '';
    el.addPassword.value = '';
    el.addRole.value = 'user';
    setStatus(el.usersStatus, `Added ${u.name} (${u.role}). They sign in with the password you chose.`, 'ok');
    el.addName.focus();
  } catch (err) {
    fail(err.status === 409 ? el.addName : /password/i.test(err.detail || '') ? el.addPassword : el.addName,
      `Cannot add ${name}: ${err.detail || err}`);
  } finally {
    el.addBtn.disabled = false;
    loadUsers();
    loadAudit();
  }
  return undefined;
}

function openReset(u) {
  pending = u;
  el.resetTitle.textContent = `Reset the password of ${u.name}`;
  for (const f of [el.resetNew, el.resetRepeat]) { f.value = ''; f.removeAttribute('aria-invalid'); }
  setStatus(el.resetStatus, '');
  openDialog(el.reset, el.resetNew);
}

async function saveReset(ev) {
  ev.preventDefault();
  const u = pending;
  const pw = el.resetNew.value;
  const fail = (f, text) => { f.setAttribute('aria-invalid', 'true'); setStatus(el.resetStatus, text, 'error'); f.focus(); };
  if (pw.length < 8) return fail(el.resetNew, 'The password is too short: at least 8 characters.');
  if (pw !== el.resetRepeat.value) return fail(el.resetRepeat, 'The two passwords differ.');
  try {
    await patch(`/users/${encodeURIComponent(u.id)}`, { password: pw });
    el.reset.close();
    setStatus(el.usersStatus, `${u.name}'s password is reset; their sign-ins have ended.`, 'ok');
  } catch (err) {
    setStatus(el.resetStatus, `Cannot reset the password: ${err.detail || err}`, 'error');
  }
  loadAudit();
  return undefined;
}

function openDelete(u) {
  pending = u;
  el.deleteTitle.textContent = `Delete ${u.name}?`;
  el.deleteText.textContent = `${u.name} can no longer sign in, their API tokens stop working, and their ${int(u.documents)} document${u.documents === 1 ? '' : 's'} (${bytes(u.bytes)}) and chats are deleted with them. This cannot be undone.`;
  el.deleteConfirm.textContent = `Delete ${u.name}`;
  setStatus(el.deleteStatus, '');
  openDialog(el.delete, el.deleteCancel);
}

async function confirmDelete() {
  const u = pending;
  el.deleteConfirm.disabled = true;
  try {
    const r = await del(`/users/${encodeURIComponent(u.id)}`);
    el.delete.close();
    setStatus(el.usersStatus, `Deleted ${u.name}${r && r.documents_deleted ? ` and their ${int(r.documents_deleted)} document${r.documents_deleted === 1 ? '' : 's'}` : ''}.`, 'ok');
  } catch (err) {
    const why = err instanceof ApiError && err.status === 409 ? 'that is the last enabled admin' : err.detail || String(err);
    setStatus(el.deleteStatus, `Cannot delete ${u.name}: ${why}.`, 'error');
  } finally {
    el.deleteConfirm.disabled = false;
    loadUsers();
    loadAudit();
  }
}

/* ---- audit log ---- */

function detailText(d) {
  if (d === null || d === undefined) return '';
  if (typeof d !== 'object') return String(d);
  return Object.entries(d).map(([k, v]) => `${k}: ${typeof v === 'object' ? JSON.stringify(v) : v}`).join(', ');
}

function shortTime(iso) {
  const t = Date.parse(iso);
  if (!Number.isFinite(t)) return iso || '';
  return new Date(t).toLocaleString(undefined, { dateStyle: 'short', timeStyle: 'medium' });
}

async function loadAudit() {
  const my = ++audit.seq;
  const q = new URLSearchParams({ offset: String(audit.offset), limit: String(AUDIT_PAGE) });
  if (audit.actor) q.set('actor', audit.actor);
  if (audit.action) q.set('action', audit.action);
  let entries;
  try {
    const r = await get(`/audit?${q}`);
    if (my !== audit.seq) return;
    entries = Array.isArray(r.entries) ? r.entries : [];
  } catch (err) {
    if (my !== audit.seq) return;
    setStatus(el.auditStatus, `Cannot load the audit log: ${err.detail || err}`, 'error');
    return;
  }
  const filtered = [audit.actor && `by ${audit.actor}`, audit.action && `action ${audit.action}`].filter(Boolean).join(', ');
  setStatus(el.auditStatus, filtered ? `Showing ${filtered}.` : '', 'info');
  el.auditBody.replaceChildren(...(entries.length ? entries.map((e) => {
    const detail = detailText(e.detail);
    return h('tr', { dataset: { action: e.action, id: String(e.id) } },
      h('td', { dataset: { label: 'Time' } }, h('time', { datetime: e.time, title: fullTime(e.time) }, shortTime(e.time))),
      h('td', { dataset: { label: 'Who' } }, e.actor || 'system'),
      h('td', { dataset: { label: 'Action' } }, h('code', { class: 'audit-action' }, e.action)),
      h('td', { dataset: { label: 'Target' }, class: 'wrap-anywhere' }, e.target || ''),
      h('td', { dataset: { label: 'From' } }, e.from || ''),
      h('td', { dataset: { label: 'Detail' }, class: 'audit-detail', title: detail || null }, detail));
  }) : [h('tr', {}, h('td', { colspan: 6, class: 'muted' }, audit.offset ? 'No older entries.' : 'No entries.'))]));
  el.auditRange.textContent = entries.length ? `Entries ${int(audit.offset + 1)}–${int(audit.offset + entries.length)}, newest first` : '';
  el.auditNewer.disabled = audit.offset === 0;
  el.auditOlder.disabled = entries.length < AUDIT_PAGE;
}

function page(dir) {
  audit.offset = Math.max(0, audit.offset + dir * AUDIT_PAGE);
  loadAudit().then(() => {
    // the button pressed may have turned off: keep the focus in the pager
    const b = dir > 0 ? el.auditOlder : el.auditNewer;
    (b.disabled ? (dir > 0 ? el.auditNewer : el.auditOlder) : b).focus();
  });
}

/* ---- start ---- */

export function initAdmin() {
  el.title = byId('admin-title');
  el.title.tabIndex = -1;
  el.usersStatus = byId('users-status');
  el.usersBody = byId('users-body');
  el.addName = byId('user-add-name');
  el.addPassword = byId('user-add-password');
  el.addRole = byId('user-add-role');
  el.addBtn = byId('user-add-btn');
  el.auditStatus = byId('audit-status');
  el.auditBody = byId('audit-body');
  el.auditRange = byId('audit-range');
  el.auditNewer = byId('audit-newer');
  el.auditOlder = byId('audit-older');
  el.auditActor = byId('audit-actor');
  el.auditAction = byId('audit-action');

  byId('user-add-form').addEventListener('submit', addUser);
  clearInvalidOnInput(byId('user-add-form'));
  clearInvalidOnInput(byId('reset-form'));
  byId('users-refresh').addEventListener('click', loadUsers);
  byId('audit-refresh').addEventListener('click', loadAudit);
  byId('audit-actions').replaceChildren(...ACTIONS.map((a) => h('option', { value: a })));
  byId('audit-filter').addEventListener('submit', (ev) => {
    ev.preventDefault();
    audit.actor = el.auditActor.value.trim();
    audit.action = el.auditAction.value.trim();
    audit.offset = 0;
    loadAudit();
  });
  byId('audit-clear').addEventListener('click', () => {
    el.auditActor.value = '';
    el.auditAction.value = '';
    audit.actor = '';
    audit.action = '';
    audit.offset = 0;
    loadAudit();
  });
  el.auditNewer.addEventListener('click', () => page(-1));
  el.auditOlder.addEventListener('click', () => page(1));

  el.reset = byId('reset-dialog');
  el.resetTitle = byId('reset-title');
  el.resetNew = byId('reset-new');
  el.resetRepeat = byId('reset-repeat');
  el.resetStatus = byId('reset-status');
  wireDialog(el.reset, () => (pending && document.querySelector(`[data-focus-key="pw-${CSS.escape(pending.id)}"]`)) || el.title);
  byId('reset-form').addEventListener('submit', saveReset);

  el.delete = byId('delete-dialog');
  el.deleteTitle = byId('delete-title');
  el.deleteText = byId('delete-text');
  el.deleteStatus = byId('delete-status');
  el.deleteCancel = byId('delete-cancel');
  el.deleteConfirm = byId('delete-confirm');
  wireDialog(el.delete, () => (pending && document.querySelector(`[data-focus-key="del-${CSS.escape(pending.id)}"]`)) || el.addName);
  el.deleteCancel.addEventListener('click', () => el.delete.close());
  el.deleteConfirm.addEventListener('click', confirmDelete);

  byId('admin-back').addEventListener('click', (ev) => {
    ev.preventDefault();
    window.location.hash = '';
  });

  let shown = false;
  on('page', (p) => {
    if (p !== 'admin') {
      // back from the admin page: to the menu that led there
      if (shown && p === 'app') byId('user-menu-btn').focus({ preventScroll: true });
      shown = false;
      return;
    }
    shown = true;
    audit.offset = 0;
    loadUsers();
    loadAudit();
    el.title.focus({ preventScroll: true });
  });
  on('signed-in', () => {
    if (document.body.dataset.page === 'admin') { loadUsers(); loadAudit(); }
  });
}
