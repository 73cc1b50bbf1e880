// accounts.test.mjs — kvchat's web UI with accounts (auth.mode = accounts)
// in a real browser against a real kvchat and kvchat-engine with the tiny
// (random-weight) model.
//
//   node accounts.test.mjs --bin DIR --model tiny.gguf --modules NODE_MODULES
//                          --screenshots DIR [--chromium /usr/bin/chromium]
//
// Starts kvchat in accounts mode on an empty data directory (so it prints
// the one-time link that creates the first admin), drives Debian's Chromium
// through playwright-core and walks what accounts add, as people would:
// the sign-in page (and nothing else) without a login; a wrong password
// and too many failures said inline ("try again in N s"); the first admin
// made with the set-up link (the link then gone from the address); signing
// out and in; the user menu with the keyboard; the admin page (add a user,
// refusals said inline, change a role, disable and enable, reset a
// password, delete with confirmation, the audit log with its filter); an
// API token shown once, copied, working, revoked; a login that ends
// returning to the sign-in page with the message box kept; a user's view
// (no admin page, no model controls, no logs); changing one's password;
// logging out everywhere; sharing a document when the server offers it.
// Phone and desktop screenshots of the sign-in page, the user menu and the
// admin page go to --screenshots. Every process started here is stopped
// before exit; a watchdog ends the run if it takes too long.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const WATCHDOG_MS = 240_000;

import { alive, args, check, chromium, Failure, freePort, log, until } from './harness.mjs';
/* ---- the server ---- */

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'kvchat-e2e-accounts-'));
const dataDir = path.join(work, 'data');
const profileDir = path.join(work, 'chromium-profile');
fs.mkdirSync(args.screenshots, { recursive: true });
for (const f of fs.readdirSync(args.screenshots)) if (f.endsWith('.png')) fs.rmSync(path.join(args.screenshots, f));

let server = null;
let serverLog = '';
let enginePid = 0;
let base = '';
let setupLink = '';

async function startServer() {
  const port = await freePort();
  let enginePort = await freePort();
  while (enginePort === port) enginePort = await freePort();
  base = `http://127.0.0.1:${port}`;
  server = spawn(path.join(args.bin, 'kvchat'), [
    '--port', String(port), '--data', dataDir, '--model', args.model,
    '--set', 'auth.mode=accounts',
    '--set', `engine.port=${enginePort}`, '--set', 'engine.threads=1', '--set', 'llm.max_tokens=32',
    '--set', `engine.models_dir=${path.dirname(args.model)}`,
  ], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, KVCHAT_LOG_LEVEL: 'info' } });
  const keep = (b) => {
    serverLog += b.toString();
    if (serverLog.length > 400_000) serverLog = serverLog.slice(-200_000);
  };
  server.stdout.on('data', keep);
  server.stderr.on('data', keep);
  server.on('exit', (code, sig) => log(`kvchat exited (${sig || code})`));
  await until(async () => (await fetch(`${base}/health`)).ok, 'kvchat to answer /health', 30_000);
  // the first start with accounts and no user prints the first-admin link
  setupLink = (await until(() => (/http:\/\/\S+\/#setup=kvl_[A-Za-z0-9_-]+/.exec(serverLog) || [])[0], 'the set-up link on the console'));
  const h = await until(async () => {
    const r = await (await fetch(`${base}/health`)).json();
    return r.engine === 'running' ? r : null;
  }, 'the engine to run', 60_000);
  // the engine's pid, to check it goes with kvchat (the API needs a login)
  enginePid = Number((/started model server pid (\d+)/.exec(serverLog) || [])[1] || 0);
  log(`kvchat on ${base} (engine ${h.engine}${enginePid ? `, pid ${enginePid}` : ''}, data ${dataDir})`);
}

/** One API request as someone: `cred` is a cookie header value or "Bearer ...". */
async function api(method, p, body, cred) {
  const headers = body ? { 'Content-Type': 'application/json' } : {};
  if (cred && cred.startsWith('Bearer ')) headers.Authorization = cred;
  else if (cred) headers.Cookie = cred;
  const res = await fetch(base + p, { method, headers, body: body ? JSON.stringify(body) : undefined });
  return { status: res.status, body: await res.json().catch(() => null), cookie: (res.headers.get('set-cookie') || '').split(';')[0] };
}

async function stopServer() {
  if (!server || server.exitCode !== null || server.signalCode !== null) return;
  const exited = new Promise((r) => server.once('exit', r));
  server.kill('SIGTERM');
  const done = await Promise.race([exited.then(() => true), new Promise((r) => setTimeout(() => r(false), 15_000))]);
  if (!done) {
    log('kvchat did not stop within 15 s: killing it');
    server.kill('SIGKILL');
    await exited;
  }
}

/* ---- the browser ---- */

let ctx = null;
let page = null;
const pageErrors = [];
const cspErrors = [];
let shotN = 0;

async function shot(name) {
  shotN++;
  const file = path.join(args.screenshots, `${String(shotN).padStart(2, '0')}-${name}.png`);
  await page.screenshot({ path: file });
  log(`screenshot ${path.basename(file)}`);
}

async function launch() {
  ctx = await chromium.launchPersistentContext(profileDir, {
    executablePath: args.chromium,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-dev-shm-usage'],
    viewport: { width: 1366, height: 860 },
    colorScheme: 'light',
    timeout: 60_000,
  });
  await ctx.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: base });
  page = ctx.pages()[0] || await ctx.newPage();
  page.setDefaultTimeout(20_000);
  page.on('pageerror', (err) => pageErrors.push(err.message));
  page.on('console', (m) => {
    if (/Content Security Policy/i.test(m.text())) cspErrors.push(`${m.text().slice(0, 120)} (during "${currentStep}")`);
  });
}

