// ui.test.mjs — kvchat's web UI in a real browser against a real kvchat
// and kvchat-engine with the tiny (random-weight) model.
//
//   node ui.test.mjs --bin DIR --model tiny.gguf --modules NODE_MODULES
//                    --screenshots DIR [--chromium /usr/bin/chromium]
//
// Starts kvchat on free ports with its own temporary data directory (kvchat
// starts the engine), drives Debian's Chromium through playwright-core and
// walks the product as a user would: upload (drag-and-drop and the picker,
// with rejected files), cache with a visible state change, preview, a
// streamed answer with its cache figures, copy, Stop, restart without reset
// and an answer restored from disk, a cache entry the engine dropped, a
// long document (its parts, caching them part by part with the time left, a
// part that fails, an answer that says which part and section it came from,
// its source shown in place, highlighted; on a phone too), a chat about two
// documents, the library marking the chat's documents and adding or taking
// them out (kept in step with the chips, Clear, sessions and deletion),
// the model stopped and the error it causes, the logs viewer, restart with
// reset, past sessions, delete, markdown and script injection, keyboard
// reach, phone width and dark mode. Screenshots of the main states go to
// --screenshots. Every process started here is stopped before exit; a
// watchdog ends the run if it takes too long.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const WATCHDOG_MS = 240_000;

import { alive, args, check, chromium, Failure, freePort, log, until } from './harness.mjs';
/* ---- the server ---- */

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'kvchat-e2e-'));
const dataDir = path.join(work, 'data');
const profileDir = path.join(work, 'chromium-profile');
fs.mkdirSync(args.screenshots, { recursive: true });
for (const f of fs.readdirSync(args.screenshots)) if (f.endsWith('.png')) fs.rmSync(path.join(args.screenshots, f));

let server = null;
let serverLog = '';
let engineWasPid = 0;
let base = '';
// The engine's key: fixed here (engine.api_key) so the test can reach the
// engine itself; kvchat's default is a new random key at every start.
const ENGINE_KEY = 'e2e-engine-key';

async function startServer() {
  const port = await freePort();
  let enginePort = await freePort();
  while (enginePort === port) enginePort = await freePort();
  base = `http://127.0.0.1:${port}`;
  server = spawn(path.join(args.bin, 'kvchat'), [
    '--port', String(port), '--data', dataDir, '--model', args.model,
    // one engine thread and short answers: the run stays quick on a busy
    // two-core machine (ctest runs other tests beside this one)
    '--set', `engine.port=${enginePort}`, '--set', 'engine.threads=1', '--set', 'llm.max_tokens=128',
    '--set', `engine.api_key=${ENGINE_KEY}`,
    // small chunks: a source is a sentence or two, found and shown exactly
    '--set', 'documents.chunk_tokens=48', '--set', 'documents.chunk_max_tokens=96',
    '--set', `engine.models_dir=${path.dirname(args.model)}`,
    // a configured upload limit the page must learn from the server
    '--set', 'server.max_upload_mb=3',
    // a remote (OpenAI-compatible) model: the engine itself, spoken to directly
    '--set', 'remote.engine-direct.provider=openai',
    '--set', `remote.engine-direct.base_url=http://127.0.0.1:${enginePort}/v1`,
    '--set', 'remote.engine-direct.model=tiny',
    '--set', `remote.engine-direct.api_key=${ENGINE_KEY}`,
  ], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, KVCHAT_LOG_LEVEL: 'info' } });
  const keep = (b) => {
    serverLog += b.toString();
    if (serverLog.length > 400_000) serverLog = serverLog.slice(-200_000);
  };
  server.stdout.on('data', keep);
  server.stderr.on('data', keep);
  server.on('exit', (code, sig) => log(`kvchat exited (${sig || code})`));
  await until(async () => (await fetch(`${base}/health`)).ok, 'kvchat to answer /health', 30_000);
  const st = await until(async () => {
    const s = await (await fetch(`${base}/api/v1/model/status`)).json();
    return s.status === 'running' ? s : null;
  }, 'the engine to run', 60_000);
  engineWasPid = st.pid;
  log(`kvchat on ${base} (engine pid ${st.pid}, data ${dataDir})`);
}

async function api(method, p, body) {
  const res = await fetch(base + p, {
    method,
    headers: body ? { 'Content-Type': 'application/json' } : {},
    body: body ? JSON.stringify(body) : undefined,
  });
  return { status: res.status, body: await res.json().catch(() => null) };
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

/* ---- the documents the test uploads ---- */

const guideLines = ['# The KV cache guide', ''];
for (let i = 1; i <= 60; i++) {
  guideLines.push(`Line ${i}: a prefilled document prefix is kept as key and value tensors, so question ${i} restores it instead of recomputing it.`);
}
const GUIDE = `${guideLines.join('\n')}\n`;
const EVIL = '<script>window.__xssPreview = 1</script>\n<img src=x onerror="window.__xssPreview = 2">\nA plain third line.\n';
// A long Markdown document: 125 harbours, each with a keeper whose name is
// found nowhere else (so a question naming one is routed to its part alone)
// and a fact to find in the highlighted passage. With the test's context
// (4,096 tokens, a quarter kept for the conversation) it makes five parts.
const KEEPER_A = ['Quil', 'Zor', 'Mab', 'Vint', 'Tor', 'Bel', 'Rix', 'Dun', 'Fay', 'Gor', 'Hal', 'Jov'];
const KEEPER_B = ['amere', 'ibold', 'ustine', 'ekker', 'owan', 'adine', 'ethorn', 'ilda', 'orrin', 'uvel', 'enna'];
const keeper = (i) => `${KEEPER_A[i % KEEPER_A.length]}${KEEPER_B[Math.floor(i / KEEPER_A.length) % KEEPER_B.length]}`;
const gulls = (i) => 1000 + i * 7;
const HARBOURS = 125;
const almanacLines = ['# The Lighthouse Almanac', ''];
for (let i = 1; i <= HARBOURS; i++) {
  const colour = ['amber', 'cobalt', 'crimson', 'emerald', 'indigo', 'jade', 'magenta', 'ochre', 'scarlet', 'teal', 'violet', 'saffron'][i % 12];
  almanacLines.push(`## Harbour ${i}`, '',
    `Harbour ${i} keeps its tide tables, fog signals and lamp oil ledger in the stone hut beside the quay; the night watch writes its notes there in pencil before dawn.`, '',
    `The keeper of harbour ${i} is ${keeper(i)}, who paints every door ${colour} and counts exactly ${gulls(i)} gulls each spring.`, '',
    `In winter the boats of harbour ${i} stay on the slipway, and the crews mend nets by the stove while the wind comes in from the sea.`, '');
}
const ALMANAC = `${almanacLines.join('\n')}\n`;

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
    if (/Content Security Policy/i.test(m.text())) {
      const at = m.location();
      cspErrors.push(`${m.text().slice(0, 120)} (at ${at.url}:${at.lineNumber}, during "${currentStep}")`);
    }
  });
}

const sel = {
  docItem: (name) => `.doc-item:has(.doc-name:text-is("${name}"))`,
};

async function docId(name) {
  return page.getAttribute(sel.docItem(name), 'data-doc-id');
}

/** The library's "in this chat" toggle of a document. */
function chatToggle(name) {
  return page.locator(`${sel.docItem(name)} .doc-chat-toggle`);
}

/**
 * Waits until the chat uses exactly `ids`, in order (the selector, then the
 * chips), and the library marks exactly those documents as in this chat.
 */
