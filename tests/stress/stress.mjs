// stress.mjs — load and abuse test of a running kvchat (make stress).
//
//   node stress.mjs --port N --engine-port N --engine-key KEY --pid PID
//                   --tmp DIR --timeout S [--max-tokens N] [--phases 1a,3,...]
//                   [--rounds N] [--log FILE]
//
// Runs against a kvchat that scripts/stress started with the tiny model, a
// short server.timeout (S) and a known engine key. The phases run one after
// another; throughout, /health is probed every 100 ms on a new connection
// from 127.0.0.1, and the memory, descriptors and threads of kvchat and of
// kvchat-engine are sampled from /proc every 200 ms:
//
//   1a idle       TCP connections that send nothing: 300 from 127.0.0.2 (over
//                 the per-address limit), 40 from 127.0.0.1 (the probes'
//                 own address, under its limit); a few chats meanwhile
//   1b all idle   60 idle connections from each of 9 addresses (540, over
//                 server.max_connections): how long new clients wait
//   2a slow       25 requests whose headers, 25 whose body, arrive at one
//                 byte per second (slowloris)
//   2b all slow   60 slow bodies from each of 9 addresses: one byte every
//                 2 s, under the idle timeout, over the least body rate
//   3  chats      100 streaming chats, 20 at a time, half of the clients
//                 hang up after the first token; then no chat may be left
//                 active and a fresh chat must work
//   4  uploads    8 generated texts of 5-20 MB at once and 4 small ones,
//                 multipart/form-data; chats meanwhile
//   5  patterns   hostile and invalid log search patterns, one by one and
//                 all at once, over a log seeded with long lines
//   6  leaks      three rounds (--rounds) of the same mix (idle and slow connections,
//                 chats with hang-ups, uploads, patterns): descriptors,
//                 memory and threads after each
//
// It prints a table per phase and a summary, and exits 1 when the server
// or its engine died, a chat stayed active or a chat after the abuse failed,
// or a hostile pattern got no answer or a 5xx; otherwise 0. What the run
// shows is not defended (connections the server never closes, an answer
// that is not the API's JSON error, a hung-up chat without its answer) is
// listed at the end without failing the run. Latencies are reported, never
// judged: the machine is shared and noisy.
//
// Only Node's built-in modules are used.
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';

/* ---- arguments ---- */

function parseArgs(argv) {
  const a = { port: 0, 'engine-port': 0, 'engine-key': '', pid: 0, tmp: '', timeout: 0, 'max-tokens': 16,
              phases: 'all', rounds: 3, log: '' };
  for (let i = 0; i < argv.length; i += 2) {
    const k = argv[i].replace(/^--/, '');
    if (!(k in a) || i + 1 >= argv.length) throw new Error(`unknown or incomplete argument ${argv[i]}`);
    a[k] = typeof a[k] === 'number' ? Number(argv[i + 1]) : argv[i + 1];
  }
  for (const k of ['port', 'engine-port', 'pid', 'timeout'])
    if (!(a[k] > 0)) throw new Error(`--${k} is required`);
  if (!a.tmp) throw new Error('--tmp is required');
  return a;
}

const ARGS = parseArgs(process.argv.slice(2));
if (ARGS.log) {
  // everything printed also goes to --log FILE
  fs.writeFileSync(ARGS.log, '');
  for (const k of ['log', 'error']) {
    const orig = console[k].bind(console);
    console[k] = (...a) => {
      orig(...a);
      fs.appendFileSync(ARGS.log, `${a.join(' ')}\n`);
    };
  }
}
const PORT = ARGS.port;
const HOST = '127.0.0.1';
const API = '/api/v1';
const TIMEOUT_S = ARGS.timeout;
const only = ARGS.phases === 'all' ? null : ARGS.phases.split(','); // phases to run

const now = () => performance.now();
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const failures = []; // what makes the run fail (exit 1)
const findings = []; // what is not defended, reported without failing the run
function finding(msg) {
  findings.push(msg);
  console.log(`  NOTE: ${msg}`);
}
function fail(msg) {
  failures.push(msg);
  console.log(`  FAILED: ${msg}`);
}

/* ---- figures ---- */

function pct(xs, p) {
  if (!xs.length) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))];
}
const fmtMs = (x) => (Number.isFinite(x) ? (x >= 1000 ? `${(x / 1000).toFixed(2)} s` : `${x.toFixed(1)} ms`) : '-');
const fmtMB = (kb) => (Number.isFinite(kb) ? `${(kb / 1024).toFixed(1)} MB` : '-');

function table(rows, indent = '  ') {
  const w = [];
  for (const r of rows) r.forEach((c, i) => (w[i] = Math.max(w[i] || 0, String(c).length)));
  const line = (r) => indent + r.map((c, i) => (i === 0 ? String(c).padEnd(w[i]) : String(c).padStart(w[i]))).join('  ');
  const out = [line(rows[0]), indent + w.map((n) => '-'.repeat(n)).join('  ')];
  for (const r of rows.slice(1)) out.push(line(r));
  console.log(out.join('\n'));
}

/* ---- HTTP ---- */

// One request on a new connection. Resolves {status, body, ms} or
// {status: 0, error, ms}; never rejects.
function request({ method = 'GET', path, headers = {}, body = null, port = PORT, localAddress = HOST,
                   timeoutMs = 30000 }) {
  return new Promise((resolve) => {
    const t0 = now();
    let done = false;
    const finish = (r) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      resolve({ ...r, ms: now() - t0 });
    };
    const h = { ...headers };
    if (body !== null) {
      h['Content-Type'] = h['Content-Type'] || 'application/json';
      h['Content-Length'] = Buffer.byteLength(body);
    }
    const req = http.request({ host: HOST, port, method, path, headers: h, localAddress, agent: false }, (res) => {
      const parts = [];
      res.on('data', (d) => parts.push(d));
      res.on('end', () => finish({ status: res.statusCode, body: Buffer.concat(parts).toString() }));
      res.on('error', (e) => finish({ status: 0, error: e.code || e.message }));
    });
    const timer = setTimeout(() => {
      finish({ status: 0, error: 'timeout' });
      req.destroy();
    }, timeoutMs);
    req.on('error', (e) => finish({ status: 0, error: e.code || e.message }));
    if (body !== null) req.write(body);
    req.end();
  });
}

