// The web page served at GET /. Kept as one raw string so the binary needs no files at run time.
// Everything a user or the API can name (person names, error messages) reaches the DOM through
// textContent only, never innerHTML, so a hostile name cannot inject markup.
#include "arcforge/serve/web_page.hpp"

namespace arcforge::serve {
namespace {

constexpr std::string_view kPage = R"page(<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>arcforge face search</title>
<style>
  :root { --ink: #1d2330; --muted: #6b7280; --line: #d9dde5; --accent: #2b59c3; --bad: #b42318; --good: #107c41; }
  * { box-sizing: border-box; }
  body { margin: 0; font: 14px/1.45 system-ui, sans-serif; color: var(--ink); background: #f5f6f8; }
  header { display: flex; flex-wrap: wrap; gap: 12px; align-items: center; padding: 10px 16px;
           background: #fff; border-bottom: 1px solid var(--line); }
  header h1 { font-size: 17px; margin: 0 12px 0 0; }
  label { color: var(--muted); }
  input, select, button { font: inherit; padding: 4px 8px; border: 1px solid var(--line); border-radius: 4px; }
  button { background: var(--accent); color: #fff; border-color: var(--accent); cursor: pointer; }
  button:disabled { opacity: .5; cursor: default; }
  button.delete { background: #fff; color: var(--bad); border-color: var(--bad); padding: 1px 8px; }
  #status { margin: 10px 16px 0; padding: 6px 10px; border-radius: 4px; background: #eef1f6; min-height: 32px;
            white-space: pre-wrap; word-break: break-word; }
  #status.error { background: #fdecea; color: var(--bad); }
  #status.ok { background: #e8f5ec; color: var(--good); }
  main { display: grid; grid-template-columns: minmax(0, 2fr) minmax(260px, 1fr); gap: 16px; padding: 16px; }
  section { background: #fff; border: 1px solid var(--line); border-radius: 6px; padding: 12px; }
  h2 { font-size: 15px; margin: 0 0 8px; }
  .row { display: flex; flex-wrap: wrap; gap: 8px; align-items: center; margin-bottom: 8px; }
  canvas { display: block; max-width: 100%; background: #eceff3; border-radius: 4px; }
  #matches { list-style: none; padding: 0; margin: 8px 0 0; }
  #matches > li { border-top: 1px solid var(--line); padding: 6px 0; }
  #matches ol { margin: 4px 0 0; padding-left: 22px; }
  .score { font-variant-numeric: tabular-nums; color: var(--muted); margin-left: 6px; }
  .none { color: var(--muted); }
  table { width: 100%; border-collapse: collapse; }
  td, th { text-align: left; padding: 4px 6px; border-bottom: 1px solid var(--line); }
  td.samples { font-variant-numeric: tabular-nums; }
  #enroll-result { min-height: 20px; margin-top: 6px; word-break: break-word; }
  @media (max-width: 800px) { main { grid-template-columns: 1fr; } }
</style>
</head>
<body>
<header>
  <h1>arcforge face search</h1>
  <label>Token <input id="token" type="password" autocomplete="off" placeholder="bearer token (optional)"></label>
  <label>Collection <select id="collection"></select></label>
  <button id="refresh" type="button">Refresh</button>
</header>
<div id="status" role="status" aria-live="polite">Loading…</div>
<main>
  <section>
    <h2>Photo</h2>
    <div class="row">
      <input id="file" type="file" accept="image/jpeg,image/png,image/webp">
      <label>k <input id="k" type="number" min="1" max="100" value="5" style="width: 5em"></label>
      <label>threshold <input id="threshold" type="number" step="0.01" placeholder="server" style="width: 6em"></label>
      <button id="search-button" type="button" disabled>Search</button>
      <span>Faces: <strong id="faces-count">0</strong></span>
    </div>
    <canvas id="canvas" width="640" height="360"></canvas>
    <ul id="matches"></ul>
  </section>
  <div>
    <section>
      <h2>Enrol the photo's largest face</h2>
      <div class="row">
        <input id="enroll-name" type="text" placeholder="person name" maxlength="128">
        <button id="enroll-button" type="button" disabled>Enrol</button>
      </div>
      <div id="enroll-result"></div>
    </section>
    <section style="margin-top: 16px">
      <h2>Persons <span id="persons-total" class="score"></span></h2>
      <table>
        <thead><tr><th>Name</th><th>Samples</th><th></th></tr></thead>
        <tbody id="persons"></tbody>
      </table>
    </section>
  </div>
</main>
<script>
'use strict';
const $ = (id) => document.getElementById(id);
const BOX_COLOUR = '#ff00c8';  // distinctive, used nowhere else: the UI test finds the boxes by it
const MAX_W = 720, MAX_H = 540;  // fits the photo column of a 1280-px window unscaled
// The current photo: base64 of its bytes (what the API gets), the decoded bitmap (what the canvas
// shows) and the size the server decoded it at (what its boxes are measured in).
const photo = { base64: null, bitmap: null, width: 0, height: 0 };
let pending = 0;

function setStatus(text, kind) {
  const s = $('status');
  s.textContent = text;
  s.className = kind;
  s.dataset.state = kind;
}

// One API call: JSON in, JSON out; a non-2xx answer becomes an Error carrying the server's message.
async function api(method, path, body) {
  const headers = {};
  const token = $('token').value.trim();
  if (token) headers['Authorization'] = 'Bearer ' + token;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  pending++;
  document.body.dataset.busy = 'true';
  try {
    const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    let data = null;
    try { data = await res.json(); } catch (e) { /* not JSON: report the status line */ }
    if (!res.ok) {
      const why = data && typeof data.error === 'string' ? data.error : res.statusText;
      throw new Error(`${method} ${decodeURI(path)}: ${res.status} ${why}`);
    }
    return data;
  } finally {
    if (--pending === 0) delete document.body.dataset.busy;
  }
}

// Runs a user action: "busy" while it runs, then its summary or its error in the status area.
async function run(label, action) {
  setStatus(label + '…', 'busy');
  try {
    setStatus(await action(), 'ok');
  } catch (e) {
    setStatus(e.message || String(e), 'error');
  }
}

function collectionPath() {
  const name = $('collection').value;
  if (!name) throw new Error('no collection selected');
  return '/v1/collections/' + encodeURIComponent(name);
}

async function loadCollections() {
  const data = await api('GET', '/v1/collections');
  const select = $('collection');
  const previous = select.value;
  select.replaceChildren(...data.collections.map(
      (c) => new Option(`${c.name} (${c.persons} persons, ${c.dim}-d, ${c.effective_index})`, c.name)));
  if (data.collections.some((c) => c.name === previous)) select.value = previous;
  await loadPersons();
  return `${data.collections.length} collection(s)`;
}

async function loadPersons() {
  const body = $('persons');
  if (!$('collection').value) { body.replaceChildren(); $('persons-total').textContent = ''; return; }
  const data = await api('GET', collectionPath() + '/persons?offset=0&limit=100');
  body.replaceChildren(...data.persons.map(personRow));
  $('persons-total').textContent = data.total > data.persons.length
      ? `(first ${data.persons.length} of ${data.total})` : `(${data.total})`;
}

function personRow(person) {
  const row = document.createElement('tr');
  row.dataset.person = person.name;
  const name = row.insertCell();
  name.className = 'name';
  name.textContent = person.name;
  const samples = row.insertCell();
  samples.className = 'samples';
  samples.textContent = person.samples;
  const remove = document.createElement('button');
  remove.type = 'button';
  remove.className = 'delete';
  remove.textContent = 'Delete';
  remove.addEventListener('click', () => {
    if (!confirm(`Delete ${person.name} and all their samples?`)) return;
    run('Deleting', async () => {
      await api('DELETE', `${collectionPath()}/persons/${encodeURIComponent(person.name)}`);
      await loadCollections();  // the counts in the selector too;
      return `deleted ${person.name}`;
    });
  });
  row.insertCell().append(remove);
  return row;
}

function readBase64(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(String(reader.result).replace(/^data:[^,]*,/, ''));
    reader.onerror = () => reject(new Error(`${file.name}: cannot read the file`));
    reader.readAsDataURL(file);
  });
}

// Draws the photo scaled to fit, and each face's box (in the server's pixel coordinates) with a label.
function draw(faces) {
  const canvas = $('canvas');
  const ctx = canvas.getContext('2d');
  const bmp = photo.bitmap;
  const scale = Math.min(1, MAX_W / bmp.width, MAX_H / bmp.height);
  canvas.width = Math.round(bmp.width * scale);
  canvas.height = Math.round(bmp.height * scale);
  ctx.drawImage(bmp, 0, 0, canvas.width, canvas.height);
  const sx = canvas.width / photo.width, sy = canvas.height / photo.height;
  ctx.lineWidth = 4;  // even width on whole pixels: the stroke covers full pixels in BOX_COLOUR
  ctx.font = 'bold 14px system-ui, sans-serif';
  faces.forEach((face, i) => {
    const [x1, y1, x2, y2] = face.box;
    const x = Math.round(x1 * sx), y = Math.round(y1 * sy);
    ctx.strokeStyle = BOX_COLOUR;
    ctx.strokeRect(x, y, Math.round((x2 - x1) * sx), Math.round((y2 - y1) * sy));
    const top = face.matches && face.matches[0];
    const label = `${i + 1}` + (top ? ` ${top.person} ${top.score.toFixed(3)}` : '');
    const w = Math.ceil(ctx.measureText(label).width) + 8;
    ctx.fillStyle = BOX_COLOUR;
    ctx.fillRect(x - 2, Math.max(0, y - 22), w, 20);
    ctx.fillStyle = '#fff';
    ctx.fillText(label, x + 2, Math.max(0, y - 22) + 15);
  });
  $('faces-count').textContent = faces.length;
}

function renderMatches(faces) {
  $('matches').replaceChildren(...faces.map((face, i) => {
    const item = document.createElement('li');
    item.className = 'face';
    const head = document.createElement('div');
    head.textContent = `Face ${i + 1}: box [${face.box.map(Math.round).join(', ')}], detector ${face.score.toFixed(2)}`;
    const list = document.createElement('ol');
    for (const m of face.matches) {
      const li = document.createElement('li');
      const person = document.createElement('span');
      person.className = 'person';
      person.textContent = m.person;
      const score = document.createElement('span');
      score.className = 'score';
      score.textContent = m.score.toFixed(3);
      li.append(person, score);
      list.append(li);
    }
    if (face.matches.length === 0) {
      const none = document.createElement('li');
      none.className = 'none';
      none.textContent = 'no match above the threshold';
      list.append(none);
    }
    item.append(head, list);
    return item;
  }));
}

function requirePhoto() {
  if (!photo.base64) throw new Error('choose a photo first');
}

$('file').addEventListener('change', () => run('Detecting', async () => {
  const file = $('file').files[0];
  Object.assign(photo, { base64: null, bitmap: null, width: 0, height: 0 });
  $('search-button').disabled = $('enroll-button').disabled = true;
  $('matches').replaceChildren();
  $('faces-count').textContent = '0';
  if (!file) throw new Error('no file chosen');
  const bitmap = await createImageBitmap(file).catch(() => { throw new Error(`${file.name}: the browser cannot decode this image`); });
  const base64 = await readBase64(file);
  Object.assign(photo, { base64, bitmap, width: bitmap.width, height: bitmap.height });
  draw([]);
  $('search-button').disabled = $('enroll-button').disabled = false;
  const det = await api('POST', '/v1/detect', { image: base64 });
  Object.assign(photo, { width: det.width, height: det.height });
  draw(det.faces);
  return `${file.name}: ${det.faces.length} face(s) in ${det.width}x${det.height}`;
}));

$('search-button').addEventListener('click', () => run('Searching', async () => {
  requirePhoto();
  const request = { image: photo.base64, k: Number($('k').value) || 5 };
  if ($('threshold').value !== '') request.threshold = Number($('threshold').value);
  const res = await api('POST', collectionPath() + '/search', request);
  draw(res.faces);
  renderMatches(res.faces);
  const top = res.matches[0];
  return top ? `best match for the largest face: ${top.person} (${top.score.toFixed(3)})`
             : 'no match above the threshold';
}));

$('enroll-button').addEventListener('click', () => run('Enrolling', async () => {
  const result = $('enroll-result');
  result.textContent = '';
  try {
    const name = $('enroll-name').value.trim();
    if (!name) throw new Error('type the person\'s name');
    requirePhoto();
    const res = await api('POST', `${collectionPath()}/persons/${encodeURIComponent(name)}/faces`, { image: photo.base64 });
    const message = `${res.created ? 'created' : 'added to'} ${res.person}: sample ${res.sample_id}, ` +
                    `${res.samples} sample(s), face score ${res.face.score.toFixed(2)}`;
    result.textContent = message;
    await loadCollections();
    return message;
  } catch (e) {
    result.textContent = e.message;
    throw e;
  }
}));

$('collection').addEventListener('change', () => run('Loading persons', async () => {
  await loadPersons();
  return `collection ${$('collection').value}`;
}));
$('refresh').addEventListener('click', () => run('Loading', loadCollections));
$('token').addEventListener('change', () => run('Loading', loadCollections));
run('Loading', loadCollections);
</script>
</body>
</html>
)page";

}  // namespace

std::string_view web_page_html() { return kPage; }

}  // namespace arcforge::serve