async function chatUses(ids, what) {
  let seen = '';
  await until(async () => {
    const used = [await page.inputValue('#doc-select'),
      ...await page.locator('#doc-extra .chip').evaluateAll((cs) => cs.map((c) => c.dataset.docId))].filter(Boolean);
    const marked = await page.locator('.doc-item[data-in-chat="true"]').evaluateAll((lis) => lis.map((li) => li.dataset.docId));
    const badges = await page.locator('.doc-item .doc-in-chat').count();
    seen = `uses ${used}, marked ${marked}, ${badges} badges`;
    return used.join() === ids.join() && [...marked].sort().join() === [...ids].sort().join() && badges === ids.length;
  }, () => `${what} (want ${ids}; ${seen})`);
}

async function badge(name) {
  const b = page.locator(`${sel.docItem(name)} .doc-cache`);
  return { state: await b.getAttribute('data-state'), text: await b.textContent() };
}

/** Sends a message with the keyboard and waits for the answer to settle. */
async function ask(text) {
  const before = await page.locator('.msg.assistant').count();
  await page.fill('#chat-input', text);
  await page.press('#chat-input', 'Enter');
  const answer = page.locator('.msg.assistant').nth(before);
  await answer.waitFor();
  await until(async () => (await answer.getAttribute('data-state')) !== 'streaming', `the answer to "${text}"`, 60_000);
  return answer;
}

async function metrics(answer) {
  return answer.locator('.msg-metrics').evaluate((p) => ({ ...p.dataset, text: p.textContent }));
}

/** Records what a document's library entry shows while it caches. */
async function watchCaching(name) {
  await page.evaluate((docName) => {
    const seen = { progress: [], cells: [], bars: [] };
    window.__caching = seen;
    const look = () => {
      const li = [...document.querySelectorAll('.doc-item')].find((x) => x.querySelector('.doc-name').textContent === docName);
      if (!li) return;
      const p = li.querySelector('.doc-progress');
      if (p && seen.progress[seen.progress.length - 1] !== p.textContent) seen.progress.push(p.textContent);
      const letter = { cached: 'C', caching: 'g', failed: 'F', none: '.' };
      const cells = [...li.querySelectorAll('.part-cell')].map((c) => letter[c.dataset.state] || '?').join('');
      if (cells && seen.cells[seen.cells.length - 1] !== cells) seen.cells.push(cells);
      const bar = li.querySelector('progress');
      if (bar && bar.value > 0) seen.bars.push(bar.value);
    };
    new MutationObserver(look).observe(document.getElementById('doc-list'), { subtree: true, childList: true, attributes: true });
  }, name);
}

/** What watchCaching saw of a run over n parts: each part, the cells, the bar. */
function checkCachingSeen(seen, n) {
  const said = seen.progress.join(' | ');
  check(seen.progress.some((t) => new RegExp(`^part 1 of ${n} · \\d+%`).test(t)), `the first part was shown caching (${said})`);
  check(seen.progress.some((t) => new RegExp(`^part ${n} of ${n} · \\d+%`).test(t)), `the last part was shown caching (${said})`);
  check(seen.progress.some((t) => / left$/.test(t)), `the time left was shown (${said})`);
  check(seen.cells.some((c) => c.includes('g')), `a cell showed its part caching (${seen.cells})`);
  check(seen.cells.some((c) => /^C+[g.]/.test(c)), `cells filled part by part (${seen.cells})`);
  check(seen.bars.length > 0, 'the overall bar moved');
}

/**
 * Checks an answer's source line against what the server stored for it:
 * the part (1-based) holding harbour i, its pages or sections, the file.
 * Returns the line.
 */
async function checkSourceLine(answer, i, n) {
  const src = answer.locator('.msg-source');
  await src.waitFor();
  const sid = await page.evaluate(() => localStorage.getItem('kvchat.session'));
  const stored = (await api('GET', `/api/v1/session/${sid}/messages`)).body.messages.filter((m) => m.role === 'assistant').pop();
  const ri = stored.rag_info;
  check(ri && ri.method === 'rag' && ri.total_groups === n, `the answer was routed to a part (${JSON.stringify(ri)})`);
  const part = (await api('GET', `/api/v1/documents/${ri.document_id}/groups`)).body[ri.group_id];
  check(part.chunk_ids.includes(ri.matched_chunk_id) && new RegExp(`> Harbour ${i}$`).test(ri.matched_chunk_metadata.heading),
    `the server chose the part holding harbour ${i} (${JSON.stringify(ri.matched_chunk_metadata)})`);
  check(await src.getAttribute('data-method') === 'rag', 'the source says rag');
  check(await src.getAttribute('data-part') === String(ri.group_id + 1) && await src.getAttribute('data-total-parts') === String(n), 'the source names the part');
  const line = await src.locator('.msg-where').textContent();
  const want = `From ${part.where} of almanac.md, part ${ri.group_id + 1} of ${n}`;
  check(line === want, `the source line is "${want}" (${line})`);
  const first = await src.locator('.source').first().textContent();
  check(first.includes(`Harbour ${i}`) && first.includes(keeper(i)), `the first source names the section and quotes it (${first})`);
  return line;
}

/** Clicks an answer's first source; checks the highlighted passage holds harbour i's fact, in view. */
async function openSource(answer, i) {
  await answer.locator('.source').first().click();
  const hit = page.locator('#passage .passage-hit');
  await hit.waitFor({ state: 'visible' });
  const text = await hit.textContent();
  check(text.includes(keeper(i)) && text.includes(`${gulls(i)} gulls`), `the highlighted passage holds the fact (${text})`);
  check(await hit.locator('mark').count() === 1, 'the passage is marked');
  const inView = await page.evaluate(() => {
    const box = document.getElementById('passage-text').getBoundingClientRect();
    const r = document.querySelector('#passage .passage-hit').getBoundingClientRect();
    return r.top >= box.top - 1 && r.bottom <= box.bottom + 1 && r.top >= 0 && r.bottom <= window.innerHeight && r.right <= window.innerWidth;
  });
  check(inView, 'the highlighted passage is scrolled into view');
}

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