function json(s) {
  try {
    return JSON.parse(s);
  } catch {
    return null;
  }
}

// A streaming chat: a new session, then one message streamed. hangUp: the
// client goes away after the first token. Resolves {ok, ttft, total,
// tokens, sessionId, error}.
async function chat({ message = 'Tell me about the harbor and the ferries.', hangUp = false,
                      localAddress = HOST, timeoutMs = 120000 } = {}) {
  const s = await request({ method: 'POST', path: `${API}/session`, body: '{}', localAddress });
  const sid = s.status === 201 || s.status === 200 ? json(s.body)?.session_id : null;
  if (!sid) return { ok: false, error: `session: ${s.status || s.error}` };
  return new Promise((resolve) => {
    const t0 = now();
    let ttft = NaN;
    let tokens = 0;
    let buf = '';
    let done = false;
    const finish = (r) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      resolve({ ttft, total: now() - t0, tokens, sessionId: sid, ...r });
    };
    const body = JSON.stringify({ message });
    const req = http.request({
      host: HOST, port: PORT, method: 'POST', path: `${API}/session/${sid}/messages/stream`, localAddress,
      agent: false,
      headers: { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body),
                 Accept: 'text/event-stream' },
    }, (res) => {
      if (res.statusCode !== 200) {
        res.resume();
        finish({ ok: false, error: `stream: ${res.statusCode}` });
        return;
      }
      res.setEncoding('utf8');
      res.on('data', (d) => {
        buf += d;
        let i;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const ev = buf.slice(0, i);
          buf = buf.slice(i + 2);
          const line = ev.split('\n').find((l) => l.startsWith('data:'));
          if (!line) continue; // heartbeat
          const e = json(line.slice(5).trim());
          if (!e) continue;
          if (e.error) {
            finish({ ok: false, error: `event: ${e.error}` });
            req.destroy();
            return;
          }
          if (e.chunk) {
            tokens++;
            if (Number.isNaN(ttft)) ttft = now() - t0;
            if (hangUp) {
              finish({ ok: true, hungUp: true });
              req.destroy();
              return;
            }
          }
          if (e.done) {
            finish({ ok: typeof e.full_response === 'string' && e.full_response.length > 0,
                     error: e.full_response ? undefined : 'empty answer' });
            req.destroy();
            return;
          }
        }
      });
      res.on('end', () => finish({ ok: false, error: 'stream ended before done' }));
      res.on('error', (e) => finish({ ok: false, error: e.code || e.message }));
    });
    const timer = setTimeout(() => {
      finish({ ok: false, error: 'timeout' });
      req.destroy();
    }, timeoutMs);
    req.on('error', (e) => finish({ ok: false, error: e.code || e.message }));
    req.end(body);
  });
}

async function metrics(port = PORT, key = '') {
  const r = await request({ path: '/metrics', port, headers: key ? { Authorization: `Bearer ${key}` } : {},
                            timeoutMs: 10000 });
  const m = {};
  if (r.status !== 200) return null;
  for (const line of r.body.split('\n')) {
    const x = /^([a-z_]+(?:\{[^}]*\})?) ([-0-9.e+]+)$/.exec(line);
    if (x) m[x[1]] = Number(x[2]);
  }
  return m;
}
const engineMetrics = () => metrics(ARGS['engine-port'], ARGS['engine-key']);
const served = (m) => (m ? ['2xx', '3xx', '4xx', '5xx'].reduce((s, c) => s + (m[`kvchat_http_requests_total{class="${c}"}`] || 0), 0) : NaN);

async function modelStatus() {
  const r = await request({ path: `${API}/model/status`, timeoutMs: 10000 });
  return r.status === 200 ? json(r.body) : null;
}

/* ---- processes ---- */

// {rss, hwm, threads, fds} in kB and counts, or null when the process is gone.
function procStat(pid) {
  try {
    const s = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    const num = (k) => Number((new RegExp(`^${k}:\\s+(\\d+)`, 'm').exec(s) || [])[1]);
    if (/^State:\s+Z/m.test(s)) return null;
    return { rss: num('VmRSS'), hwm: num('VmHWM'), threads: num('Threads'), fds: fs.readdirSync(`/proc/${pid}/fd`).length };
  } catch {
    return null;
  }
}

// What a process's descriptors are: "sqlite 6, socket 1, pipe 5, ...".
function fdKinds(pid) {
  const k = {};
  try {
    for (const fd of fs.readdirSync(`/proc/${pid}/fd`)) {
      let t;
      try {
        t = fs.readlinkSync(`/proc/${pid}/fd/${fd}`);
      } catch {
        continue;
      }
      const kind = /^socket:/.test(t) ? 'socket' : /^pipe:/.test(t) ? 'pipe' : /^anon_inode:/.test(t) ? t.replace(/^anon_inode:\[?|\]$/g, '')
        : /\.db(-wal|-shm)?$/.test(t) ? 'sqlite' : /\.log$/.test(t) ? 'log' : 'file';
      k[kind] = (k[kind] || 0) + 1;
    }
  } catch {
    return 'gone';
  }
  return Object.entries(k).sort((a, b) => b[1] - a[1]).map(([n, c]) => `${n} ${c}`).join(', ');
}

