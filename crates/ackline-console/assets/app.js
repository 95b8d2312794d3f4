// ackline console. Plain JavaScript, no dependencies, no build step.
// Safety rule of this file: data from the server reaches the DOM through textContent or
// setAttribute of non-executable attributes only, never an HTML-parsing property: a payload is
// attacker-controlled. The session lives in an HttpOnly cookie; this script holds only the
// CSRF token, in memory.
'use strict';

const S = { csrf: null, role: null, page: null, timer: null, samples: [], queues: [],
  dlq: { queue: null, after: null, next: null, stack: [], selected: new Set(), filter: {}, view: 'text', detail: null } };
const MAX_SAMPLES = 300;   // 5 minutes at one per second
const POLL_MS = 1000;

const $ = (id) => document.getElementById(id);
function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === 'class') e.className = v; else if (k === 'text') e.textContent = v; else e.setAttribute(k, v);
  }
  for (const k of kids) e.append(k instanceof Node ? k : document.createTextNode(String(k)));
  return e;
}
function svg(tag, attrs) {
  const e = document.createElementNS('http://www.w3.org/2000/svg', tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  return e;
}
const fmtTime = (ms) => ms ? new Date(ms).toLocaleString() : '';
function fmtNum(n) {
  if (n === null || n === undefined || Number.isNaN(n)) return '–';
  if (Math.abs(n) >= 100 || Number.isInteger(n)) return Math.round(n).toLocaleString();
  return n.toFixed(1);
}
function fmtSecs(s) {
  if (s === null || s === undefined) return '–';
  if (s < 1) return (s * 1000).toFixed(s < 0.01 ? 2 : 0) + ' ms';
  if (s < 120) return s.toFixed(1) + ' s';
  return (s / 60).toFixed(1) + ' min';
}
function fmtDur(ms) { return fmtSecs(ms / 1000); }

class HttpError extends Error { constructor(status, msg) { super(msg); this.status = status; } }
async function api(method, path, body) {
  const headers = {};
  if (method !== 'GET') { headers['Content-Type'] = 'application/json'; if (S.csrf) headers['X-CSRF-Token'] = S.csrf; }
  const r = await fetch(path, { method, headers, credentials: 'same-origin', body: body === undefined ? undefined : JSON.stringify(body) });
  let data = null;
  try { data = await r.json(); } catch (_) { data = null; }
  if (!r.ok) {
    if (r.status === 401 && path !== '/ui/api/login') showLogin();
    throw new HttpError(r.status, (data && data.message) || r.statusText);
  }
  return data;
}

// ---- session --------------------------------------------------------------------------
function showLogin() {
  S.csrf = null; S.role = null;
  stopPolling();
  for (const p of document.querySelectorAll('.page')) p.hidden = true;
  $('nav').hidden = true; $('logout').hidden = true; $('who').textContent = '';
  $('login').hidden = false;
}
function signedIn(d) {
  S.csrf = d.csrf; S.role = d.role;
  document.body.classList.toggle('viewer', d.role !== 'admin');
  for (const b of document.querySelectorAll('button.admin')) if (d.role !== 'admin') b.disabled = true;
  $('who').textContent = d.role === 'admin' ? 'admin' : 'viewer (read only)';
  $('login').hidden = true; $('nav').hidden = false; $('logout').hidden = false;
  route();
}
$('login-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  $('login-error').textContent = '';
  const t = $('token');
  try {
    const d = await api('POST', '/ui/api/login', { token: t.value });
    t.value = '';
    signedIn(d);
  } catch (e) { $('login-error').textContent = e.message; }
});
$('logout').addEventListener('click', async () => {
  try { await api('POST', '/ui/api/logout', {}); } catch (_) { /* ended anyway */ }
  showLogin();
});

