// MARIA's page: blank words, fill them token by token, score a text. Plain JS, no framework, no
// network beyond the server that served it. Every model call goes through `backend`, so another
// implementation (e.g. one running the same graphs in this browser with onnxruntime-web) can be
// swapped in without touching the UI.

// ---------------------------------------------------------------------------------------------
// Backends

class ApiError extends Error {
  constructor(code, message, status) {
    super(message);
    this.code = code;
    this.status = status;
  }
}

async function readError(res) {
  try {
    const body = await res.json();
    if (body && body.error) return new ApiError(body.error.code, body.error.message, res.status);
  } catch {
    // not JSON
  }
  return new ApiError('http_' + res.status, `the server answered ${res.status} ${res.statusText}`, res.status);
}

async function postJson(path, body, signal) {
  const res = await fetch(path, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body), signal });
  if (!res.ok) throw await readError(res);
  return res.json();
}

/** Parses a server-sent event stream from a fetch Response, calling onEvent(name, data). */
async function readEventStream(res, onEvent) {
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true }).replace(/\r\n?/g, '\n');
    let end;
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let event = 'message';
      const data = [];
      for (const line of block.split('\n')) {
        if (line.startsWith(':')) continue;
        const colon = line.indexOf(':');
        const field = colon < 0 ? line : line.slice(0, colon);
        const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
        if (field === 'event') event = value;
        else if (field === 'data') data.push(value);
      }
      if (data.length) onEvent(event, JSON.parse(data.join('\n')));
    }
  }
}

/**
 * The backend interface the UI uses:
 *   model()                          → /v1/model's JSON
 *   tokenize(text)                   → {ids, tokens, pieces}
 *   infill(req, onToken, {onStart, signal}) → the infill JSON; calls onStart(start) once, then
 *                                      onToken(token) per filled token as it is chosen
 *   score(req, {signal})             → the score JSON (nll, tokens, method, kind, token_logprobs, pieces)
 */
const serverBackend = {
  name: 'server',
  async model() {
    const res = await fetch('/v1/model');
    if (!res.ok) throw await readError(res);
    return res.json();
  },
  tokenize(text) {
    return postJson('/v1/tokenize', { text });
  },
  async infill(req, onToken, { onStart, signal } = {}) {
    const res = await fetch('/v1/infill', {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'text/event-stream' },
      body: JSON.stringify(req),
      signal,
    });
    if (!res.ok) throw await readError(res);
    let result = null;
    let failure = null;
    await readEventStream(res, (event, data) => {
      if (event === 'start') onStart?.(data);
      else if (event === 'token') onToken(data);
      else if (event === 'done') result = data;
      else if (event === 'error') failure = new ApiError(data.error.code, data.error.message, data.status);
    });
    if (failure) throw failure;
    if (!result) throw new ApiError('incomplete', 'the stream ended before the result', 0);
    return result;
  },
  score(req, { signal } = {}) {
    return postJson('/v1/score', req, signal);
  },
};

/** The backend in use: the server, or the same graphs in this browser (see "Where the models run"). */
let backend = serverBackend;

// ---------------------------------------------------------------------------------------------
// Helpers

const $ = (id) => document.getElementById(id);
const el = (tag, attrs = {}, ...children) => {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') node.className = v;
    else if (k === 'text') node.textContent = v;
    else if (k.startsWith('data-') || k.startsWith('aria-') || k === 'role' || k === 'tabindex' || k === 'id' || k === 'type') node.setAttribute(k, String(v));
    else node[k] = v;
  }
  for (const c of children) if (c !== null && c !== undefined) node.append(c);
  return node;
};
const pct = (logprob) => {
  const p = Math.exp(logprob) * 100;
  return p >= 10 ? `${p.toFixed(0)}%` : p >= 1 ? `${p.toFixed(1)}%` : p >= 0.01 ? `${p.toFixed(2)}%` : `${p.toExponential(0)}%`;
};
const fmt = (x, d = 2) => (Number.isFinite(x) ? x.toFixed(d).replace('-', '−') : String(x));
/** Makes whitespace visible in token displays. */
const visible = (s) => (s === '' ? '∅' : s.replace(/\n/g, '⏎').replace(/\t/g, '⇥'));

