// format.js — numbers, sizes, times and cache states as the page shows them.

export function bytes(n) {
  if (n === null || n === undefined || n < 0) return '–';
  if (n < 1024) return `${n} B`;
  const units = ['KB', 'MB', 'GB', 'TB'];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return `${v < 10 ? v.toFixed(1) : Math.round(v)} ${units[i]}`;
}

export function int(n) {
  return Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : '–';
}

export function ms(v) {
  if (!Number.isFinite(v) || v < 0) return '–';
  if (v < 10) return `${v.toFixed(1)} ms`;
  if (v < 1000) return `${Math.round(v)} ms`;
  if (v < 60000) return `${(v / 1000).toFixed(v < 10000 ? 2 : 1)} s`;
  return `${Math.floor(v / 60000)} min ${Math.round((v % 60000) / 1000)} s`;
}

/** "3 min ago" style for an ISO time; the full time goes in a title. */
export function ago(iso) {
  const t = Date.parse(iso);
  if (!Number.isFinite(t)) return '';
  const s = Math.max(0, (Date.now() - t) / 1000);
  if (s < 45) return 'just now';
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  if (s < 86400 * 14) return `${Math.round(s / 86400)} d ago`;
  return new Date(t).toLocaleDateString();
}

export function fullTime(iso) {
  const t = Date.parse(iso);
  return Number.isFinite(t) ? new Date(t).toLocaleString() : '';
}

const TIER_NAMES = { slot: 'already in a model slot', ram: 'in RAM', disk: 'on disk' };

export function tierName(tier) {
  return TIER_NAMES[tier] || tier || '';
}

/**
 * A document's cache state for display: {state, label, short, detail, tier}.
 * state is one of none, caching, cached, failed (the API's names).
 * `progress` is this page's own caching progress (percent) when it runs one.
 * `engine` is what the page knows of the model server: {running, startedAt}
 * (ms since the epoch). When the model server could be asked (cache.live)
 * the tier is where the entry is now, and a document whose entry it no
 * longer holds comes back as none with cache.evicted. Otherwise the tier is
 * the one the entry had when it was cached; a model server started after
 * that holds it at most on disk (RAM does not survive a restart), and a
 * stopped one only on disk.
 */
export function cacheState(doc, progress, engine) {
  const c = doc.cache || { status: doc.cache_status };
  if (progress !== undefined && progress !== null) {
    return { state: 'caching', label: `caching ${progress}%`, short: `caching ${progress}%`, detail: 'Prefilling the document into the KV cache' };
  }
  switch (c.status) {
    case 'caching':
      return { state: 'caching', label: 'caching…', short: 'caching…', detail: 'Prefilling the document into the KV cache' };
    case 'cached': {
      let tier = c.tier;
      const cachedAt = Date.parse(c.cached_at || '');
      if (!c.live && engine && (!engine.running || (engine.startedAt && Number.isFinite(cachedAt) && engine.startedAt > cachedAt))) {
        tier = 'disk';
      }
      const where = tier === 'disk' ? 'on disk' : tier === 'ram' || tier === 'slot' ? 'in RAM' : '';
      const toks = c.tokens >= 0 ? `${int(c.tokens)} tokens` : '';
      return {
        state: 'cached',
        tier,
        label: ['cached', where, toks].filter(Boolean).join(' · '),
        short: tier === 'disk' ? 'cached on disk' : where ? 'cached in RAM' : 'cached',
        detail: `KV cache ${bytes(c.bytes)}${c.prefill_ms >= 0 ? `, prefilled in ${ms(c.prefill_ms)}` : ''}`,
      };
    }
    case 'failed':
      return { state: 'failed', label: 'cache failed', short: 'cache failed', detail: c.error || 'Caching failed' };
    default:
      if (c.evicted) {
        return { state: 'none', label: 'not cached', short: 'not cached', detail: 'The model server no longer holds it (evicted, reset, or another model): press Cache' };
      }
      return { state: 'none', label: 'not cached', short: 'not cached', detail: 'Not in the KV cache yet: press Cache' };
  }
}

