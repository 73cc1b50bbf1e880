// api.js — the page's only way to talk to kvchat (/api/v1).
//
// Every failure becomes an ApiError with the HTTP status (0 when the server
// could not be reached), the server's {"detail": "..."} text and, for a 429,
// the Retry-After seconds, so callers can show it where the user is looking.
// Reaching or losing the server and a 401 are announced on `bus` ("online",
// "offline", "auth") for the banners and the sign-in page.
//
// With accounts, a login is the browser's HttpOnly cookie: this file never
// sees it. Once a login has ended (setSignedOut(true)) every request but the
// sign-in ones (`anon`) fails at once with a 401, so the page's timers do not
// knock on the server until someone signs in again.

export const API = '/api/v1';
export const bus = new EventTarget();

const KEY_STORAGE = 'kvchat.apiKey';

export class ApiError extends Error {
  constructor(status, detail, body, retryAfter = 0) {
    super(detail);
    this.status = status;
    this.detail = detail;
    this.body = body;
    /** seconds to wait (a 429's Retry-After), 0 when not said */
    this.retryAfter = retryAfter;
  }
}

let signedOut = false;

/** Closes (true) or opens (false) the gate for every request but the sign-in ones. */
export function setSignedOut(v) {
  signedOut = !!v;
}

function storage() {
  try { return window.localStorage; } catch { return null; }
}

export function setApiKey(key) {
  const s = storage();
  if (!s) return;
  if (key) s.setItem(KEY_STORAGE, key); else s.removeItem(KEY_STORAGE);
}

/** Whether this browser keeps an API key for the server. */
export function hasApiKey() {
  return !!storage()?.getItem(KEY_STORAGE);
}

function authHeaders(headers = {}, noKey = false) {
  const key = noKey ? null : storage()?.getItem(KEY_STORAGE);
  return key ? { ...headers, Authorization: `Bearer ${key}` } : headers;
}

/** A Retry-After header in seconds (0 when absent or a date). */
function retryAfterOf(value, detail) {
  const n = Number.parseInt(value || '', 10);
  if (Number.isFinite(n) && n > 0) return n;
  const m = /try again in (\d+) s/.exec(detail || '');
  return m ? Number(m[1]) : 0;
}

let online = true;
function announce(ok, detail) {
  if (ok === online) return;
  online = ok;
  bus.dispatchEvent(new CustomEvent(ok ? 'online' : 'offline', { detail }));
}

/**
 * The error of a failed response: its {"detail"} or its status line. A 401
 * is announced on `bus` unless `quiet` (the sign-in requests, whose 401 is
 * a wrong password).
 */
async function errorOf(res, quiet = false) {
  let body = null;
  let detail = `${res.status} ${res.statusText}`.trim();
  try {
    const text = await res.text();
    try {
      body = JSON.parse(text);
      if (body && typeof body.detail === 'string') detail = body.detail;
      else if (body && Array.isArray(body.detail)) detail = body.detail.map((d) => d.msg || String(d)).join('; ');
    } catch {
      if (text && text.length < 300) detail = text;
    }
  } catch { /* the body could not be read: keep the status line */ }
  if (res.status === 401 && !quiet) bus.dispatchEvent(new CustomEvent('auth', { detail }));
  return new ApiError(res.status, detail, body, res.status === 429 ? retryAfterOf(res.headers.get('Retry-After'), detail) : 0);
}

/**
 * fetch() against the API. Resolves to the Response when its status is 2xx;
 * rejects with ApiError otherwise (status 0 when the network failed, or
 * the AbortError itself when `signal` fired). `anon`: a sign-in request
 * (sent while signed out, its 401 not announced); `noKey`: without the
 * stored API key.
 */
export async function request(method, path, { json, body, headers = {}, signal, accept, anon = false, noKey = false } = {}) {
  if (signedOut && !anon) throw new ApiError(401, 'Sign in first');
  const h = authHeaders(headers, noKey);
  if (json !== undefined) {
    h['Content-Type'] = 'application/json';
    body = JSON.stringify(json);
  }
  if (accept) h.Accept = accept;
  let res;
  try {
    res = await fetch(API + path, { method, headers: h, body, signal, cache: 'no-store' });
  } catch (err) {
    if (err && err.name === 'AbortError') throw err;
    announce(false, String(err && err.message));
    throw new ApiError(0, 'Cannot reach the kvchat server (is it running?)');
  }
  announce(true);
  if (!res.ok) throw await errorOf(res, anon);
  return res;
}