function setStatus(message, { error = false } = {}) {
  const s = $('status');
  s.textContent = message;
  s.classList.toggle('error', error);
}

// ---------------------------------------------------------------------------------------------
// Tooltip: one element, shown for the hovered or focused token, read as its description.

const tip = $('tip');
let tipOwner = null;

function showTip(target) {
  const content = target.tipContent?.();
  if (!content) return;
  tip.replaceChildren(content);
  tip.hidden = false;
  tipOwner = target;
  target.setAttribute('aria-describedby', 'tip');
  const r = target.getBoundingClientRect();
  const top = window.scrollY + r.bottom + 6;
  let left = window.scrollX + r.left;
  const width = tip.offsetWidth;
  left = Math.min(left, window.scrollX + document.documentElement.clientWidth - width - 8);
  tip.style.top = `${top}px`;
  tip.style.left = `${Math.max(8, left)}px`;
}

function hideTip(target) {
  if (target && target !== tipOwner) return;
  tip.hidden = true;
  tipOwner?.removeAttribute('aria-describedby');
  tipOwner = null;
}

for (const type of ['mouseover', 'focusin']) {
  document.addEventListener(type, (e) => {
    const t = e.target.closest?.('.tok[data-tip]');
    if (t) showTip(t);
  });
}
for (const type of ['mouseout', 'focusout']) {
  document.addEventListener(type, (e) => {
    const t = e.target.closest?.('.tok[data-tip]');
    if (t && !(e.relatedTarget && t.contains(e.relatedTarget))) hideTip(t);
  });
}
document.addEventListener('keydown', (e) => {
  if (e.key === 'Escape' && !tip.hidden) hideTip();
});

function tokenText(s) {
  return el('span', { class: 'tok-text', text: visible(s) });
}

// ---------------------------------------------------------------------------------------------
// Model info

let limits = { max_samples: 16 };

async function loadModel() {
  try {
    const m = await backend.model();
    if (backend === serverBackend) {
      limits = m.limits ?? limits;
      offerBrowserMode(m.in_browser);
    }
    const d = (x) => `${x.family}, ${x.layers} layers × ${x.hidden_size}, ${(x.parameters / 1e6).toFixed(1)}M parameters`;
    const where = backend === serverBackend ? '' : ' · running in this browser';
    $('model-info').textContent = `MLM: ${d(m.models.mlm)} · AR: ${d(m.models.ar)} · head: ${m.head.init} · context ${m.context} tokens · vocabulary ${m.vocab_size}${where}`;
    $('samples').max = String(limits.max_samples);
  } catch (err) {
    $('model-info').textContent = `Could not load the model description: ${err.message}`;
  }
}

// ---------------------------------------------------------------------------------------------
// Where the models run: the server, or this browser. The in-browser runner (/static/dist/
// maria-web.js, built by `npm run build:web`) fetches the bundle's graphs from /models/ and runs
// them with onnxruntime-web (WebAssembly); it answers the same calls with the same JSON.

let browserBackend = null; // loaded once, kept when switching back and forth
let browserLoading = null; // the promise of the load in progress

const runsOn = () => document.querySelector('input[name="runs-on"]:checked')?.value ?? 'server';
const mb = (n) => `${(n / 1e6).toFixed(1)} MB`;

function offerBrowserMode(info) {
  const radio = document.querySelector('input[name="runs-on"][value="browser"]');
  if (info && info.available === false) {
    radio.disabled = true;
    $('runs-on-info').textContent = `In-browser mode unavailable: ${info.reason}.`;
  }
}

function setRunsOn(value) {
  document.querySelector(`input[name="runs-on"][value="${value}"]`).checked = true;
}

async function loadBrowserBackend() {
  const progress = $('load-progress');
  const info = $('runs-on-info');
  progress.hidden = false;
  progress.removeAttribute('value');
  info.textContent = 'Loading the models into this browser…';
  const t0 = performance.now();
  const mod = await import('/static/dist/maria-web.js');
  const b = await mod.loadBrowserBackend({
    modelsUrl: '/models/',
    wasmUrl: '/static/dist/',
    maxSamples: limits.max_samples,
    onProgress(loaded, total) {
      progress.max = Math.max(1, total);
      progress.value = loaded;
      progress.setAttribute('aria-valuetext', `${mb(loaded)} of ${mb(total)}`);
      info.textContent = `Loading the models into this browser: ${mb(loaded)} of ${mb(total)}`;
    },
  });
  progress.hidden = true;
  const total = Object.values(b.maria.manifest.files).reduce((a, n) => a + n, 0);
  info.textContent = `Loaded ${mb(total)} of models in ${((performance.now() - t0) / 1000).toFixed(1)} s: infilling and scoring now run in this browser (WebAssembly).`;
  return b;
}