const PHONE = { width: 390, height: 844 };
const DESKTOP = { width: 1366, height: 860 };

const overflow = () => page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);

/** Every visible control has a name (its label, aria-label or text). */
async function unnamedControls() {
  return page.evaluate(() => [...document.querySelectorAll('button, input, select, textarea, a[href]')]
    .filter((e) => e.offsetParent !== null)
    .filter((e) => {
      const label = e.getAttribute('aria-label') || (e.id && document.querySelector(`label[for="${e.id}"]`)?.textContent)
        || e.closest('label')?.textContent || e.textContent;
      return !label || !label.trim();
    }).map((e) => e.outerHTML.slice(0, 80)));
}

async function signIn(name, password) {
  await page.locator('#login-form').waitFor({ state: 'visible' });
  await page.fill('#login-user', name);
  await page.fill('#login-password', password);
  await page.press('#login-password', 'Enter');
  await page.locator('#app').waitFor({ state: 'visible' });
  await until(async () => (await page.textContent('#user-menu-name')) === name, `the menu to name ${name}`);
}

async function openMenu() {
  if ((await page.getAttribute('#user-menu-btn', 'aria-expanded')) !== 'true') await page.click('#user-menu-btn');
  await page.locator('#user-menu-pop').waitFor({ state: 'visible' });
}

async function menu(item) {
  await openMenu();
  await page.click(`#user-menu-list [role="menuitem"]:text-is("${item}")`);
}

/** The row of user `name` on the admin page. */
const userRow = (name) => page.locator(`#users-body tr[data-user-name="${name}"]`);

/* ---- the walk ---- */

const steps = [];
let currentStep = '';
async function step(name, fn) {
  const s = Date.now();
  currentStep = name;
  log(`- ${name}`);
  await fn();
  steps.push(name);
  log(`  ok (${((Date.now() - s) / 1000).toFixed(1)} s)`);
}

const ROOT_PW = 'root-password-1';
const ALICE_PW = 'alice-password-1';
const ALICE_PW2 = 'alice-password-2';