function childrenOf(pid) {
  const kids = [];
  try {
    for (const t of fs.readdirSync(`/proc/${pid}/task`)) {
      const c = fs.readFileSync(`/proc/${pid}/task/${t}/children`, 'utf8').trim();
      if (c) kids.push(...c.split(/\s+/).map(Number));
    }
  } catch { /* gone */ }
  return kids;
}

function commOf(pid) {
  try {
    return fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return '';
  }
}

const APP_PID = ARGS.pid;
let ENGINE_PID = 0;

/* ---- background: /health probes and /proc samples ---- */

let phase = null; // the running phase's record
const allPhases = [];

function newPhase(key, title) {
  return { key, title, probes: [], chats: [], peak: { app: null, engine: null }, notes: [] };
}

function probe() {
  const ph = phase;
  const t = now();
  request({ path: '/health', timeoutMs: 5000 }).then((r) => {
    if (ph) ph.probes.push({ t, ok: r.status === 200, ms: r.ms, error: r.error || (r.status !== 200 ? String(r.status) : '') });
  });
}

function keepPeak(peak, st) {
  if (!st) return peak;
  if (!peak) return { ...st };
  return { rss: Math.max(peak.rss, st.rss), hwm: Math.max(peak.hwm, st.hwm),
           threads: Math.max(peak.threads, st.threads), fds: Math.max(peak.fds, st.fds) };
}

let appGone = false;
let engineGone = false;
function sample() {
  const a = procStat(APP_PID);
  const e = ENGINE_PID ? procStat(ENGINE_PID) : null;
  if (!a) appGone = true;
  if (ENGINE_PID && !e) engineGone = true;
  if (phase) {
    phase.peak.app = keepPeak(phase.peak.app, a);
    phase.peak.engine = keepPeak(phase.peak.engine, e);
  }
}

// Longest run of failed probes, as time from the first failure to the next
// success (or the end of the phase).
function longestOutage(probes, tEnd) {
  const ps = [...probes].sort((x, y) => x.t - y.t);
  let worst = 0;
  let start = null;
  for (const p of ps) {
    if (!p.ok && start === null) start = p.t;
    if (p.ok && start !== null) {
      worst = Math.max(worst, p.t - start);
      start = null;
    }
  }
  if (start !== null) worst = Math.max(worst, tEnd - start);
  return worst;
}

async function runPhase(key, title, fn) {
  console.log(`\n== ${key} ${title}`);
  const ph = newPhase(key, title);
  ph.before = { app: procStat(APP_PID), engine: procStat(ENGINE_PID) };
  ph.m0 = await metrics();
  ph.t0 = now();
  phase = ph;
  try {
    await fn(ph);
  } catch (e) {
    fail(`${key}: the phase threw: ${e.stack || e}`);
  }
  ph.t1 = now();
  sample();
  phase = null;
  await sleep(300); // let probes in flight land in this phase
  ph.m1 = await metrics();
  ph.after = { app: procStat(APP_PID), engine: procStat(ENGINE_PID) };
  report(ph);
  allPhases.push(ph);
  if (!procStat(APP_PID)) fail(`${key}: kvchat (pid ${APP_PID}) is gone`);
  return ph;
}

function probeFigures(ph) {
  const ok = ph.probes.filter((p) => p.ok);
  const lat = ok.map((p) => p.ms);
  return { ok: ok.length, failed: ph.probes.length - ok.length, p50: pct(lat, 50), p99: pct(lat, 99),
           max: lat.length ? Math.max(...lat) : NaN, outage: longestOutage(ph.probes, ph.t1) };
}

function report(ph) {
  const pf = probeFigures(ph);
  const errs = {};
  for (const p of ph.probes) if (!p.ok) errs[p.error] = (errs[p.error] || 0) + 1;
  const errText = Object.entries(errs).map(([k, v]) => `${v} ${k}`).join(', ');
  console.log(`  meanwhile: ${served(ph.m1) - served(ph.m0)} requests served by kvchat in ${((ph.t1 - ph.t0) / 1000).toFixed(1)} s` +
              (ph.m1 && ph.m0 ? ` (5xx: ${(ph.m1['kvchat_http_requests_total{class="5xx"}'] || 0) - (ph.m0['kvchat_http_requests_total{class="5xx"}'] || 0)})` : ''));
  console.log(`  /health from 127.0.0.1: ${pf.ok} ok, ${pf.failed} failed${errText ? ` (${errText})` : ''}; ` +
              `p50 ${fmtMs(pf.p50)}, p99 ${fmtMs(pf.p99)}, max ${fmtMs(pf.max)}; longest outage ${fmtMs(pf.outage)}`);
  if (ph.chats.length) {
    const ok = ph.chats.filter((c) => c.ok);
    const full = ok.filter((c) => !c.hungUp);
    const e = {};
    for (const c of ph.chats) if (!c.ok) e[c.error] = (e[c.error] || 0) + 1;
    console.log(`  chats: ${ok.length} ok, ${ph.chats.length - ok.length} failed` +
                `${Object.keys(e).length ? ` (${Object.entries(e).map(([k, v]) => `${v} ${k}`).join(', ')})` : ''}; ` +
                `first token p50 ${fmtMs(pct(ok.map((c) => c.ttft), 50))}, p99 ${fmtMs(pct(ok.map((c) => c.ttft), 99))}; ` +
                `whole chat p50 ${fmtMs(pct(full.map((c) => c.total), 50))}, p99 ${fmtMs(pct(full.map((c) => c.total), 99))}`);
  }
  const rows = [['process', 'RSS before', 'RSS peak', 'RSS after', 'fds before', 'fds peak', 'fds after', 'threads peak']];
  for (const [name, k] of [['kvchat', 'app'], ['kvchat-engine', 'engine']]) {
    const b = ph.before[k], p = ph.peak[k], a = ph.after[k];
    rows.push([name, fmtMB(b?.rss), fmtMB(p?.rss), fmtMB(a?.rss), b?.fds ?? '-', p?.fds ?? '-', a?.fds ?? 'gone', p?.threads ?? '-']);
  }
  table(rows);
  for (const n of ph.notes) console.log(`  ${n}`);
}