async function switchRunsOn() {
  const want = runsOn();
  running?.abort();
  if (want === 'server') {
    backend = serverBackend;
    if (browserBackend) $('runs-on-info').textContent = 'Infilling and scoring run on the server.';
    await loadModel();
    return;
  }
  if (!browserBackend) {
    browserLoading ??= loadBrowserBackend().finally(() => (browserLoading = null));
    try {
      browserBackend = await browserLoading;
    } catch (err) {
      $('load-progress').hidden = true;
      $('runs-on-info').textContent = `Could not run in this browser: ${err.message}`;
      if (runsOn() === 'browser') setRunsOn('server');
      backend = serverBackend;
      return;
    }
    if (runsOn() !== 'browser') return; // switched back while loading
  } else {
    $('runs-on-info').textContent = 'Infilling and scoring run in this browser (WebAssembly).';
  }
  backend = browserBackend;
  await loadModel();
}

for (const radio of document.querySelectorAll('input[name="runs-on"]')) radio.addEventListener('change', switchRunsOn);

// ---------------------------------------------------------------------------------------------
// Blanking

const textarea = $('text');

async function blankSelection() {
  let start = textarea.selectionStart;
  let end = textarea.selectionEnd;
  const value = textarea.value;
  if (start === end) {
    // No selection: the word at the caret.
    while (start > 0 && /\S/.test(value[start - 1])) start--;
    while (end < value.length && /\S/.test(value[end])) end++;
  }
  while (start < end && /\s/.test(value[start])) start++;
  while (end > start && /\s/.test(value[end - 1])) end--;
  if (start === end) {
    $('blank-info').textContent = 'Select a word or a span first.';
    textarea.focus();
    return;
  }
  const span = value.slice(start, end);
  // A space before the span belongs to the blank (byte-level tokens carry their leading space).
  const lead = start > 0 && value[start - 1] === ' ' ? ' ' : '';
  let n = 1;
  try {
    n = Math.max(1, (await backend.tokenize(lead + span)).ids.length);
  } catch (err) {
    n = Math.max(1, span.split(/\s+/).length);
    setStatus(`Could not count tokens (${err.message}); guessed ${n} from the words.`, { error: true });
  }
  const marker = n === 1 ? '[MASK]' : `[MASK:${n}]`;
  textarea.focus();
  textarea.setRangeText(marker, start, end, 'end');
  textarea.dispatchEvent(new Event('input', { bubbles: true }));
  $('blank-info').textContent = `Blanked “${span}” as ${marker} (${n} token${n === 1 ? '' : 's'}).`;
}

$('blank').addEventListener('click', blankSelection);

// ---------------------------------------------------------------------------------------------
// Filling

let running = null; // AbortController of the request in flight

function numberField(id, fallback) {
  const v = $(id).value.trim();
  if (v === '') return fallback;
  const n = Number(v);
  return Number.isFinite(n) ? n : fallback;
}

function filledTip(t) {
  return () => {
    const box = el('div');
    box.append(el('div', {}, 'chose ', tokenText(t.text), ` · p = ${pct(t.logprob)} · log p = ${fmt(t.logprob)}`));
    if (t.alternatives?.length) {
      const table = el('table', {}, el('caption', { class: 'muted', text: 'top alternatives' }));
      for (const a of t.alternatives) {
        table.append(el('tr', { class: a.id === t.id ? 'chosen' : '' }, el('td', {}, tokenText(a.text ?? a.token)), el('td', { text: pct(a.logprob) })));
      }
      box.append(table);
    }
    return box;
  };
}