async function walk() {
  await step('without a login the sign-in page shows, and nothing of the app', async () => {
    await page.goto(base + '/');
    await page.locator('#login-form').waitFor({ state: 'visible' });
    check(await page.isHidden('#app') && await page.isHidden('#admin-page'), 'the app and the admin page are hidden');
    check(await page.isHidden('#model-pill') && await page.isHidden('#user-menu'), 'no status pill and no user menu');
    check(await page.title() === 'Sign in · kvchat', `the title says so (${await page.title()})`);
    check(await page.evaluate(() => document.activeElement.id) === 'login-user', 'the user name field has the focus');
    check((await unnamedControls()).length === 0, `controls without a name: ${await unnamedControls()}`);
    check(await overflow() <= 0, 'no horizontal overflow');
    await shot('desktop-login');
  });

  await step('a wrong password is said inline, on the password field', async () => {
    await page.fill('#login-user', 'root');
    await page.fill('#login-password', 'not-the-password');
    await page.click('#login-btn');
    await until(async () => /Wrong user name or password/.test(await page.textContent('#login-error')), 'the error');
    check(await page.getAttribute('#login-password', 'aria-invalid') === 'true', 'the password field is marked invalid');
    check(await page.evaluate(() => document.activeElement.id) === 'login-password', 'the focus goes back to the password');
    check(await page.isVisible('#login-form'), 'still on the sign-in page');
  });

  await step('too many failed sign-ins: "try again in N s", the button waits, then works again', async () => {
    await page.fill('#login-user', 'mallory');
    let text = '';
    for (let i = 0; i < 8 && !/try again in/.test(text); i++) {
      await page.fill('#login-password', `guess-${i}`);
      await until(async () => !(await page.isDisabled('#login-btn')), 'the button to be ready');
      await page.click('#login-btn');
      await until(async () => (await page.textContent('#login-error')).length > 0 && !(await page.textContent('#login-btn')).includes('…'), 'an answer');
      text = await page.textContent('#login-error');
    }
    const m = /Too many failed sign-ins.*try again in (\d+) s/.exec(text);
    check(m, `the 429 is said with its wait (${text})`);
    check(await page.isDisabled('#login-btn') && /Sign in \(\d+ s\)/.test(await page.textContent('#login-btn')), 'the button counts down');
    await shot('desktop-login-429');
    await until(async () => !(await page.isDisabled('#login-btn')), 'the button to work again', (Number(m[1]) + 5) * 1000);
    check(await page.textContent('#login-btn') === 'Sign in', 'the button says Sign in again');
  });

  await step('the set-up link shows "Create the first admin"; it checks the repeat, makes root and signs in', async () => {
    const url = setupLink.replace(/^http:\/\/[^/]+/, base);
    await page.goto(url);
    await page.locator('#setup-form').waitFor({ state: 'visible' });
    check(await page.isHidden('#login-card'), 'the sign-in form is not shown beside it');
    await page.fill('#setup-user', 'root');
    await page.fill('#setup-password', ROOT_PW);
    await page.fill('#setup-repeat', 'something-else');
    await page.click('#setup-btn');
    check(/differ/.test(await page.textContent('#setup-error')), 'a repeat that differs is said');
    check(await page.getAttribute('#setup-repeat', 'aria-invalid') === 'true', 'and marked');
    await shot('desktop-setup');
    await page.fill('#setup-repeat', ROOT_PW);
    await page.click('#setup-btn');
    await page.locator('#app').waitFor({ state: 'visible' });
    check(!page.url().includes('#setup'), `the link is gone from the address (${page.url()})`);
    check(await page.textContent('#user-menu-name') === 'root' && await page.textContent('#user-menu-role') === 'admin', 'the menu says root, admin');
    check(await page.isVisible('#model-select') && await page.isVisible('#start-resume') && await page.isVisible('#logs-card'), 'an admin has the model controls and the logs');
    await until(async () => /running/.test(await page.textContent('#model-pill')), 'the pill to say running');
    const again = await api('POST', '/api/v1/auth/setup', { token: /#setup=(.*)$/.exec(setupLink)[1], username: 'eve', password: 'eve-password-1' });
    check(again.status === 403, `the link works once (${again.status})`);
  });

  await step('log out, then sign in as root with the form', async () => {
    await menu('Log out');
    await page.locator('#login-form').waitFor({ state: 'visible' });
    check(/You have logged out/.test(await page.textContent('#login-note')), 'the sign-in page says so');
    check((await api('GET', '/api/v1/auth/me')).status === 401, 'no login is left');
    await signIn('root', ROOT_PW);
    check(await page.title() === 'kvchat', 'the app\'s title');
  });

  let noteId = '';
  await step('an admin\'s library: a document uploaded; Share offered when the server has it', async () => {
    await page.setInputFiles('#file-input', [{ name: 'team-notes.txt', mimeType: 'text/plain', buffer: Buffer.from('Team notes.\nThe shared line.\n') }]);
    await page.click('#upload-btn');
    const item = page.locator('.doc-item:has(.doc-name:text-is("team-notes.txt"))');
    await item.waitFor();
    noteId = await item.getAttribute('data-doc-id');
    const spec = (await api('GET', '/api/v1/openapi.json')).body;
    const sharing = Object.keys(spec.paths).some((p) => /\/documents\/\{[^}]+\}\/share$/.test(p));
    log(`  the server ${sharing ? 'shares documents' : 'has no share route yet'}`);
    if (!sharing) {
      check(await item.locator('.doc-share').count() === 0, 'no Share button without the route');
      return;
    }
    await until(async () => (await item.locator('.doc-share').count()) === 1, 'the Share button');
    check(await item.locator('.doc-share').getAttribute('aria-label') === 'Share team-notes.txt with every user', 'it names what it does');
    await item.locator('.doc-share').click();
    await until(async () => (await item.locator('.doc-shared').count()) === 1, 'the shared badge');
    check(await item.locator('.doc-share').textContent() === 'Unshare', 'the button offers to unshare');
  });

  await step('the user menu works with the keyboard', async () => {
    await page.focus('#user-menu-btn');
    await page.keyboard.press('ArrowDown');
    await page.locator('#user-menu-pop').waitFor({ state: 'visible' });
    check(await page.getAttribute('#user-menu-btn', 'aria-expanded') === 'true', 'the button says the menu is open');
    const labels = await page.locator('#user-menu-list [role="menuitem"]:visible').allTextContents();
    check(labels.join('|') === 'Admin: users and audit log|API tokens|Change password|Log out|Log out everywhere', `an admin's items (${labels})`);
    check(await page.evaluate(() => document.activeElement.id) === 'menu-admin', 'the first item has the focus');
    await page.keyboard.press('ArrowDown');
    check(await page.evaluate(() => document.activeElement.id) === 'menu-tokens', 'ArrowDown moves');
    await page.keyboard.press('End');
    check(await page.evaluate(() => document.activeElement.id) === 'menu-logout-all', 'End goes to the last');
    await page.keyboard.press('ArrowDown');
    check(await page.evaluate(() => document.activeElement.id) === 'menu-admin', 'and wraps around');
    check(/Signed in as root · admin/.test(await page.textContent('.menu-head')), 'the menu says who is signed in');
    await shot('desktop-user-menu');
    await page.keyboard.press('Escape');
    check(await page.isHidden('#user-menu-pop') && await page.evaluate(() => document.activeElement.id) === 'user-menu-btn', 'Escape closes it back to its button');
  });

  await step('the admin page: add alice (refusals said inline); the audit log shows user.create', async () => {
    await page.focus('#user-menu-btn');
    await page.keyboard.press('Enter');
    await page.keyboard.press('Enter'); // the first item: Admin
    await page.locator('#admin-page').waitFor({ state: 'visible' });
    check(page.url().endsWith('#admin') && await page.isHidden('#app'), 'the admin page replaces the app, at #admin');
    await userRow('root').waitFor();
    check(/\(you\)/.test(await userRow('root').textContent()), 'root is marked as you');
    check(await userRow('root').locator('button', { hasText: 'Delete' }).isDisabled(), 'one cannot delete oneself');
    await page.fill('#user-add-name', 'alice');
    await page.fill('#user-add-password', 'short');
    await page.click('#user-add-btn');
    check(/too short/.test(await page.textContent('#users-status')) && await page.getAttribute('#user-add-password', 'aria-invalid') === 'true', 'a short password is refused inline');
    await page.fill('#user-add-password', ALICE_PW);
    await page.click('#user-add-btn');
    await until(async () => /Added alice \(user\)/.test(await page.textContent('#users-status')), 'the outcome');
    await userRow('alice').waitFor();
    const row = await userRow('alice').textContent();
    check(/active/.test(row) && /0 · 0 B/.test(row), `alice is active with no documents (${row})`);
    check(await userRow('alice').locator('select').inputValue() === 'user', 'alice is a user');
    // the same name again: the server's 409 said inline
    await page.fill('#user-add-name', 'ALICE');
    await page.fill('#user-add-password', ALICE_PW);
    await page.click('#user-add-btn');
    await until(async () => /Cannot add ALICE: .*exists/.test(await page.textContent('#users-status')), 'the refusal of a taken name');
    await page.fill('#user-add-name', '');
    await page.fill('#user-add-password', '');
    const first = page.locator('#audit-body tr').first();
    await until(async () => (await first.getAttribute('data-action')) === 'user.create' && /alice/.test(await first.textContent()), 'the audit log\'s newest line to be alice\'s creation');
    check(/root/.test(await first.locator('td[data-label="Who"]').textContent()), 'by root');
    await page.fill('#audit-action', 'user.create');
    await page.click('#audit-apply');
    await until(async () => (await page.locator('#audit-body tr').count()) === 2, 'the filter to show the two creations (root by the link, alice)');
    const actions = await page.locator('#audit-body tr').evaluateAll((trs) => trs.map((t) => t.dataset.action));
    check(actions.every((a) => a === 'user.create'), `only user.create (${actions})`);
    check(await page.isDisabled('#audit-newer') && await page.isDisabled('#audit-older'), 'one page: no paging');
    check(/Entries 1–2/.test(await page.textContent('#audit-range')), 'the range is said');
    await page.fill('#audit-actor', 'nobody-at-all');
    await page.click('#audit-apply');
    await until(async () => /No entries/.test(await page.textContent('#audit-body')), 'an empty result to say so');
    await page.click('#audit-clear');
    await until(async () => (await page.locator('#audit-body tr').count()) > 5, 'every entry back');
    check((await unnamedControls()).length === 0, `controls without a name: ${await unnamedControls()}`);
    check(await overflow() <= 0, 'no horizontal overflow');
    await shot('desktop-admin');
  });

  await step('the admin page: roles, disable and enable, reset, delete with confirmation; the last admin is kept', async () => {
    // root is the only admin: the server refuses, the select goes back
    await userRow('root').locator('select').selectOption('user');
    await until(async () => /Cannot change root: that would leave no enabled admin/.test(await page.textContent('#users-status')), 'the 409 said');
    await until(async () => (await userRow('root').locator('select').inputValue()) === 'admin', 'root\'s role back to admin');
    await userRow('alice').locator('select').selectOption('admin');
    await until(async () => /alice is an admin now/.test(await page.textContent('#users-status')), 'alice made an admin');
    await userRow('alice').locator('select').selectOption('user');
    await until(async () => /alice is a user now/.test(await page.textContent('#users-status')), 'alice a user again');
    await userRow('alice').locator('button', { hasText: 'Disable' }).click();
    await until(async () => (await userRow('alice').getAttribute('data-disabled')) === 'true', 'alice disabled');
    check(/disabled/.test(await userRow('alice').locator('.user-state').textContent()), 'the state says disabled');
    check((await api('POST', '/api/v1/auth/login', { username: 'alice', password: ALICE_PW })).status === 401, 'a disabled user cannot sign in');
    await userRow('alice').locator('button', { hasText: 'Enable' }).click();
    await until(async () => (await userRow('alice').getAttribute('data-disabled')) === 'false', 'alice enabled');
    // reset: a new password, then back to the first (alice signs in with it later)
    await userRow('alice').locator('button', { hasText: 'Reset password' }).click();
    await page.locator('#reset-dialog').waitFor({ state: 'visible' });
    check(await page.textContent('#reset-title') === 'Reset the password of alice', 'the dialog names the user');
    check(await page.evaluate(() => document.activeElement.id) === 'reset-new', 'its first field has the focus');
    await page.fill('#reset-new', 'temporary-pw-1');
    await page.fill('#reset-repeat', 'temporary-pw-2');
    await page.click('#reset-save');
    check(/differ/.test(await page.textContent('#reset-status')), 'a repeat that differs is said');
    await page.fill('#reset-repeat', 'temporary-pw-1');
    await page.click('#reset-save');
    await page.locator('#reset-dialog').waitFor({ state: 'hidden' });
    check(/alice's password is reset/.test(await page.textContent('#users-status')), 'the outcome');
    check((await api('POST', '/api/v1/auth/login', { username: 'alice', password: 'temporary-pw-1' })).status === 200, 'the new password works');
    await userRow('alice').locator('button', { hasText: 'Reset password' }).click();
    await page.fill('#reset-new', ALICE_PW);
    await page.fill('#reset-repeat', ALICE_PW);
    await page.keyboard.press('Enter');
    await page.locator('#reset-dialog').waitFor({ state: 'hidden' });
    // delete bob: the dialog says what goes; Cancel keeps him, the second button deletes
    await page.fill('#user-add-name', 'bob');
    await page.fill('#user-add-password', 'bob-password-1');
    await page.click('#user-add-btn');
    await userRow('bob').waitFor();
    await userRow('bob').locator('button', { hasText: 'Delete' }).click();
    await page.locator('#delete-dialog').waitFor({ state: 'visible' });
    check(/Delete bob\?/.test(await page.textContent('#delete-title')) && /0 documents .* cannot be undone/.test(await page.textContent('#delete-text')), 'the dialog says what goes');
    check(await page.evaluate(() => document.activeElement.id) === 'delete-cancel', 'Cancel has the focus');
    await page.keyboard.press('Escape');
    await page.locator('#delete-dialog').waitFor({ state: 'hidden' });
    check(await userRow('bob').count() === 1, 'Escape keeps bob');
    await userRow('bob').locator('button', { hasText: 'Delete' }).click();
    await page.click('#delete-confirm');
    await until(async () => (await userRow('bob').count()) === 0, 'bob to go');
    check(/Deleted bob/.test(await page.textContent('#users-status')), 'the outcome is said');
    await until(async () => (await page.locator('#audit-body tr').first().getAttribute('data-action')) === 'user.delete', 'the deletion in the audit log');
  });

  await step('the admin page on a phone: rows as cards, nothing wider than the screen', async () => {
    await page.setViewportSize(PHONE);
    await page.waitForTimeout(200);
    check(await overflow() <= 0, `no horizontal overflow (${await overflow()}px)`);
    check(await page.isHidden('.tabs'), 'no section tabs on the admin page');
    const box = await userRow('alice').boundingBox();
    check(box && box.width <= PHONE.width, 'a user row fits the screen');
    await shot('phone-admin');
    await page.locator('#audit-heading').scrollIntoViewIfNeeded();
    await shot('phone-admin-audit');
    await openMenu();
    const pop = await page.locator('#user-menu-pop').boundingBox();
    check(pop && pop.x >= 0 && pop.x + pop.width <= PHONE.width, `the menu fits the screen (${JSON.stringify(pop)})`);
    await shot('phone-user-menu');
    await page.keyboard.press('Escape');
    await page.click('#admin-back');
    await page.locator('#app').waitFor({ state: 'visible' });
    check(await page.isVisible('.tabs'), 'the tabs are back with the app');
    check(await overflow() <= 0, 'no horizontal overflow in the app');
    await shot('phone-app-admin');
    await page.setViewportSize(DESKTOP);
  });

  await step('an API token: made, shown once with a warning, copied, working, then revoked', async () => {
    await menu('API tokens');
    await page.locator('#tokens-dialog').waitFor({ state: 'visible' });
    check(await page.evaluate(() => document.activeElement.id) === 'token-name', 'the name field has the focus');
    // the list is fetched as the dialog opens
    await until(async () => /No tokens yet/.test(await page.textContent('#tokens-list')), 'no token yet');
    await page.click('#token-create');
    check(/Name the token/.test(await page.textContent('#tokens-status')), 'a token needs a name');
    await page.fill('#token-name', 'e2e script');
    await page.selectOption('#token-scope', 'read');
    await page.selectOption('#token-expiry', '2592000');
    await page.click('#token-create');
    await page.locator('#token-secret').waitFor({ state: 'visible' });
    const secret = await page.inputValue('#token-secret-value');
    check(/^kvt_/.test(secret), `the secret is shown (${secret.slice(0, 6)}…)`);
    check(/shown only once/.test(await page.textContent('#token-secret')), 'with the warning');
    await page.click('#token-copy');
    await until(async () => (await page.textContent('#token-copy')) === 'Copied', 'the copy confirmation');
    check(await page.evaluate(() => navigator.clipboard.readText()) === secret, 'the clipboard holds the token');
    const me = await api('GET', '/api/v1/auth/me', null, `Bearer ${secret}`);
    check(me.status === 200 && me.body.user.name === 'root' && me.body.scope === 'read' && me.body.via === 'token', `the token works, read only (${JSON.stringify(me.body)})`);
    check((await api('POST', '/api/v1/auth/tokens', { name: 'x' }, `Bearer ${secret}`)).status === 403, 'a read token changes nothing');
    const item = page.locator('#tokens-list .token-item', { hasText: 'e2e script' });
    await item.waitFor();
    check(/read/.test(await item.textContent()) && /expires/.test(await item.textContent()) && /never used|last used/.test(await item.textContent()), 'the list has its scope, expiry and use');
    await shot('desktop-token-once');
    await page.keyboard.press('Escape');
    await page.locator('#tokens-dialog').waitFor({ state: 'hidden' });
    check(await page.evaluate(() => document.activeElement.id) === 'user-menu-btn', 'the focus goes back to the menu button');
    await menu('API tokens');
    await item.waitFor();
    check(await page.isHidden('#token-secret') && await page.inputValue('#token-secret-value') === '', 'reopened: the secret is not shown again');
    check(!(await page.content()).includes(secret), 'the secret is nowhere in the page');
    await item.locator('button', { hasText: 'Revoke' }).click();
    await item.locator('button.armed').click();
    await until(async () => /revoked/.test(await page.textContent('#tokens-status')), 'the revocation');
    await until(async () => (await page.locator('#tokens-list .token-item').count()) === 0, 'the token to leave the list');
    check((await api('GET', '/api/v1/auth/me', null, `Bearer ${secret}`)).status === 401, 'a revoked token is refused');
    await page.click('#tokens-dialog .dialog-close');
  });

  await step('a login that ends returns to the sign-in page; signing in again keeps the message box', async () => {
    const draft = 'A question I was typing when the login ended';
    await page.fill('#chat-input', draft);
    await ctx.clearCookies();
    // any request now ends the login; a status poll may get there before
    // this click and hide the button, so the click goes through the DOM
    await page.evaluate(() => document.getElementById('doc-refresh').click());
    await page.locator('#login-form').waitFor({ state: 'visible' });
    check(/sign-in has ended/.test(await page.textContent('#login-note')), 'the page says why');
    check(await page.inputValue('#login-user') === 'root', 'the user name is filled in');
    check(await page.evaluate(() => document.activeElement.id) === 'login-password', 'the password has the focus');
    await page.fill('#login-password', ROOT_PW);
    await page.press('#login-password', 'Enter');
    await page.locator('#app').waitFor({ state: 'visible' });
    check(await page.inputValue('#chat-input') === draft, 'the message box kept what was typed');
    await until(async () => (await page.locator('.doc-item').count()) === 1, 'the library reloaded');
    await page.fill('#chat-input', '');
  });

  await step('log out; the sign-in page on a phone', async () => {
    await menu('Log out');
    await page.locator('#login-form').waitFor({ state: 'visible' });
    await page.setViewportSize(PHONE);
    await page.waitForTimeout(200);
    check(await overflow() <= 0, 'no horizontal overflow');
    check(await page.isHidden('.tabs'), 'no tabs on the sign-in page');
    await shot('phone-login');
    await page.setViewportSize(DESKTOP);
  });

  await step('alice signs in: no admin page, no model controls, no logs; the model state read-only', async () => {
    await signIn('alice', ALICE_PW);
    check(await page.textContent('#user-menu-role') === 'user', 'the menu says user');
    await openMenu();
    const labels = await page.locator('#user-menu-list [role="menuitem"]:visible').allTextContents();
    check(labels.join('|') === 'API tokens|Change password|Log out|Log out everywhere', `a user's items (${labels})`);
    await page.keyboard.press('Escape');
    for (const id of ['#model-select', '#model-switch', '#start-reset', '#start-resume', '#stop-model', '#logs-card', '#log-view']) {
      check(await page.isHidden(id), `${id} is hidden from a user`);
    }
    check(await page.isVisible('#model-readonly') && await page.isVisible('#model-status'), 'the model state shows, read-only');
    await until(async () => /running/.test(await page.textContent('#model-pill')), 'the pill to say running');
    await page.goto(`${base}/#admin`);
    await page.locator('#app').waitFor({ state: 'visible' });
    check(await page.isHidden('#admin-page'), '#admin does not open the admin page for a user');
    const shared = await page.locator('.doc-item:has(.doc-name:text-is("team-notes.txt"))').count();
    if (shared) {
      const item = page.locator('.doc-item:has(.doc-name:text-is("team-notes.txt"))');
      check(await item.locator('.doc-shared').count() === 1, 'root\'s shared document says shared');
      check(await item.locator('button', { hasText: 'Delete' }).count() === 0 && await item.locator('.doc-share').count() === 0, 'no Delete and no Share on another\'s shared document');
    } else {
      check(await page.locator('.doc-item').count() === 0, 'alice does not see root\'s documents');
    }
    await menu('API tokens');
    const scopes = await page.locator('#token-scope option:enabled').allTextContents();
    check(scopes.join() === 'read,chat', `a user's tokens are read or chat (${scopes})`);
    await page.keyboard.press('Escape');
    await page.setViewportSize(PHONE);
    await page.waitForTimeout(200);
    check(await page.textContent('.tab[data-view="model"]') === 'Model', 'the phone tab says Model');
    await page.click('.tab[data-view="model"]');
    check(await overflow() <= 0, 'no horizontal overflow');
    await shot('phone-user-model');
    await page.click('.tab[data-view="chat"]');
    await page.setViewportSize(DESKTOP);
    check((await unnamedControls()).length === 0, `controls without a name: ${await unnamedControls()}`);
    await shot('desktop-user');
  });

  await step('alice changes her password (a wrong current one is said)', async () => {
    await menu('Change password');
    await page.locator('#password-dialog').waitFor({ state: 'visible' });
    await page.fill('#password-current', 'not-my-password');
    await page.fill('#password-new', ALICE_PW2);
    await page.fill('#password-repeat', ALICE_PW2);
    await page.click('#password-save');
    await until(async () => /current password is wrong/.test(await page.textContent('#password-status')), 'the refusal');
    check(await page.getAttribute('#password-current', 'aria-invalid') === 'true', 'the current password is marked');
    await page.fill('#password-current', ALICE_PW);
    await page.fill('#password-repeat', 'different-again');
    await page.click('#password-save');
    check(/differ/.test(await page.textContent('#password-status')), 'new passwords that differ are said');
    await page.fill('#password-new', ALICE_PW2);
    await page.fill('#password-repeat', ALICE_PW2);
    await page.click('#password-save');
    await until(async () => /Password changed/.test(await page.textContent('#password-status')), 'the change');
    await page.keyboard.press('Escape');
    check((await api('POST', '/api/v1/auth/login', { username: 'alice', password: ALICE_PW })).status === 401, 'the old password no longer works');
    await until(async () => /running/.test(await page.textContent('#model-pill')), 'this login to go on');
  });

  await step('log out everywhere ends every login of alice', async () => {
    const other = await api('POST', '/api/v1/auth/login', { username: 'alice', password: ALICE_PW2 });
    check(other.status === 200 && other.cookie.startsWith('kvchat_session='), 'another login (another device)');
    check((await api('GET', '/api/v1/auth/me', null, other.cookie)).status === 200, 'which works');
    await menu('Log out everywhere');
    await page.locator('#login-form').waitFor({ state: 'visible' });
    check(/logged out everywhere/.test(await page.textContent('#login-note')), 'the sign-in page says so');
    check((await api('GET', '/api/v1/auth/me', null, other.cookie)).status === 401, 'the other login ended too');
    await signIn('alice', ALICE_PW2);
    check(await page.isHidden('#admin-page'), 'alice is back, as a user');
  });

  await step('root sees it all in the audit log, filtered by who', async () => {
    await menu('Log out');
    await signIn('root', ROOT_PW);
    await page.goto(`${base}/#admin`);
    await page.locator('#admin-page').waitFor({ state: 'visible' });
    await page.fill('#audit-actor', 'alice');
    await page.click('#audit-apply');
    // (the page's unfiltered list may come first: wait for the filtered one)
    await until(async () => {
      const a = await page.locator('#audit-body tr').evaluateAll((trs) => trs.map((t) => t.dataset.action));
      return /Showing by alice/.test(await page.textContent('#audit-status'))
        && ['password.change', 'password.fail', 'logout.everywhere', 'login.ok'].every((x) => a.includes(x));
    }, 'the filter said, with alice\'s password change, failure, logout everywhere and logins');
  });

  await step('dark mode: the admin page follows the system', async () => {
    await page.emulateMedia({ colorScheme: 'dark' });
    await shot('desktop-admin-dark');
    await page.emulateMedia({ colorScheme: 'light' });
  });

  check(pageErrors.length === 0, `errors in the page: ${pageErrors.join(' | ')}`);
  check(cspErrors.length === 0, `Content Security Policy violations: ${cspErrors.join(' | ')}`);
}

/* ---- run ---- */

let failed = false;
const watchdog = setTimeout(async () => {
  console.error(`e2e: the run took longer than ${WATCHDOG_MS / 1000} s: stopping`);
  failed = true;
  await cleanup();
  process.exit(1);
}, WATCHDOG_MS);

let cleaned = false;
async function cleanup() {
  if (cleaned) return;
  cleaned = true;
  if (ctx) await ctx.close().catch(() => {});
  await stopServer().catch(() => {});
  if (enginePid) {
    await until(async () => !alive(enginePid), 'the engine to exit with kvchat', 10_000).catch(() => {
      console.error(`e2e: engine pid ${enginePid} still running after kvchat stopped: killing it`);
      try { process.kill(enginePid, 'SIGKILL'); } catch { /* gone */ }
      failed = true;
    });
  }
  fs.rmSync(work, { recursive: true, force: true });
}

for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, async () => {
    await cleanup();
    process.exit(1);
  });
}

try {
  await startServer();
  await launch();
  await walk();
} catch (err) {
  failed = true;
  console.error(`\ne2e: FAILED: ${err instanceof Failure ? err.message : err.stack || err}`);
  if (page) await page.screenshot({ path: path.join(args.screenshots, 'failure.png') }).catch(() => {});
  console.error(`e2e: screenshots in ${args.screenshots}; last kvchat output:\n${serverLog.split('\n').slice(-40).join('\n').replace(/#setup=kvl_\S+/g, '#setup=kvl_…')}`);
} finally {
  await cleanup();
  clearTimeout(watchdog);
}
log(failed ? `e2e: failed after ${steps.length} of the steps` : `e2e: all ${steps.length} steps passed`);
process.exit(failed ? 1 : 0);