/* ---- phase helpers ---- */

// Opens n connections from localAddress that send nothing (or trickle:
// `send` bytes first, then one byte every `everyMs`). Each record says when
// it connected and when the server closed it.
function openConns(n, localAddress, { first = '', everyMs = 0, byte = 'a' } = {}) {
  const recs = [];
  for (let i = 0; i < n; i++) {
    const r = { connected: NaN, closed: NaN, how: '', gotData: false, t0: now() };
    const s = net.connect({ host: HOST, port: PORT, localAddress });
    r.sock = s;
    s.setNoDelay(true);
    s.on('connect', () => {
      r.connected = now();
      if (first) s.write(first);
      if (everyMs) r.timer = setInterval(() => { if (!s.destroyed) s.write(byte); }, everyMs);
    });
    s.on('data', () => { r.gotData = true; });
    const closed = (how) => {
      if (!Number.isNaN(r.closed)) return;
      r.closed = now();
      r.how = how;
      clearInterval(r.timer);
    };
    s.on('end', () => { closed('end'); s.destroy(); });
    s.on('error', (e) => closed(e.code || 'error'));
    s.on('close', () => closed('close'));
    recs.push(r);
  }
  return recs;
}

function closeConns(recs) {
  for (const r of recs) {
    r.mine = Number.isNaN(r.closed);
    clearInterval(r.timer);
    r.sock.destroy();
  }
}

// Per source: opened, refused at once (closed by the server within 1 s),
// closed later by the server (after how long), still open.
function connRow(label, recs) {
  const conn = recs.filter((r) => !Number.isNaN(r.connected));
  const byServer = conn.filter((r) => !r.mine && !Number.isNaN(r.closed));
  const atOnce = byServer.filter((r) => r.closed - r.connected < 1000);
  const later = byServer.filter((r) => r.closed - r.connected >= 1000).map((r) => r.closed - r.connected);
  return [label, recs.length, conn.length, atOnce.length, later.length,
          later.length ? `${(pct(later, 50) / 1000).toFixed(1)} s` : '-',
          later.length ? `${(Math.max(...later) / 1000).toFixed(1)} s` : '-',
          recs.filter((r) => r.mine).length];
}
const CONN_HEAD = ['source', 'opened', 'connected', 'refused at once', 'closed later', 'after (p50)', 'after (max)', 'still open'];

async function waitAllClosed(recs, ms) {
  const t0 = now();
  while (now() - t0 < ms && recs.some((r) => Number.isNaN(r.closed))) await sleep(100);
}

// Opens connections in batches so that the listen backlog never overflows.
async function openInBatches(n, localAddress, opts) {
  const recs = [];
  for (let i = 0; i < n; i += 50) {
    recs.push(...openConns(Math.min(50, n - i), localAddress, opts));
    await sleep(20);
  }
  return recs;
}

// Runs `count` chats, `conc` at a time; chat i hangs up when hangUp(i).
async function chatPool(ph, count, conc, hangUp = () => false) {
  let next = 0;
  const worker = async () => {
    while (next < count) {
      const i = next++;
      ph.chats.push(await chat({ hangUp: hangUp(i), message: `Question ${i}: what does the harbor office say?` }));
    }
  };
  await Promise.all(Array.from({ length: conc }, worker));
}

// Chats one after another until `until()` is true.
async function chatsWhile(ph, until, gapMs = 500) {
  while (!until()) {
    ph.chats.push(await chat({}));
    await sleep(gapMs);
  }
}

/* ---- phases ---- */

const WAIT_CLOSE_MS = TIMEOUT_S * 1000 * 2 + 5000;

async function phaseIdle(ph) {
  const attacker = await openInBatches(300, '127.0.0.2');
  const own = await openInBatches(40, '127.0.0.1');
  let stop = false;
  const chats = chatsWhile(ph, () => stop, 1000);
  await waitAllClosed([...attacker, ...own], WAIT_CLOSE_MS);
  stop = true;
  await chats;
  closeConns([...attacker, ...own]);
  table([CONN_HEAD, connRow('127.0.0.2', attacker), connRow('127.0.0.1', own)]);
}

async function phaseAllIdle(ph) {
  const recs = [];
  for (let a = 10; a < 19; a++) recs.push(...(await openInBatches(60, `127.0.0.${a}`)));
  await waitAllClosed(recs, WAIT_CLOSE_MS);
  closeConns(recs);
  table([CONN_HEAD, connRow('127.0.0.10-18', recs)]);
  ph.notes.push(`server.max_connections is 512: past it, a new connection closes the one that has waited longest for its request; the rest are closed after server.timeout (${TIMEOUT_S} s).`);
  const pf = probeFigures({ probes: ph.probes, t1: now() });
  if (pf.failed) finding(`1b: ${pf.failed} of ${pf.ok + pf.failed} /health probes from another address were refused while idle connections held the server (longest outage ${fmtMs(pf.outage)})`);
}

const SLOW_HEAD = `POST ${API}/session HTTP/1.1\r\nHost: ${HOST}:${PORT}\r\nContent-Type: application/json\r\nX-Slow: `;
const SLOW_BODY = `POST ${API}/session HTTP/1.1\r\nHost: ${HOST}:${PORT}\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n`;
const SLOW_MS = Math.max(15000, TIMEOUT_S * 3000);