function renderStart(start, seed) {
  const out = $('samples-out');
  out.replaceChildren();
  const columns = [];
  for (let b = 0; b < start.samples; b++) {
    const text = el('p', { class: 'sample-text' });
    const slots = new Map();
    for (const seg of start.segments) {
      if (seg.text !== undefined) text.append(seg.text);
      else {
        const slot = el('span', { class: 'tok pending', 'aria-label': 'blank', text: '…' });
        slots.set(seg.position, slot);
        text.append(slot);
      }
    }
    const total = el('span', { class: 'muted' });
    const actions = el('div', { class: 'actions' });
    const col = el('article', { class: 'sample', 'aria-label': `Sample ${b + 1}` }, el('h2', {}, `Sample ${b + 1}`, total), text, actions);
    out.append(col);
    columns.push({ slots, total, actions, logprob: 0 });
  }
  out.dataset.seed = String(seed);
  return columns;
}

function renderToken(columns, t) {
  const col = columns[t.sample];
  const slot = col?.slots.get(t.position);
  if (!slot) return;
  const lead = /^\s*/.exec(t.text)[0];
  const word = t.text.slice(lead.length);
  const mark = el('mark', { class: 'tok filled new', tabindex: 0, 'data-tip': '1', 'data-position': t.position }, visible(word === '' ? lead : word), el('span', { class: 'p', text: pct(t.logprob) }));
  mark.tipContent = filledTip(t);
  slot.replaceWith(...(lead && word ? [lead, mark] : [mark]));
  col.logprob += t.logprob;
  col.total.textContent = `log p ${fmt(col.logprob)}`;
}

async function fill() {
  if (running) running.abort();
  const text = textarea.value;
  if (!/\[MASK(?::\d+)?\]/.test(text)) {
    setStatus('There is nothing to fill: blank a word first (select it and press Blank it) or type [MASK].', { error: true });
    return;
  }
  const seedField = $('seed').value.trim();
  const seed = seedField === '' ? Math.floor(Math.random() * 2 ** 31) : Number(seedField);
  const req = {
    text,
    temperature: numberField('temperature', 0.8),
    samples: Math.round(numberField('samples', 1)),
    seed,
  };
  const topP = numberField('top-p', 1);
  if (topP < 1) req.top_p = topP;
  const ac = new AbortController();
  running = ac;
  $('fill').disabled = true;
  $('stop').disabled = false;
  const out = $('samples-out');
  out.setAttribute('aria-busy', 'true');
  setStatus('Filling…');
  const t0 = performance.now();
  let columns = [];
  let count = 0;
  try {
    const result = await backend.infill(
      req,
      (t) => {
        count++;
        renderToken(columns, t);
      },
      { onStart: (start) => (columns = renderStart(start, seed)), signal: ac.signal },
    );
    result.samples.forEach((s, b) => {
      const button = el('button', { type: 'button', text: 'Score this sample' });
      button.addEventListener('click', () => {
        selectTab('score');
        score(s.text);
      });
      columns[b]?.actions.append(button);
    });
    const ms = performance.now() - t0;
    const where = backend === serverBackend ? 'on the server' : 'in this browser';
    setStatus(`Filled ${count} token${count === 1 ? '' : 's'} in ${result.samples.length} sample${result.samples.length === 1 ? '' : 's'} in ${ms.toFixed(0)} ms ${where} (seed ${seed}).`);
  } catch (err) {
    if (err.name === 'AbortError') setStatus(`Stopped after ${count} token${count === 1 ? '' : 's'}.`);
    else setStatus(`Could not fill: ${err.message}`, { error: true });
  } finally {
    if (running === ac) running = null;
    out.setAttribute('aria-busy', 'false');
    $('fill').disabled = false;
    $('stop').disabled = true;
  }
}

$('fill-form').addEventListener('submit', (e) => {
  e.preventDefault();
  fill();
});
$('stop').addEventListener('click', () => running?.abort());

// ---------------------------------------------------------------------------------------------
// Scoring

const BUCKETS = [-1, -3, -6, -9];
const bucket = (lp) => {
  const i = BUCKETS.findIndex((b) => lp >= b);
  return `b${i < 0 ? BUCKETS.length : i}`;
};