async function walk() {
  await step('the page loads, shows the running model and the random-weights banner', async () => {
    await page.goto(base + '/');
    await page.locator('#banner-random').waitFor({ state: 'visible' });
    check(/random weights/i.test(await page.textContent('#banner-random')), 'the banner names the random weights');
    await until(async () => /running/.test(await page.textContent('#model-pill')), 'the status pill to say running');
    await until(async () => /tiny\.gguf/.test(await page.inputValue('#model-select')), 'the model selector to show tiny.gguf');
    check((await page.textContent('#doc-list')).includes('No documents yet'), 'an empty library says so');
    await until(async () => /up to 3 MB each/.test(await page.textContent('#upload-hint')), 'the upload hint to give the configured limit');
    await shot('desktop-start');
  });

  await step('files are checked before sending; drag-and-drop and the picker both add files', async () => {
    const dt = await page.evaluateHandle(({ guide, evil }) => {
      const d = new DataTransfer();
      d.items.add(new File([guide], 'kv-guide.md', { type: 'text/markdown' }));
      d.items.add(new File([evil], 'evil.txt', { type: 'text/plain' }));
      return d;
    }, { guide: GUIDE, evil: EVIL });
    await page.dispatchEvent('#dropzone', 'dragenter', { dataTransfer: dt });
    check(await page.locator('#dropzone.over').count() === 1, 'the drop zone lights up while a file is dragged over it');
    await page.dispatchEvent('#dropzone', 'drop', { dataTransfer: dt });
    await page.setInputFiles('#file-input', [
      { name: 'almanac.md', mimeType: 'text/markdown', buffer: Buffer.from(ALMANAC) },
      { name: 'broken.pdf', mimeType: 'application/pdf', buffer: Buffer.from('%PDF-1.4\nthis is not a PDF body\n') },
      { name: 'tool.exe', mimeType: 'application/octet-stream', buffer: Buffer.from('MZ....') },
    ]);
    const items = page.locator('.pending-item');
    check(await items.count() === 5, `five files listed (got ${await items.count()})`);
    const rejected = page.locator('.pending-item[data-state="rejected"]');
    check(await rejected.count() === 1, 'exactly one file is rejected before sending');
    check(/tool\.exe[\s\S]*Unsupported type \.exe/.test(await rejected.textContent()), 'the .exe is rejected for its type');
    check(/4 files ready to upload, 1 rejected/.test(await page.textContent('#upload-status')), 'the status line counts ready and rejected files');
    check(!(await page.isDisabled('#upload-btn')), 'Upload is enabled');
  });

  await step('Upload sends the valid files; the server rejects the fake PDF inline', async () => {
    await page.click('#upload-btn');
    await until(async () => /Uploaded 3 documents/.test(await page.textContent('#upload-status')), 'the upload outcome', 60_000);
    const status = await page.textContent('#upload-status');
    check(await page.getAttribute('#upload-status', 'data-kind') === 'error', 'a rejected upload makes the status an error');
    check(/1 upload rejected: broken\.pdf: Text could not be extracted: The PDF is damaged/.test(status), `the status names the rejected file (${status})`);
    check(/broken\.pdf/.test(await page.textContent('.pending-item[data-state="failed"]')), 'the failed file is marked in the list');
    for (const name of ['kv-guide.md', 'evil.txt', 'almanac.md']) {
      await page.locator(sel.docItem(name)).waitFor();
      const b = await badge(name);
      check(b.state === 'none' && b.text === 'not cached', `${name} starts not cached (${b.text})`);
    }
    check(await page.locator('.doc-item').count() === 3, 'three documents in the library');
    const opts = await page.locator('#doc-select option').allTextContents();
    check(opts[0] === 'No document' && opts.length === 4, `the selector has "No document" and the three documents (${opts})`);
    check(await page.inputValue('#doc-select') === await docId('almanac.md'), 'the last uploaded document is selected');
    await shot('desktop-uploaded');
  });

  await step('selecting a document shows a preview of its first lines, as text', async () => {
    await page.selectOption('#doc-select', await docId('evil.txt'));
    await until(async () => /A plain third line/.test(await page.textContent('#preview-text')), 'the preview of evil.txt');
    check((await page.textContent('#preview-text')).includes('<script>'), 'markup in a document is shown as text');
    check(await page.locator('#preview-text img, #preview-text script').count() === 0, 'no element is made from document text');
    await page.click(`${sel.docItem('kv-guide.md')} .doc-name`);
    await until(async () => (await page.textContent('#preview-text')).startsWith('# The KV cache guide'), 'the preview of kv-guide.md');
    const meta = await page.textContent('#preview-meta');
    check(/first 10 of 62 lines/.test(meta), `the preview says how much it shows (${meta})`);
    check(await page.inputValue('#doc-select') === await docId('kv-guide.md'), 'clicking a library entry selects it');
  });

  await step('Cache prefills the selected document; its state goes from caching to cached in RAM', async () => {
    await page.evaluate(() => {
      window.__states = [];
      const seen = () => {
        const b = [...document.querySelectorAll('.doc-item')].find((li) => li.querySelector('.doc-name').textContent === 'kv-guide.md');
        const s = b && b.querySelector('.doc-cache').dataset.state;
        if (s && window.__states[window.__states.length - 1] !== s) window.__states.push(s);
        const label = b && b.querySelector('.doc-cache').textContent;
        if (label && /caching [1-9]\d*%/.test(label)) window.__progressSeen = label;
      };
      new MutationObserver(seen).observe(document.getElementById('doc-list'), { subtree: true, childList: true, attributes: true });
    });
    await page.click('#cache-btn');
    await until(async () => (await badge('kv-guide.md')).state === 'cached', 'kv-guide.md to be cached', 60_000);
    const states = await page.evaluate(() => window.__states);
    check(states.includes('caching') && states.indexOf('caching') < states.lastIndexOf('cached'), `caching was shown before cached (${states})`);
    check(await page.evaluate(() => window.__progressSeen), 'the caching progress was shown in percent');
    const b = await badge('kv-guide.md');
    check(/^cached · in RAM · \d[\d,]* tokens$/.test(b.text), `the badge says cached in RAM with a token count (${b.text})`);
    check(/cached in .* tokens, .* of KV cache/.test(await page.textContent('#upload-status')), 'the status line reports the caching');
    check(/kv-guide\.md — cached/.test(await page.locator('#doc-select option:checked').textContent()), 'the selector shows the cache state');
    check((await page.textContent('#doc-state')).startsWith('cached'), 'the badge beside the selector shows it too');
  });

  let firstQuestion = '';
  await step('Shift+Enter makes a new line; Enter sends; the answer streams in with its cache figures', async () => {
    await page.fill('#chat-input', 'first line');
    await page.press('#chat-input', 'Shift+Enter');
    await page.keyboard.type('second line');
    check(await page.inputValue('#chat-input') === 'first line\nsecond line', 'Shift+Enter inserted a new line');
    check(await page.locator('.msg').count() === 0, 'Shift+Enter did not send');
    await page.evaluate(() => {
      window.__renders = 0;
      new MutationObserver(() => {
        const a = document.querySelector('.msg.assistant[data-state="streaming"] .msg-body');
        if (a && a.textContent.length) window.__renders++;
      }).observe(document.getElementById('messages'), { subtree: true, childList: true, characterData: true });
    });
    firstQuestion = 'What does the guide say about line 7?';
    await page.fill('#chat-input', firstQuestion);
    const answer = await ask(firstQuestion);
    check(await answer.getAttribute('data-state') === 'done', `the answer completed (${await answer.getAttribute('data-state')}: ${await answer.textContent()})`);
    const renders = await page.evaluate(() => window.__renders);
    // Shown in its streaming state before it was done; how many renders
    // depends on how the pieces arrive (a fast answer can come in one read).
    check(renders >= 1, `the answer was shown while it streamed (${renders} partial renders)`);
    check((await answer.locator('.msg-body').textContent()).trim().length > 0, 'the answer has text');
    const m = await metrics(answer);
    check(Number(m.cachedTokens) > 0 && Number(m.cachedTokens) <= Number(m.promptTokens), `prompt tokens came from the cache (${m.text})`);
    check(Number(m.ttftMs) >= 0 && /TTFT/.test(m.text), `the time to first token is shown (${m.text})`);
    check(Number(m.tokensPerSecond) > 0 && /tokens\/s/.test(m.text), `the speed is shown (${m.text})`);
    check(/prompt tokens from cache/.test(m.text), 'the cache figure is spelled out');
    const from = await answer.locator('.msg-source').textContent();
    check(from === 'From the whole document (kv-guide.md)', `a short document's answer says quietly that it used all of it (${from})`);
    await until(async () => (await page.locator('.session-item').first().textContent()).includes(firstQuestion), 'the session list to show the new session');
    await shot('desktop-answer');
  });

  await step('Copy puts the answer on the clipboard', async () => {
    const answer = page.locator('.msg.assistant').last();
    await answer.locator('.copy-btn').click();
    await until(async () => (await answer.locator('.copy-btn').textContent()) === 'Copied', 'the copy confirmation');
    const copied = await page.evaluate(() => navigator.clipboard.readText());
    const sid = await page.evaluate(() => localStorage.getItem('kvchat.session'));
    const r = await api('GET', `/api/v1/session/${sid}/messages`);
    const stored = r.body.messages.filter((x) => x.role === 'assistant').pop().content;
    check(copied === stored, 'the clipboard holds the answer as stored');
  });

  await step('typing reads the question ahead: drafts at word boundaries, nothing shown; the toggle turns it off', async () => {
    const drafts = [];
    const onReq = (req) => { if (req.url().endsWith('/draft')) drafts.push(req.postDataJSON()); };
    page.on('request', onReq);
    const before = await page.locator('.msg').count();
    await page.fill('#chat-input', '');
    await page.click('#chat-input');
    await page.keyboard.type('What does the guide say about ', { delay: 15 });
    await until(async () => drafts.length > 0, 'a draft of the question being typed');
    check(drafts[0].message === 'What does the guide say about', `the draft carries the text so far (${JSON.stringify(drafts[0])})`);
    check(drafts.length === 1, `one draft for one pause at a word boundary (${drafts.length})`);
    check(await page.locator('.msg').count() === before, 'a draft shows nothing in the conversation');
    await page.uncheck('#drafts-toggle');
    await page.click('#chat-input');
    await page.keyboard.press('End');
    await page.keyboard.type('line 8 and ', { delay: 15 });
    await page.waitForTimeout(900);
    check(drafts.length === 1, `no draft while reading ahead is off (${drafts.length})`);
    await page.reload();
    await until(async () => !(await page.isChecked('#drafts-toggle')), 'the choice kept in this browser');
    await page.check('#drafts-toggle');
    page.off('request', onReq);
    await page.fill('#chat-input', '');
  });

  await step('Stop aborts a generation; the server keeps the partial answer as incomplete', async () => {
    // Stop is pressed the moment the first words show (answers are short)
    await page.evaluate(() => {
      const obs = new MutationObserver(() => {
        const a = document.querySelector('.msg.assistant[data-state="streaming"] .msg-body');
        const stop = document.getElementById('stop-btn');
        if (a && a.textContent.length && !stop.disabled) {
          obs.disconnect();
          window.__stopWasEnabled = true;
          stop.click();
        }
      });
      obs.observe(document.getElementById('messages'), { subtree: true, childList: true, characterData: true });
    });
    const answer = await ask('Tell me everything about every line, at length.');
    check(await page.evaluate(() => window.__stopWasEnabled) === true, 'Stop was enabled while the answer streamed');
    check(await answer.getAttribute('data-state') === 'stopped', `the answer is marked stopped (${await answer.getAttribute('data-state')})`);
    check(/stopped/.test(await answer.locator('.msg-metrics').textContent()), 'the figures say stopped');
    check(await page.isDisabled('#stop-btn') && !(await page.isDisabled('#send-btn')), 'Send is back, Stop is off');
    const sid = await page.evaluate(() => localStorage.getItem('kvchat.session'));
    await until(async () => {
      const r = await api('GET', `/api/v1/session/${sid}/messages`);
      const last = r.body.messages[r.body.messages.length - 1];
      return last.role === 'assistant' && last.incomplete === true;
    }, 'the server to store the stopped answer as incomplete');
  });

  await step('Start without reset restarts the engine with progress and outcome; the logs refresh by themselves', async () => {
    const before = (await api('GET', '/api/v1/model/status')).body;
    await page.evaluate(() => {
      window.__progress = [];
      new MutationObserver(() => window.__progress.push(`${document.getElementById('model-progress').dataset.kind}:${document.getElementById('model-progress').textContent}`))
        .observe(document.getElementById('model-progress'), { childList: true, characterData: true, subtree: true });
      window.__logUpdates = 0;
      new MutationObserver(() => window.__logUpdates++).observe(document.getElementById('log-status'), { childList: true, characterData: true, subtree: true });
    });
    check(!(await page.isChecked('#log-auto')), 'auto-refresh is off before the start');
    await page.click('#start-resume');
    await until(async () => (await page.getAttribute('#model-progress', 'data-kind')) === 'ok', 'the start outcome', 90_000);
    const progress = await page.evaluate(() => window.__progress);
    check(progress.some((p) => /^busy:Starting, keeping the KV cache… \d/.test(p)), `progress was shown while starting (${progress.slice(0, 3)})`);
    check(/running/i.test(await page.textContent('#model-progress')), `the outcome is shown (${await page.textContent('#model-progress')})`);
    check(await page.evaluate(() => window.__logUpdates) >= 2, 'the logs refreshed by themselves while the model started');
    await until(async () => /resumed/.test(await page.textContent('#log-view')), 'the new engine log in the viewer');
    await until(async () => {
      const s = (await api('GET', '/api/v1/model/status')).body;
      return s.status === 'running' && s.pid !== before.pid;
    }, 'a new engine process');
    await until(async () => /^cached · on disk/.test((await badge('kv-guide.md')).text), 'kv-guide.md to show cached on disk');
  });

  await step('Clear starts a new session; the same document is restored from disk', async () => {
    const oldSid = await page.evaluate(() => localStorage.getItem('kvchat.session'));
    await page.click('#clear-btn');
    check(await page.locator('.msg').count() === 0, 'Clear empties the conversation');
    check(await page.inputValue('#doc-select') === await docId('kv-guide.md'), 'the document stays selected');
    const answer = await ask('And about line 12?');
    check(await answer.getAttribute('data-state') === 'done', 'the answer completed');
    const m = await metrics(answer);
    check(m.cacheTier === 'disk' && Number(m.cachedTokens) > 0, `the prompt came from the disk cache (${m.text})`);
    check(/from cache \(on disk\)/.test(m.text), 'the figure says on disk');
    const newSid = await page.evaluate(() => localStorage.getItem('kvchat.session'));
    check(newSid && newSid !== oldSid, 'a new session id is used');
    await shot('desktop-disk-hit');
  });

  await step('a document whose cache entry the engine dropped shows as not cached, and why', async () => {
    const st = (await api('GET', '/api/v1/model/status')).body;
    const d = (await api('GET', '/api/v1/documents/list')).body.find((x) => x.filename === 'kv-guide.md');
    check(d && d.cache_status === 'cached' && d.cache.live === true, `the list reports the engine's entry (${JSON.stringify(d && d.cache)})`);
    const entry = `http://127.0.0.1:${st.port}/v1/cache/${d.cache.entry_id}`;
    const refused = await fetch(entry, { method: 'DELETE' });
    check(refused.status === 401, `the engine wants its key (${refused.status})`);
    const del = await fetch(entry, { method: 'DELETE', headers: { Authorization: `Bearer ${ENGINE_KEY}` } });
    check(del.status === 200, `the engine deleted the entry (${del.status})`);
    await page.click('#doc-refresh');
    await until(async () => (await badge('kv-guide.md')).state === 'none', 'kv-guide.md to be not cached once its entry is gone');
    const title = await page.getAttribute(`${sel.docItem('kv-guide.md')} .doc-cache`, 'title');
    check(/no longer holds it/.test(title), `the badge says why (${title})`);
  });

  await step('the model selector lists local and remote models and switches between them', async () => {
    const local = await page.locator('#model-select optgroup[label="Local models"] option').allTextContents();
    const remote = await page.locator('#model-select optgroup[label="Remote models"] option').allTextContents();
    check(local.some((o) => o.startsWith('tiny.gguf') && /serving/.test(o)), `the local list has the serving model (${local})`);
    check(remote.length === 1 && remote[0].startsWith('engine-direct (openai: tiny)'), `the remote list has the configured model (${remote})`);
    await page.selectOption('#model-select', 'engine-direct');
    await page.click('#model-switch');
    await until(async () => (await page.getAttribute('#model-progress', 'data-kind')) === 'ok', 'the switch outcome', 30_000);
    check(/Switched to the remote model/.test(await page.textContent('#model-progress')), 'the switch is reported');
    await until(async () => /engine-direct \(remote, openai\)/.test(await page.textContent('#model-pill')), 'the pill to name the remote model');
    const answer = await ask('Does a remote model answer too?');
    check(await answer.getAttribute('data-state') === 'done' && (await answer.locator('.msg-body').textContent()).trim(), 'the remote model answered');
    await page.selectOption('#model-select', 'tiny.gguf');
    await page.click('#model-switch');
    await until(async () => /Switched to the local model/.test(await page.textContent('#model-progress')), 'the switch back', 60_000);
    await until(async () => /running · tiny\.gguf/.test(await page.textContent('#model-pill')), 'the pill to name the local model again');
  });

  await step('several engines: the status panel lists them, the pill counts those answering', async () => {
    // the status of a kvchat over three engines (engine.endpoints), one down
    const real = (await api('GET', '/api/v1/model/status')).body;
    const engines = [
      { url: 'http://10.0.0.5:13141/v1', healthy: true, inflight: 2, error: null },
      { url: 'http://10.0.0.6:13141/v1', healthy: false, inflight: 0, error: 'The model server is not running' },
      { url: 'http://10.0.0.7:13141/v1', healthy: true, inflight: 0, error: null },
    ];
    await page.route('**/api/v1/model/status', (route) => route.fulfill({
      json: { ...real, status: 'running', message: '2 of 3 engines answering', pid: null, port: null, engines } }));
    await until(async () => /2 of 3 engines/.test(await page.textContent('#model-pill')), 'the pill to count the engines', 20_000);
    check(await page.getAttribute('#model-pill', 'data-state') === 'degraded', 'one engine down: the pill says degraded');
    check(/2 of 3 answering/.test(await page.textContent('#model-status dd[data-key="engines"]')), 'the panel counts them');
    check(/10\.0\.0\.6:13141 · down: The model server is not running/.test(await page.textContent('#model-status dd[data-key="engine-2"]')), 'a down engine says why');
    check(/10\.0\.0\.5:13141 · answering · 2 in flight/.test(await page.textContent('#model-status dd[data-key="engine-1"]')), 'an engine shows its load');
    await page.unroute('**/api/v1/model/status');
    await until(async () => !/engines/.test(await page.textContent('#model-pill')), 'the one engine again', 20_000);
  });

  let almanacId = '';
  let parts = [];
  await step('a long document shows its parts; caching shows each part, the overall progress and the time left', async () => {
    almanacId = await docId('almanac.md');
    parts = (await api('GET', `/api/v1/documents/${almanacId}/groups`)).body;
    const n = parts.length;
    check(n >= 4, `almanac.md is planned into several parts (${n})`);
    const item = page.locator(sel.docItem('almanac.md'));
    await until(async () => (await item.locator('.doc-parts-label').textContent()) === `${n} parts · 0 cached`, `almanac.md to show "${n} parts · 0 cached"`);
    check(await item.locator('.part-cell').count() === n, 'a cell per part');
    check(await page.locator(`${sel.docItem('kv-guide.md')} .doc-parts`).count() === 0, 'a short document shows no parts');
    await page.click(`${sel.docItem('almanac.md')} .doc-name`);
    await watchCaching('almanac.md');
    await page.click('#cache-btn');
    await until(async () => new RegExp(`almanac\\.md: ${n} of ${n} parts cached`).test(await page.textContent('#upload-status')), 'the caching outcome', 90_000);
    checkCachingSeen(await page.evaluate(() => window.__caching), n);
    await until(async () => (await item.locator('.doc-parts-label').textContent()) === `${n} parts · ${n} cached`, `almanac.md to show "${n} parts · ${n} cached"`);
    check(await item.locator('.part-cell[data-state="cached"]').count() === n, 'every cell says cached');
    // the run's last refresh settles the badges
    await until(async () => (await badge('almanac.md')).state === 'cached', 'the badge to say cached');
    check(new RegExp(`${n} parts`).test(await page.textContent('#doc-state')), 'the badge beside the selector counts the parts');
    check(await page.getAttribute('#upload-status', 'data-kind') === 'ok', 'the outcome is a success');
  });

  await step('a part that fails says so, with its error; the time left shows while the parts cache', async () => {
    const n = parts.length;
    const item = page.locator(sel.docItem('almanac.md'));
    // the server's parts list, as if part 2 had failed for a full disk
    const failedParts = parts.map((g, i) => (i === 1 ? { ...g, cached: false, status: 'failed', error: 'The disk is full (507)', tier: null }
      : { ...g, cached: true, status: 'cached' }));
    await page.route(`**/api/v1/documents/${almanacId}/groups`, (route) => route.fulfill({ json: failedParts }));
    // a caching stream that takes its time, as a large document's would
    const evs = [{ event: 'start', doc_id: almanacId },
      { event: 'init', doc_id: almanacId, total_groups: n, groups: parts.map((g) => ({ ...g, cached: false, status: 'none' })) },
      { event: 'progress', group_id: 0, status: 'caching', cached_count: 0, total_groups: n, percent: 12, done: 1200, total: 10000, eta_s: 18.4 },
      { event: 'progress', group_id: 0, status: 'cached', cached_count: 1, total_groups: n, percent: 25, done: 2500, total: 10000, eta_s: 15 },
      { event: 'progress', group_id: 1, status: 'caching', cached_count: 1, total_groups: n, percent: 31, done: 3100, total: 10000, eta_s: 12.2, pause: 1500 },
      { event: 'progress', group_id: 1, status: 'failed', cached_count: 1, total_groups: n, percent: 50, done: 5000, total: 10000, eta_s: 8, error: 'The disk is full (507)' },
      ...parts.slice(2).map((g, i) => ({ event: 'progress', group_id: g.group_id, status: 'cached', cached_count: 2 + i, total_groups: n, percent: 60 + i * 10, done: 6000, total: 10000, eta_s: 1 })),
      { event: 'complete', doc_id: almanacId, cached_groups: n - 1, total_groups: n, failed_groups: 1 },
      { event: 'error', status: 507, detail: 'The disk is full' }];
    await page.evaluate(({ id, evs }) => {
      window.__realFetch = window.fetch;
      window.fetch = async (url, opts) => {
        if (!String(url).includes(`/documents/cache/${id}`)) return window.__realFetch(url, opts);
        const enc = new TextEncoder();
        const body = new ReadableStream({
          async start(c) {
            for (const { pause, ...e } of evs) {
              c.enqueue(enc.encode(`data: ${JSON.stringify(e)}\n\n`));
              await new Promise((r) => setTimeout(r, pause || 30));
            }
            c.close();
          },
        });
        return new Response(body, { status: 200, headers: { 'Content-Type': 'text/event-stream' } });
      };
    }, { id: almanacId, evs });
    try {
      await item.locator('button', { hasText: 'Re-cache' }).click();
      await until(async () => /about 12 s left/.test(await item.locator('.doc-progress').textContent()), 'the time left while part 2 caches');
      const text = await item.locator('.doc-progress').textContent();
      check(text === `part 2 of ${n} · 31% · about 12 s left`, `the part, the percent and the time left are shown (${text})`);
      check(await item.locator('progress').getAttribute('value') === '31', 'the overall bar follows the percent');
      check(await item.locator('.part-cell[data-state="cached"]').count() === 1 && await item.locator('.part-cell[data-state="caching"]').count() === 1,
        'one cell cached, one caching');
      check(/part 2 of \d+, 31% — about 12 s left/.test(await page.textContent('#upload-status')), 'the status line says it too');
      await shot('desktop-long-caching');
      await until(async () => (await page.getAttribute('#upload-status', 'data-kind')) === 'error', 'the caching outcome');
      const status = await page.textContent('#upload-status');
      check(status === `almanac.md: ${n - 1} of ${n} parts cached, 1 failed (The disk is full).`, `the outcome counts the parts (${status})`);
      await until(async () => (await item.locator('.doc-parts-label').textContent()) === `${n} parts · ${n - 1} cached · 1 failed`, 'the failed part in the count');
      check(await item.locator('.part-cell[data-state="failed"]').count() === 1, 'one cell says failed');
      const err = await item.locator('.doc-part-errors').textContent();
      check(err === `Part 2 (${parts[1].where}) failed: The disk is full (507)`, `the failed part says why (${err})`);
      await until(async () => (await badge('almanac.md')).state === 'failed', 'the badge to say a part failed');
      await shot('desktop-long-failed');
    } finally {
      await page.evaluate(() => { window.fetch = window.__realFetch; });
      await page.unroute(`**/api/v1/documents/${almanacId}/groups`);
    }
    await page.click('#doc-list-refresh');
    await until(async () => (await item.locator('.doc-parts-label').textContent()) === `${n} parts · ${n} cached`, 'the real parts back after a refresh');
  });

  await step('an answer from a long document says which part and section it came from; its source shows the passage, highlighted', async () => {
    const n = parts.length;
    await page.click('#clear-btn');
    const answer = await ask(`Who is ${keeper(97)}?`);
    check(await answer.getAttribute('data-state') === 'done', 'the answer completed');
    const line = await checkSourceLine(answer, 97, n);
    await openSource(answer, 97);
    check(await page.locator('#passage .passage-chunk').count() === 3, 'the passage comes with the chunks before and after it');
    const meta = await page.textContent('#preview-meta');
    check(/almanac\.md: Harbour 97/.test(meta), `the preview names the document and section (${meta})`);
    await shot('desktop-long-source');
    await page.click('#passage-later');
    await until(async () => (await page.locator('#passage .passage-chunk').count()) === 4, 'one more chunk after Later');
    await page.click('#passage-close');
    check(await page.isHidden('#passage') && await page.isVisible('#preview-text'), 'Close goes back to the first lines');
    // a stored answer says the same once the page is reloaded
    await page.reload();
    const again = page.locator('.msg.assistant').last();
    await until(async () => (await again.locator('.msg-where').count()) === 1, 'the reopened answer\'s source line');
    check(await again.locator('.msg-where').textContent() === line, 'the stored answer names the same part');
    check(await again.locator('.source').count() === await answer.locator('.source').count(), 'and the same sources');
    await page.click(`${sel.docItem('kv-guide.md')} .doc-name`);
  });

  await step('a chat about two documents: the answer names the one it came from; the session keeps both', async () => {
    const guideId = await docId('kv-guide.md');
    check(await page.inputValue('#doc-select') === guideId, 'kv-guide.md is selected');
    await page.locator('#doc-more').waitFor({ state: 'visible' });
    await page.selectOption('#doc-add', almanacId);
    await until(async () => (await page.locator('#doc-extra .chip').allTextContents()).join() === 'almanac.md×', 'almanac.md beside kv-guide.md');
    check(!(await page.locator('#doc-add option').allTextContents()).includes('almanac.md'), 'an added document leaves the add list');
    await page.click('#clear-btn');
    const answer = await ask(`Who is ${keeper(12)}?`);
    check(await answer.getAttribute('data-state') === 'done', 'the answer completed');
    const sid = await page.evaluate(() => localStorage.getItem('kvchat.session'));
    const s = (await api('GET', `/api/v1/session/${sid}`)).body;
    check(JSON.stringify(s.document_ids) === JSON.stringify([guideId, almanacId]), `the session has both documents, in order (${JSON.stringify(s.document_ids)})`);
    const stored = (await api('GET', `/api/v1/session/${sid}/messages`)).body.messages.pop();
    check(stored.rag_info && stored.rag_info.document_id === almanacId, `the question was routed to almanac.md (${JSON.stringify(stored.rag_info)})`);
    const line = await answer.locator('.msg-where').textContent();
    check(new RegExp(`of almanac\\.md, part ${stored.rag_info.group_id + 1} of ${parts.length}$`).test(line), `the answer names almanac.md and its part (${line})`);
    await page.reload();
    await until(async () => (await page.locator('#doc-extra .chip').allTextContents()).join() === 'almanac.md×', 'both documents back after a reload');
    check(await page.inputValue('#doc-select') === guideId, 'the first is selected again');
    await shot('desktop-two-documents');
    await page.click('#doc-extra .chip-remove');
    await until(async () => (await page.locator('#doc-extra .chip').count()) === 0, 'almanac.md to leave the chat');
    check(/Next questions use kv-guide\.md\./.test(await page.textContent('#chat-status')), 'the chat says which document the next questions use');
  });

  await step('the library marks the chat\'s documents; its toggle adds or takes one out as the chips do, on a phone too', async () => {
    const guideId = await docId('kv-guide.md');
    const evilId = await docId('evil.txt');
    await chatUses([guideId], 'kv-guide.md alone in the chat and marked');
    const mark = page.locator(`${sel.docItem('kv-guide.md')} .doc-in-chat`);
    check(await mark.textContent() === 'in this chat' && await mark.isVisible(), 'the mark says "in this chat"');
    check(await chatToggle('almanac.md').getAttribute('aria-label') === 'Add almanac.md to this chat'
      && await chatToggle('almanac.md').textContent() === '+ Add to chat', 'a document out of the chat offers to add it');
    // the second document, added from the library
    await chatToggle('almanac.md').click();
    await chatUses([guideId, almanacId], 'almanac.md added from the library');
    check((await page.locator('#doc-extra .chip').allTextContents()).join() === 'almanac.md×', 'its chip shows beside the selector');
    check(!(await page.locator('#doc-add option').allTextContents()).includes('almanac.md'), 'it leaves the add list');
    check(await chatToggle('almanac.md').getAttribute('aria-label') === 'Remove almanac.md from this chat'
      && await chatToggle('almanac.md').textContent() === 'Remove from chat', 'the toggle now offers to take it out');
    check(await page.evaluate(() => document.activeElement.dataset.focusKey) === `chat-${almanacId}`, 'the toggle keeps the focus');
    check(/almanac\.md is in this chat now \(2 documents\)/.test(await page.textContent('#upload-status')), 'the status line says so');
    await shot('desktop-library-in-chat');
    // a third, added and taken out with the selector and its chip: the mark follows
    await page.selectOption('#doc-add', evilId);
    await chatUses([guideId, almanacId, evilId], 'evil.txt marked once added with the selector');
    await page.click(`#doc-extra .chip[data-doc-id="${evilId}"] .chip-remove`);
    await chatUses([guideId, almanacId], 'evil.txt unmarked once its chip is removed');
    // taken out from the library: the chip goes too
    await chatToggle('almanac.md').click();
    await chatUses([guideId], 'almanac.md taken out from the library, chip and mark');
    check((await page.locator('#doc-add option').allTextContents()).includes('almanac.md'), 'it is back in the add list');
    // Clear starts a new session with the same documents: so do the marks
    await chatToggle('almanac.md').click();
    await chatUses([guideId, almanacId], 'almanac.md back in the chat');
    await page.click('#clear-btn');
    check(await page.locator('.msg').count() === 0, 'Clear empties the conversation');
    await chatUses([guideId, almanacId], 'the documents and their marks to stay after Clear');
    // a session opened (or reloaded) brings its documents and their marks
    await chatToggle('almanac.md').click();
    await chatUses([guideId], 'kv-guide.md alone again');
    await page.click('#session-refresh');
    await page.locator('.session-item', { hasText: `Who is ${keeper(12)}?` }).locator('.session-open').click();
    await chatUses([guideId, almanacId], 'the marks to follow the reopened session\'s documents');
    await page.reload();
    await chatUses([guideId, almanacId], 'the marks back after a reload');
    // the first document taken out: the next one becomes the first
    await chatToggle('kv-guide.md').click();
    await chatUses([almanacId], 'almanac.md to be the chat\'s document once kv-guide.md is out');
    await until(async () => (await page.textContent('#preview-text')).startsWith('# The Lighthouse Almanac'), 'the preview of almanac.md');
    // on a phone: the toggle works from the Documents tab, which stays open, and fits
    await page.setViewportSize({ width: 390, height: 844 });
    await page.click('.tab[data-view="docs"]');
    await chatToggle('kv-guide.md').click();
    await chatUses([almanacId, guideId], 'kv-guide.md added from the library on a phone');
    check(await page.isVisible('#panel-docs'), 'the library stays in view');
    check(await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth) <= 0, 'no horizontal overflow on documents');
    for (const name of ['kv-guide.md', 'evil.txt', 'almanac.md']) {
      const box = await chatToggle(name).boundingBox();
      const item = await page.locator(sel.docItem(name)).boundingBox();
      check(box && box.height >= 28 && box.x >= item.x && box.x + box.width <= item.x + item.width, `${name}'s toggle fits its entry (${JSON.stringify(box)})`);
    }
    await page.locator(sel.docItem('almanac.md')).scrollIntoViewIfNeeded();
    await shot('phone-library-in-chat');
    // back to kv-guide.md alone, as the next steps expect
    await chatToggle('almanac.md').click();
    await chatUses([guideId], 'kv-guide.md alone at the end');
    await page.click('.tab[data-view="chat"]');
    await page.setViewportSize({ width: 1366, height: 860 });
  });

  await step('Stop stops the model; a question then fails with a clear error and a way out', async () => {
    await page.click('#stop-model');
    await until(async () => /stopped/i.test(await page.textContent('#model-progress')) && (await page.getAttribute('#model-progress', 'data-kind')) === 'ok', 'the stop outcome', 30_000);
    await until(async () => /stopped/.test(await page.textContent('#model-pill')), 'the pill to say stopped');
    check(await page.isDisabled('#stop-model'), 'Stop is disabled when the model is stopped');
    const answer = await ask('Is anyone there?');
    check(await answer.getAttribute('data-state') === 'error', 'the answer is an error');
    const err = await answer.locator('.msg-error').textContent();
    check(/not running/.test(err), `the error says the model is not running (${err})`);
    check(await answer.locator('.msg-error button', { hasText: 'Start the model server' }).count() === 1, 'the error offers to start the model');
    check(await page.isVisible('#banner-random'), 'the banner stays while the model is stopped');
    await shot('desktop-engine-down');
  });

  await step('the logs viewer filters with a regular expression and reports a bad one', async () => {
    await page.fill('#log-filter', 'stopped|shutting');
    await page.click('#log-refresh');
    await until(async () => /matching/.test(await page.textContent('#log-status')), 'the filtered logs');
    const lines = (await page.textContent('#log-view')).split('\n').filter(Boolean);
    check(lines.length > 0 && lines.every((l) => /stopped|shutting/.test(l)), `every line matches the filter (${lines.length} lines)`);
    await page.fill('#log-filter', '((');
    await page.click('#log-refresh');
    await until(async () => /Invalid filter/.test(await page.textContent('#log-status')), 'the invalid-filter error');
    check(await page.getAttribute('#log-filter', 'aria-invalid') === 'true', 'the filter is marked invalid');
    await page.fill('#log-filter', '');
    await page.click('#log-refresh');
    await until(async () => !(await page.getAttribute('#log-filter', 'aria-invalid')), 'the filter to be valid again');
    await shot('desktop-logs');
  });

  await step('Start with reset restarts the engine and empties the cache states', async () => {
    await page.click('#start-reset');
    await until(async () => (await page.getAttribute('#model-progress', 'data-kind')) === 'ok', 'the start outcome', 90_000);
    await until(async () => /running/.test(await page.textContent('#model-pill')), 'the pill to say running');
    await until(async () => (await badge('kv-guide.md')).state === 'none', 'kv-guide.md to be not cached after a reset');
  });

  await step('model output cannot inject markup; markdown still renders', async () => {
    const evil = [
      'Here is a table:\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n',
      '<img src=x onerror="window.__xss = 1"> <script>window.__xss = 2</script>',
      '\n\n```\nint main(void) { return 0; }\n```\n\n- one\n- two\n\n[click](javascript:window.__xss=3) <a href="javascript:window.__xss=4">x</a>',
      '<iframe src="/"></iframe><svg><script>window.__xss=5</script></svg><div style="position:fixed" onclick="window.__xss=6">box</div>',
    ];
    const full = evil.join('');
    const sse = evil.map((c) => `data: ${JSON.stringify({ chunk: c, done: false })}\n\n`).join('')
      + `data: ${JSON.stringify({ chunk: '', done: true, full_response: full, usage: { prompt_tokens: 10, completion_tokens: 4, cached_tokens: 0 }, timings: { ttft_ms: 5, predicted_per_second: 50 }, finish_reason: 'stop' })}\n\n`;
    await page.route('**/messages/stream', (route) => route.fulfill({ status: 200, contentType: 'text/event-stream', body: sse }));
    const answer = await ask('Show me something dangerous');
    await page.unroute('**/messages/stream');
    const body = answer.locator('.msg-body');
    check(await body.locator('table td').count() === 2, 'the table rendered');
    check(await body.locator('pre code').count() === 1 && await body.locator('li').count() === 2, 'code and list rendered');
    check(await body.locator('script, iframe, img, svg, [onerror], [onclick], [style]').count() === 0, 'no script, frame, image, handler or style was made');
    const shown = await body.textContent();
    check(shown.includes('<img src=x onerror="window.__xss = 1">') && shown.includes('<script>'), 'raw HTML in an answer is shown as text');
    const hrefs = await body.locator('a').evaluateAll((as) => as.map((a) => a.getAttribute('href') || ''));
    check(hrefs.every((href) => !/^javascript:/i.test(href)), `no javascript: link (${hrefs})`);
    await body.click();
    check(await page.evaluate(() => window.__xss) === undefined, 'no injected code ran');
    check(await page.evaluate(() => window.__xssPreview) === undefined, 'no code from the document ran');
  });

  await step('past sessions reopen with their answers and figures; sessions and documents can be deleted', async () => {
    await page.click('#session-refresh');
    const item = page.locator('.session-item', { hasText: firstQuestion });
    await item.locator('.session-open').click();
    await until(async () => (await page.locator('.msg.user').first().textContent()).includes(firstQuestion), 'the reopened conversation');
    check(await page.locator('.msg.assistant').count() === 2, 'both answers of that session are back');
    const m = await metrics(page.locator('.msg.assistant').first());
    check(Number(m.cachedTokens) > 0, `the stored answer keeps its cache figure (${m.text})`);
    check(/stopped|incomplete/.test(await page.locator('.msg.assistant').last().locator('.msg-metrics').textContent()), 'the stopped answer is marked');
    check(await page.inputValue('#doc-select') === await docId('kv-guide.md'), 'the session\'s document is selected again');
    await shot('desktop-session-reopened');

    const count = await page.locator('.session-item').count();
    const del = item.locator('button', { hasText: 'Delete' });
    await del.click();
    check(/Confirm/.test(await item.locator('button.armed').textContent()), 'Delete asks for confirmation');
    await item.locator('button.armed').click();
    await until(async () => (await page.locator('.session-item').count()) === count - 1, 'the session to disappear');
    check(await page.locator('.msg').count() === 0, 'deleting the open session clears the conversation');

    // the chat's first document deleted: the next one it uses takes its place
    const guideId = await docId('kv-guide.md');
    const evilId = await docId('evil.txt');
    await page.click(`${sel.docItem('evil.txt')} .doc-name`);
    await chatToggle('kv-guide.md').click();
    await chatUses([evilId, guideId], 'evil.txt first and kv-guide.md beside it');
    const evilItem = page.locator(sel.docItem('evil.txt'));
    await evilItem.locator('button', { hasText: 'Delete' }).click();
    await evilItem.locator('button.armed').click();
    await until(async () => (await page.locator(sel.docItem('evil.txt')).count()) === 0, 'evil.txt to disappear');
    const opts = await page.locator('#doc-select option').allTextContents();
    check(!opts.some((o) => o.startsWith('evil.txt')), 'the selector lost it too');
    await chatUses([guideId], 'kv-guide.md to take the deleted document\'s place, chip and mark');
  });

  await step('every control has a name and Tab reaches the main ones', async () => {
    const unnamed = await page.evaluate(() => [...document.querySelectorAll('button, input, select, textarea')]
      .filter((e) => e.offsetParent !== null || e.id === 'file-input')
      .filter((e) => {
        const label = e.getAttribute('aria-label') || (e.id && document.querySelector(`label[for="${e.id}"]`)?.textContent) || e.closest('label')?.textContent || e.textContent;
        return !label || !label.trim();
      }).map((e) => e.outerHTML.slice(0, 80)));
    check(unnamed.length === 0, `controls without a name: ${unnamed.join(', ')}`);
    await page.evaluate(() => document.activeElement && document.activeElement.blur());
    await page.locator('body').focus();
    const reached = new Set();
    for (let i = 0; i < 120; i++) {
      await page.keyboard.press('Tab');
      const id = await page.evaluate(() => document.activeElement && (document.activeElement.id || document.activeElement.className));
      if (id) reached.add(id);
    }
    const want = ['file-input', 'cache-btn', 'doc-select', 'doc-refresh', 'chat-input', 'send-btn', 'clear-btn',
      'model-select', 'start-reset', 'start-resume', 'log-filter', 'log-refresh', 'log-auto'];
    const missing = want.filter((w) => !reached.has(w));
    check(missing.length === 0, `Tab did not reach: ${missing.join(', ')}`);
    const fileLabelRing = await page.evaluate(() => {
      document.getElementById('file-input').focus();
      return getComputedStyle(document.querySelector('label[for="file-input"]')).outlineStyle;
    });
    check(fileLabelRing !== 'none', 'the hidden file input shows its focus on its button');
  });

  await step('phone width: one section at a time, picked by tabs, nothing wider than the screen', async () => {
    await page.setViewportSize({ width: 390, height: 844 });
    await page.waitForTimeout(200);
    check(await page.isVisible('.tabs'), 'the tabs show on a phone');
    check(await page.isVisible('#panel-chat') && !(await page.isVisible('#panel-docs')), 'the chat shows first');
    const over = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    check(over <= 0, `no horizontal overflow on the chat (${over}px)`);
    const box = await page.locator('#send-btn').boundingBox();
    check(box && box.y + box.height <= 844, 'the Send button is on screen');
    await ask('Short question from a phone');
    await shot('phone-chat');
    await page.click('.tab[data-view="docs"]');
    check(await page.isVisible('#panel-docs') && !(await page.isVisible('#panel-chat')), 'the Documents tab shows the documents');
    check(await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth) <= 0, 'no horizontal overflow on documents');
    await shot('phone-documents');
    await page.click('.tab[data-view="model"]');
    check(await page.isVisible('#panel-model'), 'the Model tab shows the model and logs');
    check(await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth) <= 0, 'no horizontal overflow on model and logs');
    await shot('phone-model');
    await page.click('.tab[data-view="chat"]');
    await page.click('#banner-random-hide');
    check(!(await page.isVisible('#banner-random')), 'the random-weights notice can be hidden');
    check(/random weights/.test(await page.textContent('#model-pill')), 'the status pill still says random weights');
  });

  await step('phone width: a long document cached part by part; an answer\'s source opened in place', async () => {
    const n = parts.length;
    await page.click('.tab[data-view="docs"]');
    const item = page.locator(sel.docItem('almanac.md'));
    // the engine was started with reset: no part is cached any more
    await until(async () => (await item.locator('.doc-parts-label').textContent()) === `${n} parts · 0 cached`, 'almanac.md to show no part cached');
    await watchCaching('almanac.md');
    await item.locator('button', { hasText: /^(Cache|Re-cache)$/ }).click();
    await until(async () => new RegExp(`almanac\\.md: ${n} of ${n} parts cached`).test(await page.textContent('#upload-status')), 'the caching outcome', 90_000);
    checkCachingSeen(await page.evaluate(() => window.__caching), n);
    await until(async () => (await item.locator('.doc-parts-label').textContent()) === `${n} parts · ${n} cached`, 'every part cached');
    check(await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth) <= 0, 'no horizontal overflow on documents');
    await shot('phone-long-cached');
    await item.locator('.doc-name').click();
    check(await page.isVisible('#panel-chat'), 'choosing the document goes to the chat');
    await page.click('#clear-btn');
    const answer = await ask(`Who is ${keeper(40)}?`);
    check(await answer.getAttribute('data-state') === 'done', 'the answer completed');
    await checkSourceLine(answer, 40, n);
    await openSource(answer, 40);
    check(await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth) <= 0, 'no horizontal overflow with the passage open');
    await shot('phone-long-source');
    await page.click('#passage-close');
  });

  await step('dark mode follows the system', async () => {
    const light = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
    await page.emulateMedia({ colorScheme: 'dark' });
    const dark = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
    check(light !== dark, `the background changes (${light} → ${dark})`);
    await shot('phone-chat-dark');
    await page.setViewportSize({ width: 1366, height: 860 });
    await shot('desktop-dark');
    await page.emulateMedia({ colorScheme: 'light' });
  });

  await step('a medium-width window shows two columns', async () => {
    await page.setViewportSize({ width: 1000, height: 760 });
    await page.waitForTimeout(200);
    const docs = await page.locator('#panel-docs').boundingBox();
    const chat = await page.locator('#panel-chat').boundingBox();
    check(docs && chat && chat.x > docs.x + docs.width - 1, 'the chat is beside the documents');
    check(await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth) <= 0, 'no horizontal overflow');
    await shot('medium');
    await page.setViewportSize({ width: 1366, height: 860 });
  });

  await step('losing the server shows a banner', async () => {
    await stopServer();
    await page.locator('#banner-conn').waitFor({ state: 'visible', timeout: 20_000 });
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
  if (engineWasPid) {
    await until(async () => !alive(engineWasPid), 'the engine to exit with kvchat', 10_000).catch(() => {
      console.error(`e2e: engine pid ${engineWasPid} still running after kvchat stopped: killing it`);
      try { process.kill(engineWasPid, 'SIGKILL'); } catch { /* gone */ }
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
  console.error(`e2e: screenshots in ${args.screenshots}; last kvchat output:\n${serverLog.split('\n').slice(-40).join('\n')}`);
} finally {
  await cleanup();
  clearTimeout(watchdog);
}
log(failed ? `e2e: failed after ${steps.length} of the steps` : `e2e: all ${steps.length} steps passed`);
process.exit(failed ? 1 : 0);
