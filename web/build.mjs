// build.mjs — bundles the web UI for embedding into kvchat.
//
//   node build.mjs [--modules DIR] [--out DIR] [--stamp FILE]
//
// Writes OUT/index.html, OUT/app.js and OUT/app.css (marked and DOMPurify
// bundled in, minified), replacing OUT as a whole so no stale file is ever
// embedded, then writes STAMP last. kvchat serves index.html at / and every
// other file of OUT at /assets/<name>, so the page refers to /assets/app.js. --modules names the
// node_modules directory to resolve packages from (the build keeps it in
// the build directory); the default is ./node_modules.
//
// index.html must load only /assets/ files: the server's Content Security
// Policy forbids inline scripts, so one would silently not run. Such a page
// fails the build instead.
import { createRequire } from 'node:module';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));

function args(argv) {
  const out = { modules: path.join(here, 'node_modules'), out: path.join(here, 'dist'), stamp: '' };
  for (let i = 0; i < argv.length; i += 2) {
    const k = argv[i].replace(/^--/, '');
    if (!(k in out) || i + 1 >= argv.length) {
      console.error(`usage: node build.mjs [--modules DIR] [--out DIR] [--stamp FILE] (bad argument ${argv[i]})`);
      process.exit(2);
    }
    out[k] = path.resolve(argv[i + 1]);
  }
  return out;
}

function checkPage(html) {
  const problems = [];
  for (const m of html.matchAll(/<script\b([^>]*)>([\s\S]*?)<\/script>/gi)) {
    if (!/\bsrc\s*=/.test(m[1]) || m[2].trim()) problems.push('an inline <script> (blocked by the Content Security Policy)');
  }
  if (/\son[a-z]+\s*=/i.test(html)) problems.push('an inline event handler attribute (blocked by the Content Security Policy)');
  for (const ref of ['/assets/app.js', '/assets/app.css']) {
    if (!html.includes(`"${ref}"`)) problems.push(`no reference to "${ref}"`);
  }
  return problems;
}

async function main() {
  const opt = args(process.argv.slice(2));
  const require = createRequire(path.join(opt.modules, 'noop.js'));
  let esbuild;
  try {
    esbuild = require('esbuild');
  } catch (err) {
    console.error(`build.mjs: esbuild not found in ${opt.modules} (run npm ci): ${err.message}`);
    process.exit(1);
  }

  const html = await readFile(path.join(here, 'index.html'), 'utf8');
  const problems = checkPage(html);
  if (problems.length) {
    console.error(`build.mjs: index.html has ${problems.join('; ')}`);
    process.exit(1);
  }

  const tmp = `${opt.out}.tmp`;
  await rm(tmp, { recursive: true, force: true });
  await mkdir(tmp, { recursive: true });
  const result = await esbuild.build({
    absWorkingDir: here,
    entryPoints: [
      { in: 'src/main.js', out: 'app' },
      { in: 'src/style.css', out: 'app' },
    ],
    outdir: tmp,
    bundle: true,
    format: 'esm',
    minify: true,
    target: ['es2020', 'chrome100', 'firefox100', 'safari15'],
    nodePaths: [opt.modules],
    legalComments: 'eof',
    charset: 'utf8',
    logLevel: 'warning',
    metafile: true,
  });
  if (result.errors.length) process.exit(1);
  await writeFile(path.join(tmp, 'index.html'), html);

  await rm(opt.out, { recursive: true, force: true });
  await rename(tmp, opt.out);
  const sizes = Object.entries(result.metafile.outputs)
    .map(([f, o]) => `${path.basename(f)} ${(o.bytes / 1024).toFixed(1)} KiB`).join(', ');
  console.log(`web bundle: ${sizes} -> ${opt.out}`);
  if (opt.stamp) await writeFile(opt.stamp, `${new Date().toISOString()}\n`);
}

main().catch((err) => {
  console.error(`build.mjs: ${err.stack || err}`);
  process.exit(1);
});