// ---- theme ----------------------------------------------------------------------------
function applyTheme(t) { if (t) document.documentElement.dataset.theme = t; else delete document.documentElement.dataset.theme; }
applyTheme(localStorage.getItem('ackline-theme'));
$('theme').addEventListener('click', () => {
  const dark = document.documentElement.dataset.theme
    ? document.documentElement.dataset.theme === 'dark'
    : matchMedia('(prefers-color-scheme: dark)').matches;
  const t = dark ? 'light' : 'dark';
  localStorage.setItem('ackline-theme', t); applyTheme(t);
});

// ---- pages ----------------------------------------------------------------------------
function route() {
  if (!S.csrf) return;
  const page = (location.hash || '#overview').slice(1).split('/')[0] || 'overview';
  S.page = ['overview', 'dlq', 'records'].includes(page) ? page : 'overview';
  for (const p of document.querySelectorAll('.page')) p.hidden = p.id !== S.page;
  for (const a of document.querySelectorAll('nav a')) a.classList.toggle('active', a.dataset.page === S.page);
  startPolling();
  if (S.page === 'dlq') dlqEnter();
}
window.addEventListener('hashchange', route);

function stopPolling() { if (S.timer) { clearTimeout(S.timer); S.timer = null; } }
function startPolling() { if (!S.timer) poll(); }
async function poll() {
  S.timer = null;
  try {
    const o = await api('GET', '/ui/api/overview');
    addSample(o);
    if (S.page === 'overview') renderOverview(o);
  } catch (e) {
    if (e.status === 401) return;
  }
  if (S.csrf) S.timer = setTimeout(poll, POLL_MS);
}