/** request() and parse the JSON answer. */
export async function call(method, path, opts) {
  const res = await request(method, path, opts);
  const text = await res.text();
  try {
    return text ? JSON.parse(text) : null;
  } catch {
    throw new ApiError(res.status, 'The server sent an answer that is not JSON');
  }
}

export const get = (path, opts) => call('GET', path, opts);
export const post = (path, json, opts = {}) => call('POST', path, { ...opts, json });
export const patch = (path, json, opts = {}) => call('PATCH', path, { ...opts, json });
export const del = (path, opts) => call('DELETE', path, opts);

/**
 * The JSON payloads of a server-sent-event stream, one per `data:` event
 * (comment lines, used as heartbeats, are skipped). Ends when the server
 * closes the stream; throws the AbortError when the caller aborts.
 */
export async function* events(res) {
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let buf = '';
  let data = [];
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += decoder.decode(value, { stream: true });
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        let line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (line.endsWith('\r')) line = line.slice(0, -1);
        if (line === '') {
          if (data.length) {
            const payload = data.join('\n');
            data = [];
            let ev;
            try { ev = JSON.parse(payload); } catch { continue; }
            yield ev;
          }
        } else if (line.startsWith('data:')) {
          data.push(line.slice(line[5] === ' ' ? 6 : 5));
        }
        // other fields (event:, id:, comments) carry nothing the page uses
      }
    }
    if (data.length) {
      try { yield JSON.parse(data.join('\n')); } catch { /* a cut-off event */ }
    }
  } finally {
    reader.releaseLock();
  }
}

/**
 * Uploads one file (multipart field "file") with progress. Resolves to the
 * server's JSON; rejects with ApiError (400 unsupported type, 413 too large,
 * 422 extraction failed, 0 network). With onEvent the server is asked to
 * stream (Accept: text/event-stream): onEvent gets each {"event":
 * "progress", "stage", ...} while the upload waits for and runs its
 * extraction, and the last event ("done" or "error") settles the promise
 * as the plain answer would.
 */
export function upload(path, file, onProgress, onEvent) {
  if (signedOut) return Promise.reject(new ApiError(401, 'Sign in first'));
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open('POST', API + path);
    for (const [k, v] of Object.entries(authHeaders())) xhr.setRequestHeader(k, v);
    xhr.upload.addEventListener('progress', (ev) => {
      if (ev.lengthComputable && onProgress) onProgress(ev.loaded / ev.total);
    });
    let seen = 0;
    let last = null;
    const takeEvents = () => {
      // complete events only ("data: {...}" then a blank line)
      const text = xhr.responseText;
      let end;
      while ((end = text.indexOf('\n\n', seen)) >= 0) {
        const block = text.slice(seen, end);
        seen = end + 2;
        const data = block.split('\n').filter((l) => l.startsWith('data:'))
          .map((l) => l.slice(l[5] === ' ' ? 6 : 5)).join('\n');
        if (!data) continue;
        let ev;
        try { ev = JSON.parse(data); } catch { continue; }
        if (ev.event === 'progress') onEvent(ev); else last = ev;
      }
    };
    if (onEvent) {
      xhr.setRequestHeader('Accept', 'text/event-stream');
      xhr.addEventListener('progress', takeEvents);
    }
    xhr.addEventListener('load', () => {
      announce(true);
      if (onEvent && xhr.status === 200 && (xhr.getResponseHeader('Content-Type') || '').startsWith('text/event-stream')) {
        takeEvents();
        if (last && last.event === 'done') {
          const { event, ...body } = last;
          resolve(body);
        } else if (last && last.event === 'error') {
          reject(new ApiError(last.status || 500, last.detail || 'upload failed', last));
        } else {
          reject(new ApiError(0, 'the connection closed before the upload finished'));
        }
        return;
      }
      let body = null;
      try { body = JSON.parse(xhr.responseText); } catch { /* not JSON */ }
      if (xhr.status >= 200 && xhr.status < 300 && body) {
        resolve(body);
        return;
      }
      const detail = body && typeof body.detail === 'string' ? body.detail : `${xhr.status} ${xhr.statusText}`;
      if (xhr.status === 401) bus.dispatchEvent(new CustomEvent('auth', { detail }));
      reject(new ApiError(xhr.status, detail, body, xhr.status === 429 ? retryAfterOf(xhr.getResponseHeader('Retry-After'), detail) : 0));
    });
    xhr.addEventListener('error', () => {
      announce(false, 'upload failed');
      reject(new ApiError(0, 'Cannot reach the kvchat server (is it running?)'));
    });
    const form = new FormData();
    form.append('file', file, file.name);
    xhr.send(form);
  });
}
