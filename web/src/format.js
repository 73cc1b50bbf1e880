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