async function phaseSlow(ph) {
  const heads = openConns(25, '127.0.0.2', { first: SLOW_HEAD, everyMs: 1000 });
  const bodies = openConns(25, '127.0.0.3', { first: SLOW_BODY, everyMs: 1000, byte: ' ' });
  const t0 = now();
  await chatsWhile(ph, () => now() - t0 > SLOW_MS, 1000);
  closeConns([...heads, ...bodies]);
  table([CONN_HEAD, connRow('headers, 1 B/s', heads), connRow('body, 1 B/s', bodies)]);
  for (const [what, recs] of [['header', heads], ['body', bodies]]) {
    const open = recs.filter((r) => r.mine).length;
    if (open) finding(`2a: ${open} of ${recs.length} connections sending their ${what} at 1 byte/s were still open after ` +
                      `${(SLOW_MS / 1000).toFixed(0)} s (server.timeout ${TIMEOUT_S} s)`);
  }
  ph.notes.push(`sent for ${(SLOW_MS / 1000).toFixed(0)} s; "still open" ones were closed by this client at the end.`);
}

async function phaseAllSlow(ph) {
  const recs = [];
  for (let a = 10; a < 19; a++)
    recs.push(...(await openInBatches(60, `127.0.0.${a}`, { first: SLOW_BODY, everyMs: 2000, byte: ' ' })));
  const t0 = now();
  while (now() - t0 < SLOW_MS) await sleep(100);
  closeConns(recs);
  const tClosed = now();
  // how long until /health answers again
  let back = NaN;
  while (now() - tClosed < 10000) {
    const r = await request({ path: '/health', timeoutMs: 2000 });
    if (r.status === 200) {
      back = now() - tClosed;
      break;
    }
    await sleep(50);
  }
  table([CONN_HEAD, connRow('127.0.0.10-18', recs)]);
  const open = recs.filter((r) => r.mine).length;
  if (open) {
    const pf = probeFigures({ probes: ph.probes.filter((p) => p.t < tClosed), t1: tClosed });
    finding(`2b: ${open} slow bodies held connections until this client closed them; meanwhile ${pf.failed} of ` +
            `${pf.ok + pf.failed} /health probes from another address were refused (longest outage ${fmtMs(pf.outage)})`);
  }
  ph.notes.push(`complete headers, then one body byte every 2 s from each connection for ${(SLOW_MS / 1000).toFixed(0)} s; ` +
                `/health answered again ${fmtMs(back)} after this client closed them.`);
}

async function phaseChats(ph) {
  const c0 = await metrics();
  await chatPool(ph, 100, 20, (i) => i % 2 === 1);
  // nothing may stay active: kvchat's chats and the engine's slots and queue
  const t0 = now();
  let m = null, em = null;
  while (now() - t0 < 30000) {
    m = await metrics();
    em = await engineMetrics();
    if (m && em && m.kvchat_chats_active === 0 && em.kvchat_engine_slots_busy === 0 && em.kvchat_engine_queue_length === 0) break;
    await sleep(100);
  }
  const settled = now() - t0;
  const idle = m && em && m.kvchat_chats_active === 0 && em.kvchat_engine_slots_busy === 0 && em.kvchat_engine_queue_length === 0;
  ph.notes.push(`after the last chat: kvchat_chats_active ${m?.kvchat_chats_active}, engine slots busy ${em?.kvchat_engine_slots_busy}, ` +
                `engine queue ${em?.kvchat_engine_queue_length} (after ${fmtMs(settled)}); cancelled chats counted: ` +
                `${(m?.kvchat_chat_cancelled_total ?? NaN) - (c0?.kvchat_chat_cancelled_total ?? NaN)}`);
  if (!idle) fail('chats: something stayed active 30 s after the last chat');
  // the answers of the clients that left are stored: marked incomplete, or
  // complete when the generation ended before the hang-up was seen
  const left = ph.chats.filter((c) => c.hungUp);
  const kinds = { incomplete: 0, complete: 0, missing: 0 };
  for (const c of left) {
    let msgs = [];
    for (const t0s = now(); now() - t0s < 5000; await sleep(100)) {
      const r = await request({ path: `${API}/session/${c.sessionId}/messages` });
      msgs = json(r.body)?.messages || [];
      if (msgs.length >= 2) break;
    }
    const a = msgs.length === 2 && msgs[1].role === 'assistant' ? msgs[1] : null;
    kinds[!a ? 'missing' : a.incomplete === true ? 'incomplete' : 'complete']++;
  }
  ph.notes.push(`answers of the ${left.length} clients that hung up: ${kinds.incomplete} stored marked incomplete, ` +
                `${kinds.complete} complete (done before the hang-up was seen), ${kinds.missing} missing`);
  if (kinds.missing) finding(`3: ${kinds.missing} of ${left.length} sessions whose client hung up have no stored answer after 5 s`);
  const fresh = await chat({});
  ph.notes.push(`a fresh chat afterwards: ${fresh.ok ? `ok, ${fresh.tokens} tokens in ${fmtMs(fresh.total)}` : `FAILED (${fresh.error})`}`);
  if (!fresh.ok) fail(`chats: a fresh chat after the 100 failed: ${fresh.error}`);
}

// A text file of `mb` MiB: sentences from a fixed vocabulary, each file
// different from its first line on.
function writeText(file, mb, tag) {
  const words = 'harbor ferry island lighthouse boat market bakery pier storm museum map coast bicycle station tide library cargo ship anchor night bus square morning evening warning table river bridge'.split(' ');
  let seed = 12345 + tag.length * 7919;
  const rnd = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
  const lines = [];
  let n = 0;
  while (n < 1 << 20) {
    const w = Array.from({ length: 8 + Math.floor(rnd() * 8) }, () => words[Math.floor(rnd() * words.length)]);
    const l = `${w.join(' ')}.\n`;
    lines.push(l);
    n += l.length;
  }
  const block = lines.join('');
  const fd = fs.openSync(file, 'w');
  fs.writeSync(fd, `${tag}\n`);
  for (let i = 0; i < mb; i++) fs.writeSync(fd, `Part ${i + 1} of ${tag}.\n${block}`);
  fs.closeSync(fd);
  return fs.statSync(file).size;
}