// ---- overview -------------------------------------------------------------------------
const COUNTERS = ['published', 'acked', 'nacked', 'dead_lettered', 'redelivered'];
function sum(qs, k) { return qs.reduce((a, q) => a + (q[k] || 0), 0); }
function quantile(bounds, counts, q) {
  const total = counts.reduce((a, b) => a + b, 0);
  if (total <= 0) return null;
  const rank = q * total; let seen = 0;
  for (let i = 0; i < counts.length; i++) {
    const c = counts[i];
    if (c > 0 && seen + c >= rank) {
      const lo = i === 0 ? 0 : bounds[i - 1];
      const hi = i < bounds.length ? bounds[i] : bounds[bounds.length - 1];
      return lo + (hi - lo) * ((rank - seen) / c);
    }
    seen += c;
  }
  return bounds[bounds.length - 1];
}
function addSample(o) {
  const t = Date.now();
  const s = { t, o, rates: {}, lat: {} };
  const prev = S.samples[S.samples.length - 1];
  if (prev) {
    const dt = (t - prev.t) / 1000;
    for (const k of COUNTERS) s.rates[k] = Math.max(0, (sum(o.queues, k) - sum(prev.o.queues, k)) / dt);
  }
  // Latency over the last minute: the histograms' difference with the sample ~60 s ago.
  const base = S.samples.find((x) => t - x.t <= 60000) || prev;
  for (const h of o.latency) {
    let counts = h.buckets;
    const old = base && base.o.latency.find((x) => x.name === h.name);
    if (old && old.buckets.length === counts.length) counts = counts.map((c, i) => Math.max(0, c - old.buckets[i]));
    s.lat[h.name] = { p50: quantile(h.bounds, counts, 0.5), p99: quantile(h.bounds, counts, 0.99) };
  }
  S.samples.push(s);
  if (S.samples.length > MAX_SAMPLES) S.samples.shift();
  S.queues = o.queues.map((q) => q.name);
}
function chart(box, series, fmt) {
  // Drawn at the box's pixel width (no stretched text); x spans the samples kept, at least
  // one minute, newest at the right.
  const W = Math.max(200, Math.round(box.clientWidth || 600)), H = 160, L = 44, B = 16;
  const all = series.flatMap((x) => x.values).filter((v) => v !== null && v !== undefined);
  const max = Math.max(1e-9, ...all) * 1.1;
  const n = Math.max(60, ...series.map((x) => x.values.length));
  const g = svg('svg', { viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: 'img' });
  for (const f of [0, 0.5, 1]) {
    const y = Math.round((H - B) * (1 - f)) + 0.5;
    g.append(svg('line', { x1: L, x2: W, y1: y, y2: y, class: 'axis' }));
    const tx = svg('text', { x: 0, y: Math.max(10, y + 3) }); tx.textContent = fmt(max * f); g.append(tx);
  }
  const x = (i) => (L + (W - L - 2) * i / (n - 1)).toFixed(1);
  for (const s of series) {
    const off = n - s.values.length;
    const pts = [];
    s.values.forEach((v, i) => { if (v !== null && v !== undefined) pts.push(`${x(off + i)},${((H - B) * (1 - v / max)).toFixed(1)}`); });
    g.append(svg('polyline', { points: pts.join(' '), class: s.cls }));
  }
  const span = Math.round(n * POLL_MS / 1000);
  const tx = svg('text', { x: L, y: H - 3 }); tx.textContent = span >= 120 ? `${Math.round(span / 60)} min ago` : `${span} s ago`; g.append(tx);
  const tn = svg('text', { x: W - 22, y: H - 3 }); tn.textContent = 'now'; g.append(tn);
  const legend = el('div', { class: 'legend' });
  for (const s of series) {
    const last = [...s.values].reverse().find((v) => v !== null && v !== undefined);
    legend.append(el('span', { 'data-series': s.key }, el('i', { class: s.cls }), s.name + ' ', el('b', { text: last === undefined ? '–' : fmt(last) })));
  }
  box.replaceChildren(g, legend);
}
function renderOverview(o) {
  const b = o.books;
  const right = b.stored + b.dead_lettered + b.pending + b.purged;
  const ok = right === b.published;
  const term = (label, id, v, op) => el('span', {}, op ? op + ' ' : '', label + ' ', el('b', { id, text: v.toLocaleString() }));
  $('books').replaceChildren(
    el('span', { class: 'muted', text: 'Books since start:' }),
    term('published', 'book-published', b.published),
    term(b.settled_as || 'stored', 'book-stored', b.stored, '='),
    term('dead-lettered', 'book-dead', b.dead_lettered, '+'),
    term('pending', 'book-pending', b.pending, '+'),
    ...(b.purged ? [term('purged', 'book-purged', b.purged, '+')] : []),
    el('span', { id: 'book-check', class: ok ? 'ok' : 'bad', text: ok ? '✓ balanced' : `✗ off by ${(b.published - right).toLocaleString()}` }));
  const ss = S.samples;
  chart($('chart-rates'), [
    ['publish', 'published', 'c1'], ['ack', 'acked', 'c2'], ['nack', 'nacked', 'c3'], ['dead-letter', 'dead_lettered', 'c4'], ['redelivery', 'redelivered', 'c5'],
  ].map(([name, k, cls]) => ({ name, key: k, cls, values: ss.map((s) => s.rates[k] ?? null) })), fmtNum);
  chart($('chart-depth'), [
    ['ready', 'ready', 'c1'], ['leased', 'leased', 'c2'], ['delayed', 'delayed', 'c3'], ['dead letters', 'dead_letters', 'c4'],
  ].map(([name, k, cls]) => ({ name, key: k, cls, values: ss.map((s) => sum(s.o.queues, k)) })), fmtNum);
  const lat = [];
  const names = { end_to_end: 'end-to-end', store_batch: 'store batch' };
  let c = 1;
  for (const h of o.latency) {
    for (const q of ['p50', 'p99']) lat.push({ name: `${names[h.name] || h.name} ${q}`, key: `${h.name}_${q}`, cls: 'c' + (c++), values: ss.map((s) => (s.lat[h.name] || {})[q] ?? null) });
  }
  chart($('chart-latency'), lat, fmtSecs);
  const st = o.store;
  $('store').replaceChildren(
    el('dt', { text: 'store' }), el('dd', { text: st.name }),
    el('dt', { text: 'state' }), el('dd', { id: 'store-state', class: 'state-' + st.state, text: st.state + (st.outage_ms !== null && st.outage_ms !== undefined ? ` for ${fmtDur(st.outage_ms)}` : '') }),
    el('dt', { text: 'circuit breaker' }), el('dd', { text: st.breaker }),
    ...(st.error ? [el('dt', { text: 'last error' }), el('dd', { text: st.error })] : []));
  $('relay').textContent = o.relay ? `relaying to ${o.relay}` : '';
  const last = ss[ss.length - 1], prev = ss[ss.length - 2];
  const tb = $('queues').tBodies[0];
  tb.replaceChildren(...o.queues.map((q) => {
    const p = prev && prev.o.queues.find((x) => x.name === q.name);
    const dt = prev ? (last.t - prev.t) / 1000 : 0;
    const rate = (k) => (p && dt > 0 ? fmtNum(Math.max(0, (q[k] - p[k]) / dt)) : '–');
    return el('tr', { 'data-queue': q.name }, el('td', { text: q.name }),
      ...['ready', 'leased', 'delayed', 'dead_letters'].map((k) => el('td', { class: 'num', 'data-k': k, text: q[k].toLocaleString() })),
      ...COUNTERS.map((k) => el('td', { class: 'num', text: rate(k) })));
  }));
  const sb = $('sessions').tBodies[0];
  sb.replaceChildren(...(o.sessions.length ? o.sessions.map((s) => el('tr', {}, el('td', { class: 'mono', text: s.name }), el('td', { text: s.queue }), el('td', { class: 'num', text: s.leases }), el('td', { class: 'num', text: fmtDur(s.idle_ms) })))
    : [el('tr', {}, el('td', { colspan: 4, class: 'muted', text: 'no consumer connected' }))]));
}