/** "about 12 s left" for an estimate in seconds ('' when there is none). */
export function eta(s) {
  if (!Number.isFinite(s) || s <= 0) return '';
  if (s < 1.5) return 'about a second left';
  if (s < 60) return `about ${Math.round(s)} s left`;
  const min = Math.round(s / 60);
  return `about ${min} min left`;
}

/**
 * A long document's parts as the page shows them, from GET /groups (or the
 * cache stream's own record): {total, cached, caching, failed, long, label}.
 * `long` is false for a document that is one part, which shows as it always
 * did. label: "9 parts · 4 cached" (· 1 failed).
 */
export function partsSummary(groups) {
  const list = Array.isArray(groups) ? groups : [];
  const total = list.length;
  const count = (s) => list.filter((g) => partState(g) === s).length;
  const cached = count('cached');
  const failed = count('failed');
  const caching = count('caching');
  const label = [`${int(total)} part${total === 1 ? '' : 's'}`, `${int(cached)} cached`,
    failed ? `${int(failed)} failed` : ''].filter(Boolean).join(' · ');
  return { total, cached, caching, failed, long: total > 1, label };
}

/** One part's state: none, caching, cached or failed. */
export function partState(g) {
  if (!g) return 'none';
  if (g.status === 'caching' || g.status === 'failed') return g.status;
  if (g.cached || g.status === 'cached') return 'cached';
  return 'none';
}

/**
 * A chunk's or source's pages: "p. 21", "pp. 20–23" ('' for a format
 * without pages). Printed labels (roman numerals, "A-3") win over numbers.
 */
export function pages(numbers, labels) {
  const l = Array.isArray(labels) ? labels.filter((x) => typeof x === 'string' && x) : [];
  if (l.length) {
    const a = l[0];
    const b = l[l.length - 1];
    return a === b ? `p. ${a}` : `pp. ${a}–${b}`;
  }
  const n = Array.isArray(numbers) ? numbers.filter(Number.isFinite) : [];
  if (!n.length) return '';
  const a = Math.min(...n);
  const b = Math.max(...n);
  return a === b ? `p. ${a}` : `pp. ${a}–${b}`;
}

/** The last step of a heading path ("Manual > Errors > Decoding" → "Decoding"). */
export function lastHeading(heading) {
  if (typeof heading !== 'string' || !heading) return '';
  const parts = heading.split(' > ');
  return parts[parts.length - 1].trim();
}

/**
 * Where an answer came from, as one line, from its rag_info; '' when it
 * says nothing worth a line.
 *   rag:           "pages 20–23 of libtasn1.pdf, part 4 of 5"
 *                  "part 4 of 5 of libtasn1.pdf" (no pages or sections)
 *                  "libtasn1.pdf" (a document of one part, among several)
 *   full_document: "the whole document (kv-guide.md)"
 */
export function sourceLine(info) {
  if (!info || typeof info !== 'object') return '';
  const names = Array.isArray(info.filenames) && info.filenames.length ? info.filenames.join(', ') : info.filename || '';
  if (info.method === 'full_document') {
    const several = Array.isArray(info.filenames) && info.filenames.length > 1;
    return `the whole document${several ? 's' : ''}${names ? ` (${names})` : ''}`;
  }
  // a document of one part (one of several documents in a chat) names no part
  const total = Number.isFinite(info.total_groups) ? info.total_groups : 0;
  const part = Number.isFinite(info.group_id) && total > 1 ? `part ${info.group_id + 1} of ${total}` : '';
  const file = info.filename || 'the document';
  if (info.where) return [`${info.where} of ${file}`, part].filter(Boolean).join(', ');
  return part ? `${part} of ${file}` : file;
}