// Uploads a file as multipart/form-data, streamed from disk. stream: ask
// for progress events. Resolves {status, ms, detail, stages}.
function upload(file, name, stream) {
  return new Promise((resolve) => {
    const t0 = now();
    const boundary = `----kvchatstress${Math.random().toString(16).slice(2)}`;
    const head = Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="${name}"\r\n` +
                             `Content-Type: text/plain\r\n\r\n`);
    const tail = Buffer.from(`\r\n--${boundary}--\r\n`);
    const size = fs.statSync(file).size;
    const stages = {};
    let maxPos = 0;
    let done = false;
    const finish = (r) => {
      if (done) return;
      done = true;
      resolve({ ms: now() - t0, stages, maxPos, ...r });
    };
    const req = http.request({
      host: HOST, port: PORT, method: 'POST', path: `${API}/documents/upload`, agent: false,
      headers: { 'Content-Type': `multipart/form-data; boundary=${boundary}`,
                 'Content-Length': head.length + size + tail.length,
                 ...(stream ? { Accept: 'text/event-stream' } : {}) },
    }, (res) => {
      let buf = '';
      res.setEncoding('utf8');
      res.on('data', (d) => {
        buf += d;
        if (!stream) return;
        let i;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const e = json(buf.slice(0, i).replace(/^data:\s*/m, ''));
          buf = buf.slice(i + 2);
          if (!e) continue;
          if (e.event === 'progress') {
            stages[e.stage] = stages[e.stage] ?? now() - t0;
            if (e.position) maxPos = Math.max(maxPos, e.position);
          } else if (e.event === 'done') {
            finish({ status: 200, detail: `${e.n_tokens ?? 'null'} tokens` });
          } else if (e.event === 'error') {
            finish({ status: e.status, detail: e.detail });
          }
        }
      });
      res.on('end', () => {
        if (stream) return finish({ status: 0, detail: 'stream ended without done' });
        const j = json(buf);
        finish({ status: res.statusCode, detail: res.statusCode === 200 ? `${j?.n_tokens ?? 'null'} tokens` : j?.detail });
      });
      res.on('error', (e) => finish({ status: 0, detail: e.code || e.message }));
    });
    req.on('error', (e) => finish({ status: 0, detail: e.code || e.message }));
    req.write(head);
    const rs = fs.createReadStream(file, { highWaterMark: 256 * 1024 });
    rs.pipe(req, { end: false });
    rs.on('end', () => req.end(tail));
  });
}

// The upload phase's files, written before the phases start (writing them
// would stall this client's event loop, and so its measurements).
const UPLOADS = [];
function writeUploads() {
  const tw = now();
  [5, 7, 9, 11, 13, 15, 17, 20].forEach((mb, i) => {
    const f = { mb, name: `big-${i + 1}.txt`, path: `${ARGS.tmp}/big-${i + 1}.txt`, stream: true };
    f.size = writeText(f.path, f.mb, f.name);
    UPLOADS.push(f);
  });
  for (const name of ['notes-a.txt', 'notes-b.md', 'notes-c.txt', 'notes-d.md']) {
    const f = { mb: 0, name, path: `${ARGS.tmp}/${name}`, stream: false };
    fs.writeFileSync(f.path, `# ${name}\n\nThe harbor office opens at seven in the morning.\nFerries leave every forty minutes.\n`);
    f.size = fs.statSync(f.path).size;
    UPLOADS.push(f);
  }
  console.log(`wrote ${UPLOADS.reduce((s, f) => s + f.size, 0) >> 20} MiB of text to upload in ${fmtMs(now() - tw)}`);
}

async function phaseUploads(ph) {
  let stop = false;
  const chats = chatsWhile(ph, () => stop, 1000);
  const t0 = now();
  const res = await Promise.all(UPLOADS.map(async (f) => ({ f, r: await upload(f.path, f.name, f.stream) })));
  const wall = now() - t0;
  stop = true;
  await chats;
  const rows = [['file', 'size', 'status', 'time', 'queued at', 'extracting at', 'counting at', 'answer']];
  for (const { f, r } of res) {
    rows.push([f.name, f.mb ? `${(f.size / 1048576).toFixed(1)} MB` : `${f.size} B`, r.status, fmtMs(r.ms),
               r.stages.queued !== undefined ? `${fmtMs(r.stages.queued)} (#${r.maxPos})` : '-',
               fmtMs(r.stages.extracting), fmtMs(r.stages.counting), String(r.detail ?? '').slice(0, 40)]);
  }
  table(rows);
  ph.notes.push(`${res.length} uploads at once took ${fmtMs(wall)}; ${res.filter((x) => x.r.status === 200).length} answered 200`);
  for (const f of UPLOADS) fs.rmSync(f.path, { force: true });
}

// Puts long lines into the engine's log (it logs every request's path,
// also a refused one), so that patterns have something to backtrack on.
async function seedLog() {
  for (let i = 0; i < 400; i += 20) {
    const reqs = [];
    for (let j = i; j < i + 20; j++) {
      const run = j % 3 === 0 ? 'a'.repeat(3000) : j % 3 === 1 ? 'ab'.repeat(1500) : `${'a'.repeat(2000)}x`;
      reqs.push(request({ path: `/${run}`, port: ARGS['engine-port'], timeoutMs: 10000 }));
    }
    await Promise.all(reqs);
  }
  await sleep(500);
}

const HOSTILE = [
  ['a{1,1000}{1,1000}', 'a{1,1000}{1,1000}'],
  ['(a+)+$', '(a+)+$'],
  ['(a|aa)+$', '(a|aa)+$'],
  ['(.*)*x', '(.*)*x'],
  ['(\\w+\\s?)+$', '(\\w+\\s?)+$'],
  ['(a|b)*$ (slow)', '(a|b)*$'],
  ['10 KB pattern', '(a+)+'.repeat(2048)],
  ['100 KB pattern', 'a'.repeat(100 * 1024)],
  ['40 nested groups', `${'('.repeat(40)}a${')'.repeat(40)}`],
  ['invalid: (', '('],
  ['invalid: [a-', '[a-'],
  ['invalid: a{2,1}', 'a{2,1}'],
  ['invalid: \\y', '\\y'],
  ['callout (?C1)', '(?C1)a'],
  ['collating [[=a=]]', '[[=a=]]'],
  ['not UTF-8 (\\xff)', Buffer.from([0xff, 0x61])],
  ['plain: engine', 'engine'],
];

function patternPath(p) {
  const enc = Buffer.isBuffer(p) ? [...p].map((b) => `%${b.toString(16).toUpperCase().padStart(2, '0')}`).join('') : encodeURIComponent(p);
  return `${API}/logs/recent?lines=1000&pattern=${enc}`;
}

async function phasePatterns(ph) {
  await seedLog();
  const rows = [['pattern', 'status', 'time', 'lines', 'answer']];
  const bad = (r) => r.status === 0 || r.status >= 500;
  for (const [label, p] of HOSTILE) {
    const r = await request({ path: patternPath(p), timeoutMs: 30000 });
    const j = json(r.body);
    const ans = r.status === 0 ? r.error : r.status === 200 ? `complete: ${j?.complete}` : (j?.detail || r.body || '').slice(0, 60);
    rows.push([label, r.status || '-', fmtMs(r.ms), j?.lines_count ?? '-', ans]);
    if (bad(r) && !label.startsWith('100 KB')) fail(`patterns: ${label} answered ${r.status || r.error}`);
    if (r.status >= 400 && !j) finding(`5: ${label} was answered ${r.status} with a body that is not the API's JSON error`);
  }
  table(rows);
  // all of them at once, four times over, each time from its own address
  // (68 requests from one would pass the per-address connection limit)
  const t0 = now();
  const burst = [];
  for (let k = 0; k < 4; k++)
    for (const [label, p] of HOSTILE)
      burst.push(request({ path: patternPath(p), localAddress: `127.0.0.${20 + k}`, timeoutMs: 60000 }).then((r) => ({ label, r })));
  const out = await Promise.all(burst);
  const codes = {};
  for (const { r } of out) codes[r.status || r.error] = (codes[r.status || r.error] || 0) + 1;
  ph.notes.push(`${out.length} of them at once (4 addresses): answered in ${fmtMs(now() - t0)}; statuses ${Object.entries(codes).map(([k, v]) => `${k}: ${v}`).join(', ')}`);
  for (const { label, r } of out) if (bad(r) && !label.startsWith('100 KB')) fail(`patterns (at once): ${label} answered ${r.status || r.error}`);
  const h = await request({ path: '/health', timeoutMs: 5000 });
  if (h.status !== 200) fail(`patterns: /health after the patterns answered ${h.status || h.error}`);
}

// The same mix of requests, three times (--rounds); kvchat's and the engine's
// descriptors, memory and threads after each round. What a request leaks
// shows as growth from round to round (the first round may still grow
// pools and caches).
async function phaseLeaks(ph) {
  const rows = [['after round', 'kvchat RSS', 'kvchat fds', 'kvchat threads', 'engine RSS', 'engine fds', 'engine threads',
                 'KV cache in RAM']];
  const row = async (label) => {
    const a = procStat(APP_PID), e = procStat(ENGINE_PID);
    const em = await engineMetrics();
    const kv = em?.['kvchat_engine_cache_bytes{tier="ram"}'];
    rows.push([label, fmtMB(a?.rss), a?.fds ?? 'gone', a?.threads ?? '-', fmtMB(e?.rss), e?.fds ?? 'gone', e?.threads ?? '-',
               kv === undefined ? '-' : `${(kv / 1048576).toFixed(1)} MB, ${em['kvchat_engine_cache_entries{tier="ram"}']} entries`]);
  };
  await settleFds(5000);
  await row('0 (start)');
  for (let round = 1; round <= ARGS.rounds; round++) {
    const idle = await openInBatches(60, '127.0.0.2');
    const slow = openConns(20, '127.0.0.3', { first: SLOW_BODY, everyMs: 200, byte: ' ' });
    const work = [chatPool(ph, 10, 5, (i) => i % 2 === 1)];
    for (let i = 0; i < 3; i++) {
      const f = `${ARGS.tmp}/round-${round}-${i}.txt`;
      fs.writeFileSync(f, `Round ${round}, note ${i}.\n${'The ferry leaves at nine. '.repeat(2000)}\n`);
      work.push(upload(f, `round-${round}-${i}.txt`, i === 0).then(() => fs.rmSync(f, { force: true })));
    }
    for (const [, p] of HOSTILE) work.push(request({ path: patternPath(p), localAddress: '127.0.0.4' }));
    await Promise.all(work);
    closeConns([...idle, ...slow]);
    await settleFds(5000);
    await row(String(round));
  }
  table(rows);
}

/* ---- main ---- */

async function settleFds(ms) {
  // connections the phases opened close asynchronously: wait for the count to stop falling
  let last = procStat(APP_PID)?.fds;
  const t0 = now();
  while (now() - t0 < ms) {
    await sleep(500);
    const f = procStat(APP_PID)?.fds;
    if (f === last) break;
    last = f;
  }
}

async function main() {
  const st = await modelStatus();
  if (!st || st.status !== 'running') throw new Error(`the engine is not running: ${JSON.stringify(st)}`);
  ENGINE_PID = st.pid;
  const kids = childrenOf(APP_PID);
  if (!kids.includes(ENGINE_PID)) {
    const e = kids.find((k) => commOf(k).startsWith('kvchat-engine'));
    if (!e) throw new Error(`no kvchat-engine among the children of ${APP_PID}`);
    ENGINE_PID = e;
  }
  console.log(`kvchat pid ${APP_PID} on ${HOST}:${PORT}, kvchat-engine pid ${ENGINE_PID} on port ${ARGS['engine-port']}; ` +
              `server.timeout ${TIMEOUT_S} s, llm.max_tokens ${ARGS['max-tokens']}`);
  // warm up: one chat, so that first-use costs are not counted as growth
  const warm = await chat({});
  if (!warm.ok) throw new Error(`the warm-up chat failed: ${warm.error}`);
  if (!only || only.includes('4')) writeUploads();
  const before = { app: procStat(APP_PID), engine: procStat(ENGINE_PID) };
  const fdsBefore = { app: fdKinds(APP_PID), engine: fdKinds(ENGINE_PID) };
  const restarts0 = st.restarts;
  const tStart = now();

  const probeTimer = setInterval(probe, 100);
  const sampleTimer = setInterval(sample, 200);
  const phases = [
    ['1a', 'idle connections: 300 from 127.0.0.2, 40 from 127.0.0.1', phaseIdle],
    ['1b', 'idle connections over server.max_connections: 60 from each of 127.0.0.10-18', phaseAllIdle],
    ['2a', 'slow requests: 25 with headers, 25 with a body at 1 byte/s', phaseSlow],
    ['2b', 'slow bodies over server.max_connections: 60 from each of 127.0.0.10-18', phaseAllSlow],
    ['3', '100 streaming chats, 20 at a time, every second client hangs up after the first token', phaseChats],
    ['4', 'parallel uploads: 8 texts of 5-20 MB and 4 small ones at once', phaseUploads],
    ['5', 'hostile log search patterns', phasePatterns],
    ['6', 'leak check: the same mix of requests, round after round', phaseLeaks],
  ];
  for (const [k, t, fn] of phases) {
    if (only && !only.includes(k)) continue;
    await runPhase(k, t, fn);
    if (appGone) break;
  }
  clearInterval(probeTimer);
  clearInterval(sampleTimer);

  console.log('\n== after the abuse');
  const end = await modelStatus();
  if (!procStat(APP_PID)) fail(`kvchat (pid ${APP_PID}) died`);
  if (engineGone || !end || end.pid !== ENGINE_PID || end.restarts !== restarts0)
    fail(`kvchat-engine died or was restarted (pid ${ENGINE_PID} -> ${end?.pid}, restarts ${restarts0} -> ${end?.restarts}, status ${end?.status})`);
  const last = await chat({});
  console.log(`  a chat after the abuse: ${last.ok ? `ok, first token ${fmtMs(last.ttft)}, whole ${fmtMs(last.total)}` : `FAILED (${last.error})`}`);
  if (!last.ok) fail(`a chat after the abuse failed: ${last.error}`);
  await settleFds(15000);
  const after = { app: procStat(APP_PID), engine: procStat(ENGINE_PID) };

  console.log(`\n== summary (${((now() - tStart) / 1000).toFixed(0)} s)`);
  const rows = [['phase', 'time', 'served', '5xx', '/health ok', 'failed', 'p50', 'p99', 'longest outage', 'chats ok/all',
                 'chat p99', 'kvchat RSS peak', 'fds peak', 'threads peak']];
  for (const ph of allPhases) {
    const pf = probeFigures(ph);
    const c5 = ph.m1 && ph.m0 ? (ph.m1['kvchat_http_requests_total{class="5xx"}'] || 0) - (ph.m0['kvchat_http_requests_total{class="5xx"}'] || 0) : '-';
    const full = ph.chats.filter((c) => c.ok && !c.hungUp).map((c) => c.total);
    rows.push([ph.key, `${((ph.t1 - ph.t0) / 1000).toFixed(1)} s`, served(ph.m1) - served(ph.m0), c5, pf.ok, pf.failed,
               fmtMs(pf.p50), fmtMs(pf.p99), fmtMs(pf.outage),
               ph.chats.length ? `${ph.chats.filter((c) => c.ok).length}/${ph.chats.length}` : '-',
               fmtMs(pct(full, 99)), fmtMB(ph.peak.app?.rss), ph.peak.app?.fds ?? '-', ph.peak.app?.threads ?? '-']);
  }
  table(rows);
  console.log('');
  const pr = [['process', 'RSS before', 'RSS after', 'VmHWM after', 'fds before', 'fds after', 'threads before', 'threads after']];
  for (const [name, k] of [['kvchat', 'app'], ['kvchat-engine', 'engine']]) {
    const b = before[k], a = after[k];
    pr.push([name, fmtMB(b?.rss), a ? fmtMB(a.rss) : 'gone', a ? fmtMB(a.hwm) : '-', b?.fds ?? '-', a?.fds ?? '-', b?.threads ?? '-', a?.threads ?? '-']);
  }
  table(pr);
  for (const [name, k, pid] of [['kvchat', 'app', APP_PID], ['kvchat-engine', 'engine', ENGINE_PID]])
    console.log(`  ${name} descriptors: before ${fdsBefore[k]}; after ${fdKinds(pid)}`);
  if (findings.length) {
    console.log('\nnot defended (reported, not failed):');
    for (const f of findings) console.log(`  - ${f}`);
  }
  if (failures.length) {
    console.log(`\nstress: ${failures.length} failure(s):`);
    for (const f of failures) console.log(`  - ${f}`);
    return 1;
  }
  console.log('\nstress: the server survived every phase and answered a chat afterwards');
  return 0;
}

main().then((rc) => process.exit(rc), (e) => {
  console.error(`stress: ${e.stack || e}`);
  process.exit(2);
});