// ---- dead letters ---------------------------------------------------------------------
function dlqResult(text, ok) { const r = $('dlq-result'); r.textContent = text; r.className = 'result ' + (ok ? 'ok' : 'bad'); }
async function dlqEnter() {
  if (!S.queues.length) { try { addSample(await api('GET', '/ui/api/overview')); } catch (_) { return; } }
  const sel = $('dlq-queue');
  const cur = S.dlq.queue || S.queues[0];
  sel.replaceChildren(...S.queues.map((q) => el('option', { value: q, text: q })));
  sel.value = cur; S.dlq.queue = cur;
  const m = location.hash.match(/^#dlq\/([^/]+)\/(\d+)$/);
  if (m) { S.dlq.queue = decodeURIComponent(m[1]); sel.value = S.dlq.queue; }
  await dlqLoad(null);
  if (m) await dlqShow(Number(m[2]));
}
function localMs(id) { const v = $(id).value; return v ? String(new Date(v).getTime()) : null; }
function dlqFilter() {
  const f = {};
  if ($('f-reason').value) f.reason = $('f-reason').value;
  if ($('f-error').value) f.error = $('f-error').value;
  const since = localMs('f-since'), until = localMs('f-until');
  if (since) f.since = Number(since);
  if (until) f.until = Number(until);
  return f;
}
async function dlqLoad(after) {
  const q = new URLSearchParams({ limit: '50' });
  if (after !== null && after !== undefined) q.set('after', String(after));
  for (const [k, v] of Object.entries(S.dlq.filter)) q.set(k, String(v));
  let d;
  try { d = await api('GET', `/ui/api/queues/${encodeURIComponent(S.dlq.queue)}/dlq?${q}`); } catch (e) { dlqResult(e.message, false); return; }
  S.dlq.after = after; S.dlq.next = d.next_after; S.dlq.selected.clear(); updateSelection();
  $('next-page').disabled = d.next_after === null || d.next_after === undefined;
  const qv = S.samples.length ? S.samples[S.samples.length - 1].o.queues.find((x) => x.name === S.dlq.queue) : null;
  $('dlq-count').textContent = `${d.entries.length} shown` + (qv ? ` of ${qv.dead_letters.toLocaleString()} dead letters` : '');
  $('dlq-table').tBodies[0].replaceChildren(...(d.entries.length ? d.entries.map((r) => {
    const box = el('input', { type: 'checkbox', 'aria-label': `select ${r.key}` });
    box.addEventListener('click', (ev) => { ev.stopPropagation(); if (box.checked) S.dlq.selected.add(r.key); else S.dlq.selected.delete(r.key); updateSelection(); });
    const tr = el('tr', { class: 'pick', 'data-key': r.key }, el('td', {}, box), el('td', { class: 'num', text: r.key }), el('td', { class: 'clip mono', text: r.id }),
      el('td', { text: r.reason }), el('td', { class: 'num', text: r.attempts }), el('td', { text: fmtTime(r.last_failure) }),
      el('td', { class: 'clip', text: r.last_error }), el('td', { class: 'clip mono', text: r.payload_preview }));
    tr.addEventListener('click', () => { location.hash = `#dlq/${encodeURIComponent(S.dlq.queue)}/${r.key}`; dlqShow(r.key); });
    return tr;
  }) : [el('tr', {}, el('td', { colspan: 8, class: 'muted', text: 'no dead letters match' }))]));
}
function updateSelection() {
  const n = S.dlq.selected.size, admin = S.role === 'admin';
  $('replay-selected').disabled = !admin || n === 0;
  $('purge-selected').disabled = !admin || n === 0;
  $('replay-selected').textContent = n ? `Replay selected (${n})` : 'Replay selected';
  $('purge-selected').textContent = n ? `Purge selected (${n})` : 'Purge selected';
}
$('select-all').addEventListener('change', (ev) => {
  for (const tr of $('dlq-table').tBodies[0].rows) {
    const box = tr.querySelector('input'); if (!box) continue;
    box.checked = ev.target.checked;
    const k = Number(tr.dataset.key); if (box.checked) S.dlq.selected.add(k); else S.dlq.selected.delete(k);
  }
  updateSelection();
});
$('dlq-queue').addEventListener('change', (ev) => { S.dlq.queue = ev.target.value; S.dlq.stack = []; dlqLoad(null); });
$('dlq-filter').addEventListener('submit', (ev) => { ev.preventDefault(); S.dlq.filter = dlqFilter(); S.dlq.stack = []; dlqLoad(null); });
$('first-page').addEventListener('click', () => { S.dlq.stack = []; dlqLoad(null); });
$('next-page').addEventListener('click', () => { if (S.dlq.next !== null) { S.dlq.stack.push(S.dlq.after); dlqLoad(S.dlq.next); } });

function showPayload() {
  const d = S.dlq.detail; if (!d) return;
  const p = d.payload;
  let text = S.dlq.view === 'hex' ? p.hex.join('\n') : S.dlq.view === 'base64' ? p.base64 : p.escaped;
  if (p.truncated) text += `\n… (${p.len.toLocaleString()} bytes in all)`;
  $('d-payload').textContent = text;
  for (const b of document.querySelectorAll('.tabs button')) b.classList.toggle('active', b.dataset.view === S.dlq.view);
}
for (const b of document.querySelectorAll('.tabs button')) b.addEventListener('click', () => { S.dlq.view = b.dataset.view; showPayload(); });
async function dlqShow(key) {
  let d;
  try { d = await api('GET', `/ui/api/queues/${encodeURIComponent(S.dlq.queue)}/dlq/${key}`); } catch (e) { dlqResult(e.message, false); return; }
  S.dlq.detail = d;
  S.dlq.view = d.payload.is_text ? 'text' : 'hex';
  $('d-key').textContent = String(d.key);
  $('d-id').textContent = d.id; $('d-reason').textContent = d.reason; $('d-attempts').textContent = String(d.attempts);
  $('d-enqueued').textContent = fmtTime(d.enqueued_at); $('d-first').textContent = fmtTime(d.first_failure); $('d-last').textContent = fmtTime(d.last_failure);
  $('d-error').textContent = d.last_error;
  $('d-headers').textContent = d.headers.length ? d.headers.map(([k, v]) => `${k}: ${v}`).join('\n') : '(none)';
  $('d-len').textContent = `${d.payload.len.toLocaleString()} bytes, ${d.payload.is_text ? 'text' : 'binary or control characters: shown escaped (\\xNN)'}`;
  $('dlq-detail').hidden = false;
  showPayload();
}
function confirmDialog(text) {
  return new Promise((resolve) => {
    const dlg = $('confirm'); $('confirm-text').textContent = text;
    dlg.addEventListener('close', () => resolve(dlg.returnValue === 'ok'), { once: true });
    dlg.showModal();
  });
}
async function act(kind, body, what) {
  const path = `/ui/api/queues/${encodeURIComponent(S.dlq.queue)}/dlq/${kind}`;
  if (kind === 'purge') {
    if (!(await confirmDialog(`Purge ${what}? This cannot be undone.`))) { dlqResult('purge cancelled', true); return; }
    body.confirm = true;
  }
  try {
    const r = await api('POST', path, body);
    if (kind === 'replay') dlqResult(`replayed ${r.replayed} of ${r.selected} selected${r.more ? '; more match: replay again' : ''}`, true);
    else dlqResult(`purged ${r.purged}`, true);
    $('dlq-detail').hidden = true; S.dlq.detail = null;
    if (location.hash.startsWith('#dlq/')) history.replaceState(null, '', '#dlq');
    await dlqLoad(S.dlq.after);
  } catch (e) { dlqResult(`${kind} failed (${e.status}): ${e.message}`, false); }
}
$('replay-selected').addEventListener('click', () => act('replay', { keys: [...S.dlq.selected] }, `${S.dlq.selected.size} selected`));
$('purge-selected').addEventListener('click', () => act('purge', { keys: [...S.dlq.selected] }, `${S.dlq.selected.size} selected dead letters`));
function matching() { return Object.keys(S.dlq.filter).length ? { filter: S.dlq.filter } : { all: true }; }
$('replay-filter').addEventListener('click', () => act('replay', matching(), 'matching'));
$('purge-filter').addEventListener('click', () => act('purge', matching(), Object.keys(S.dlq.filter).length ? 'every dead letter matching the filter' : 'every dead letter of this queue'));
$('d-replay').addEventListener('click', () => S.dlq.detail && act('replay', { keys: [S.dlq.detail.key] }, 'this one'));
$('d-purge').addEventListener('click', () => S.dlq.detail && act('purge', { keys: [S.dlq.detail.key] }, `dead letter ${S.dlq.detail.key}`));

// ---- records --------------------------------------------------------------------------
$('rec-filter').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const q = new URLSearchParams({ limit: '200' });
  const since = localMs('r-since'), until = localMs('r-until');
  if (since) q.set('since', since);
  if (until) q.set('until', until);
  for (const [k, id] of [['severity', 'r-severity'], ['host', 'r-host'], ['app', 'r-app'], ['text', 'r-text']]) if ($(id).value) q.set(k, $(id).value);
  const out = $('rec-result');
  try {
    const d = await api('GET', `/ui/api/records?${q}`);
    out.textContent = `${d.records.length} record(s)`; out.className = 'result ok';
    $('rec-table').tBodies[0].replaceChildren(...d.records.map((r) => el('tr', {}, el('td', { text: r.timestamp }), el('td', { text: r.severity || '' }),
      el('td', { text: r.host || '' }), el('td', { text: r.app || '' }), el('td', { class: 'mono', text: r.message }))));
  } catch (e) { out.textContent = e.message; out.className = 'result bad'; }
});

// ---- start ----------------------------------------------------------------------------
(async () => {
  try { signedIn(await api('GET', '/ui/api/session')); } catch (_) { showLogin(); }
})();
