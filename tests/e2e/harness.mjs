// harness.mjs — what the browser tests share: their arguments, Playwright
// from the e2e node_modules, a log with elapsed time, checks that fail a
// step, polling, free ports.
import { createRequire } from 'node:module';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';

/* ---- arguments ---- */

function parseArgs(argv) {
  const a = { bin: '', model: '', modules: '', screenshots: '', chromium: '/usr/bin/chromium' };
  for (let i = 0; i < argv.length; i += 2) {
    const k = argv[i].replace(/^--/, '');
    if (!(k in a) || i + 1 >= argv.length) throw new Error(`unknown or incomplete argument ${argv[i]}`);
    a[k] = path.resolve(argv[i + 1]);
  }
  for (const k of ['bin', 'model', 'modules', 'screenshots']) if (!a[k]) throw new Error(`--${k} is required`);
  return a;
}

export const args = parseArgs(process.argv.slice(2));
for (const [what, p] of [['kvchat', path.join(args.bin, 'kvchat')], ['the model', args.model], ['Chromium', args.chromium]]) {
  if (!fs.existsSync(p)) {
    console.error(`e2e: ${what} not found at ${p}${what === 'Chromium' ? ' (scripts/setup installs the Debian package chromium)' : ''}`);
    process.exit(1);
  }
}
export const { chromium } = createRequire(path.join(args.modules, 'noop.js'))('playwright-core');

/* ---- small helpers ---- */

const t0 = Date.now();
export const log = (msg) => console.log(`[${((Date.now() - t0) / 1000).toFixed(1).padStart(5)} s] ${msg}`);

export class Failure extends Error {}
export function check(cond, msg) {
  if (!cond) throw new Failure(msg);
}

/**
 * Polls fn until it returns a truthy value; throws with `what` (a text, or a
 * function giving it then, to show the last state seen) on timeout.
 */
export async function until(fn, what, timeout = 15_000) {
  const end = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      last = await fn();
      if (last) return last;
    } catch (err) {
      last = err;
    }
    if (Date.now() > end) throw new Failure(`timed out waiting for ${typeof what === 'function' ? what() : what}${last instanceof Error ? ` (${last.message})` : ''}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.unref();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

export function alive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