async function score(text = textarea.value) {
  if (/\[MASK(?::\d+)?\]/.test(text)) {
    setStatus('The score view scores a full text: fill the blanks first (then “Score this sample”), or remove the [MASK] markers.', { error: true });
    return;
  }
  if (!text.trim()) {
    setStatus('There is no text to score.', { error: true });
    return;
  }
  const mode = document.querySelector('input[name="score-mode"]:checked')?.value ?? 'each';
  $('score').disabled = true;
  setStatus('Scoring…');
  const t0 = performance.now();
  try {
    const r = await backend.score({ text, mask: mode });
    const byPos = new Map((r.token_logprobs ?? []).map((t) => [t.position, t]));
    const out = $('score-out');
    out.replaceChildren();
    let first = true;
    r.pieces.forEach((piece, i) => {
      const t = byPos.get(i);
      if (!t || piece === '') {
        out.append(piece);
        return;
      }
      const lead = /^\s*/.exec(piece)[0];
      const word = piece.slice(lead.length);
      if (lead && word) out.append(lead);
      const span = el('span', { class: `tok ${bucket(t.logprob)}`, tabindex: first ? 0 : -1, 'data-tip': '1', 'data-logprob': t.logprob.toFixed(4) }, word || lead);
      span.tipContent = () => el('div', {}, tokenText(piece), ` · log p = ${fmt(t.logprob)} · p = ${pct(t.logprob)}`);
      out.append(span);
      first = false;
    });
    const how = r.kind === 'pseudo' ? 'each token given all the others (pseudo-log-likelihood)' : 'left to right, jointly (exact log-likelihood)';
    $('score-summary').textContent = `NLL ${fmt(r.nll, 3)} nats/token · perplexity ${fmt(Math.exp(r.nll), 1)} · ${r.tokens} tokens · ${how} · ${(performance.now() - t0).toFixed(0)} ms`;
    setStatus(`Scored ${r.tokens} tokens ${backend === serverBackend ? 'on the server' : 'in this browser'}.`);
  } catch (err) {
    setStatus(`Could not score: ${err.message}`, { error: true });
  } finally {
    $('score').disabled = false;
  }
}

$('score-form').addEventListener('submit', (e) => {
  e.preventDefault();
  score();
});

// Arrow keys move between scored tokens (one tab stop for the whole text).
$('score-out').addEventListener('keydown', (e) => {
  const keys = { ArrowRight: 1, ArrowDown: 1, ArrowLeft: -1, ArrowUp: -1, Home: -Infinity, End: Infinity };
  if (!(e.key in keys) || !e.target.classList.contains('tok')) return;
  const toks = [...$('score-out').querySelectorAll('.tok')];
  const i = toks.indexOf(e.target);
  const step = keys[e.key];
  const j = step === -Infinity ? 0 : step === Infinity ? toks.length - 1 : Math.min(toks.length - 1, Math.max(0, i + step));
  e.preventDefault();
  e.target.tabIndex = -1;
  toks[j].tabIndex = 0;
  toks[j].focus();
});

// ---------------------------------------------------------------------------------------------
// Tabs and shortcuts

const tabs = { fill: $('tab-fill'), score: $('tab-score') };

function selectTab(name, { focus = false } = {}) {
  for (const [key, tab] of Object.entries(tabs)) {
    const on = key === name;
    tab.setAttribute('aria-selected', String(on));
    tab.tabIndex = on ? 0 : -1;
    $(tab.getAttribute('aria-controls')).hidden = !on;
    if (on && focus) tab.focus();
  }
  hideTip();
}

for (const [name, tab] of Object.entries(tabs)) {
  tab.addEventListener('click', () => selectTab(name));
  tab.addEventListener('keydown', (e) => {
    if (e.key === 'ArrowRight' || e.key === 'ArrowLeft') {
      e.preventDefault();
      selectTab(name === 'fill' ? 'score' : 'fill', { focus: true });
    }
  });
}

textarea.addEventListener('keydown', (e) => {
  if ((e.ctrlKey || e.metaKey) && e.key === 'Enter') {
    e.preventDefault();
    if (tabs.fill.getAttribute('aria-selected') === 'true') fill();
    else score();
  } else if ((e.ctrlKey || e.metaKey) && (e.key === 'b' || e.key === 'B')) {
    e.preventDefault();
    blankSelection();
  }
});

// A reload may restore the radio to "in this browser"; start on the server either way.
setRunsOn('server');
loadModel();
