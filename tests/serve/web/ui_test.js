// Drives the served web page in headless Chromium against a running `arcforge serve` (real models, a
// bearer token) and checks what the page shows against the REST API called directly from here.
//
//   node ui_test.js --url http://127.0.0.1:PORT --token TOKEN --photos DIR --screenshot OUT.png
//                   [--chromium /usr/bin/chromium] [--scratch DIR]
//
// DIR is ../shared/faces/deepface (identities.csv names who is who). Exits 0 when every check
// passes, 1 with the failed check otherwise.
'use strict';
const fs = require('fs');
const path = require('path');
const zlib = require('zlib');
const assert = require('assert');
const puppeteer = require('puppeteer-core');

const BOX_COLOUR = [0xff, 0x00, 0xc8];  // the page's box colour (web_page.cpp BOX_COLOUR)
const WAIT_MS = 60000;

function parseArgs(argv) {
  const args = { chromium: '/usr/bin/chromium', scratch: require('os').tmpdir() };
  for (let i = 0; i < argv.length; i += 2) {
    if (!argv[i].startsWith('--') || argv[i + 1] === undefined) throw new Error(`bad argument ${argv[i]}`);
    args[argv[i].slice(2)] = argv[i + 1];
  }
  for (const need of ['url', 'token', 'photos', 'screenshot']) {
    if (!args[need]) throw new Error(`missing --${need}`);
  }
  return args;
}

// identities.csv (file,identity) -> Map identity -> [files], in file order.
function readIdentities(dir) {
  const byIdentity = new Map();
  const lines = fs.readFileSync(path.join(dir, 'identities.csv'), 'utf8').trim().split('\n').slice(1);
  for (const line of lines) {
    const [file, identity] = line.trim().split(',');
    if (!byIdentity.has(identity)) byIdentity.set(identity, []);
    byIdentity.get(identity).push(file);
  }
  return byIdentity;
}

// The REST API called directly: the independent reference for what the page displays.
async function apiCall(args, method, route, body) {
  const res = await fetch(args.url + route, {
    method,
    headers: { Authorization: `Bearer ${args.token}`, 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, body: await res.json() };
}

// Minimal PNG encoder/decoder (8-bit greyscale out; 8-bit RGB/RGBA in, no interlace): enough for a
// face-free test image and for reading Chromium's screenshots.
const crcTable = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});
function crc32(buf) {
  let c = 0xffffffff;
  for (const b of buf) c = crcTable[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}
function pngChunk(type, data) {
  const out = Buffer.alloc(12 + data.length);
  out.writeUInt32BE(data.length, 0);
  out.write(type, 4, 'latin1');
  data.copy(out, 8);
  out.writeUInt32BE(crc32(out.subarray(4, 8 + data.length)), 8 + data.length);
  return out;
}
function encodeGreyPng(width, height, valueAt) {
  const raw = Buffer.alloc((width + 1) * height);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) raw[y * (width + 1) + 1 + x] = valueAt(x, y);
  }
  const header = Buffer.alloc(13);
  header.writeUInt32BE(width, 0);
  header.writeUInt32BE(height, 4);
  header[8] = 8;  // bit depth; colour type 0 (grey), compression/filter/interlace 0
  return Buffer.concat([Buffer.from('89504e470d0a1a0a', 'hex'), pngChunk('IHDR', header),
                        pngChunk('IDAT', zlib.deflateSync(raw)), pngChunk('IEND', Buffer.alloc(0))]);
}
function decodePng(buf) {
  assert.strictEqual(buf.subarray(0, 8).toString('hex'), '89504e470d0a1a0a', 'screenshot is not a PNG');
  let pos = 8, width = 0, height = 0, channels = 0;
  const idat = [];
  while (pos < buf.length) {
    const len = buf.readUInt32BE(pos), type = buf.toString('latin1', pos + 4, pos + 8);
    const data = buf.subarray(pos + 8, pos + 8 + len);
    if (type === 'IHDR') {
      width = data.readUInt32BE(0);
      height = data.readUInt32BE(4);
      assert.strictEqual(data[8], 8, 'PNG bit depth');
      assert.strictEqual(data[12], 0, 'PNG interlace');
      channels = { 2: 3, 6: 4 }[data[9]];
      assert.ok(channels, `PNG colour type ${data[9]}`);
    } else if (type === 'IDAT') {
      idat.push(data);
    }
    pos += 12 + len;
  }
  const raw = zlib.inflateSync(Buffer.concat(idat));
  const stride = width * channels, pixels = Buffer.alloc(stride * height);
  for (let y = 0; y < height; y++) {
    const filter = raw[y * (stride + 1)], line = raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1));
    for (let i = 0; i < stride; i++) {
      const a = i >= channels ? pixels[y * stride + i - channels] : 0;
      const b = y > 0 ? pixels[(y - 1) * stride + i] : 0;
      const c = i >= channels && y > 0 ? pixels[(y - 1) * stride + i - channels] : 0;
      const p = a + b - c, pa = Math.abs(p - a), pb = Math.abs(p - b), pc = Math.abs(p - c);
      const predictor = [0, a, b, (a + b) >> 1, pa <= pb && pa <= pc ? a : pb <= pc ? b : c][filter];
      assert.ok(predictor !== undefined, `PNG filter ${filter}`);
      pixels[y * stride + i] = (line[i] + predictor) & 0xff;
    }
  }
  return { width, height, channels, pixels };
}

// Runs one page action and waits for its outcome in #status: the page sets data-state to "busy"
// while it works, then "ok" or "error". The marker set first makes a stale outcome unmistakable.
async function act(page, action) {
  await page.$eval('#status', (s) => { s.dataset.state = 'test-waiting'; });
  await action();
  await page.waitForFunction(() => {
    const s = document.querySelector('#status').dataset.state;
    return (s === 'ok' || s === 'error') && !document.body.dataset.busy;
  }, { timeout: WAIT_MS });
  return page.$eval('#status', (s) => ({ state: s.dataset.state, text: s.textContent }));
}

function expectState(outcome, state, what) {
  assert.strictEqual(outcome.state, state, `${what}: status "${outcome.text}"`);
  console.log(`ok: ${what}: ${outcome.text}`);
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const identities = readIdentities(args.photos);
  const [aliceFiles, bobFiles] = [identities.get('id00'), identities.get('id01')];
  const alice = 'Ada Lovelace-\u00e9', bob = 'Bob';  // a space and non-ASCII: the page must percent-encode
  const [enrolPhoto, queryPhoto, bobPhoto] = [aliceFiles[0], aliceFiles[1], bobFiles[0]].map((f) => path.join(args.photos, f));
  const facelessPhoto = path.join(args.scratch, 'gradient.png');
  fs.writeFileSync(facelessPhoto, encodeGreyPng(320, 240, (x, y) => (x + y) % 256));

  const browser = await puppeteer.launch({
    executablePath: args.chromium,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--headless=new'],
  });
  const pageErrors = [];
  try {
    const page = await browser.newPage();
    await page.setViewport({ width: 1280, height: 900 });
    page.on('pageerror', (e) => pageErrors.push(e.message));
    page.on('dialog', (d) => d.accept());  // the delete confirmation

    // Without the token the collection list is refused, and the page says so.
    await page.goto(args.url + '/', { waitUntil: 'load' });
    await page.waitForFunction(() => ['ok', 'error'].includes(document.querySelector('#status').dataset.state),
                               { timeout: WAIT_MS });
    const first = await page.$eval('#status', (s) => ({ state: s.dataset.state, text: s.textContent }));
    expectState(first, 'error', 'no token');
    assert.match(first.text, /401/, 'the missing token should surface as a 401');

    let out = await act(page, async () => {
      await page.type('#token', args.token);
      await page.keyboard.press('Tab');  // commits the field: "change" reloads the collections
    });
    expectState(out, 'ok', 'token accepted');
    const collections = await apiCall(args, 'GET', '/v1/collections');
    const options = await page.$$eval('#collection option', (os) => os.map((o) => o.value));
    assert.deepStrictEqual(options, collections.body.collections.map((c) => c.name), 'collection options');

    // A photo without a face: 0 boxes, and enrolling it shows the API's 422 message.
    out = await act(page, async () => (await page.$('#file')).uploadFile(facelessPhoto));
    expectState(out, 'ok', 'faceless photo detected');
    assert.strictEqual(await page.$eval('#faces-count', (e) => e.textContent), '0');
    await page.type('#enroll-name', alice);
    out = await act(page, () => page.click('#enroll-button'));
    expectState(out, 'error', 'enrolling a faceless photo is refused');
    assert.match(out.text, /: 422 .*face/i);
    assert.strictEqual(await page.$eval('#enroll-result', (e) => e.textContent), out.text);

    // Enrol two people.
    for (const [name, photo] of [[alice, enrolPhoto], [bob, bobPhoto]]) {
      out = await act(page, async () => (await page.$('#file')).uploadFile(photo));
      expectState(out, 'ok', `detect ${path.basename(photo)}`);
      const detected = await apiCall(args, 'POST', '/v1/detect', { image: fs.readFileSync(photo).toString('base64') });
      assert.strictEqual(await page.$eval('#faces-count', (e) => e.textContent), String(detected.body.faces.length),
                         `${photo}: face count shown vs /v1/detect`);
      await page.$eval('#enroll-name', (e) => { e.value = ''; });
      await page.type('#enroll-name', name);
      out = await act(page, () => page.click('#enroll-button'));
      expectState(out, 'ok', `enrol ${name}`);
      assert.ok(out.text.includes(name), 'the enrol result names the person');
    }
    const rows = await page.$$eval('#persons tr', (trs) => trs.map((tr) => [tr.dataset.person,
        tr.querySelector('.samples').textContent]));
    const listed = await apiCall(args, 'GET', '/v1/collections/default/persons?offset=0&limit=100');
    assert.deepStrictEqual(rows, listed.body.persons.map((p) => [p.name, String(p.samples)]), 'persons table vs API');
    assert.deepStrictEqual(rows.map((r) => r[0]).sort(), [alice, bob].sort(), 'both persons listed');

    // Another photo of the first person: one face, whose best match is that person.
    out = await act(page, async () => (await page.$('#file')).uploadFile(queryPhoto));
    expectState(out, 'ok', `detect ${path.basename(queryPhoto)}`);
    out = await act(page, () => page.click('#search-button'));
    expectState(out, 'ok', 'search');
    assert.strictEqual(await page.$eval('#faces-count', (e) => e.textContent), '1', 'one face in the query photo');
    const shown = await page.$$eval('#matches > li.face', (faces) => faces.map((f) =>
        [...f.querySelectorAll('ol > li')].filter((li) => li.querySelector('.person')).map((li) =>
            [li.querySelector('.person').textContent, li.querySelector('.score').textContent])));
    const reference = await apiCall(args, 'POST', '/v1/collections/default/search',
                                    { image: fs.readFileSync(queryPhoto).toString('base64'), k: 5 });
    assert.strictEqual(reference.status, 200);
    assert.strictEqual(shown.length, 1, 'one face listed under the matches');
    assert.deepStrictEqual(shown[0], reference.body.faces[0].matches.map((m) => [m.person, m.score.toFixed(3)]),
                           'matches shown vs the API');
    assert.strictEqual(shown[0][0][0], alice, 'the enrolled person is the top match');
    assert.ok(Number(shown[0][0][1]) > 0, 'top score is positive');
    console.log(`ok: top match ${shown[0][0][0]} score ${shown[0][0][1]}`);

    // The screenshot shows the photo (many colours) with its box drawn in the box colour.
    await page.screenshot({ path: args.screenshot, fullPage: true });
    const png = decodePng(fs.readFileSync(args.screenshot));
    const colours = new Set();
    let boxPixels = 0;
    for (let i = 0; i < png.pixels.length; i += png.channels) {
      const [r, g, b] = png.pixels.subarray(i, i + 3);
      colours.add((r << 16) | (g << 8) | b);
      if (r === BOX_COLOUR[0] && g === BOX_COLOUR[1] && b === BOX_COLOUR[2]) boxPixels++;
    }
    console.log(`ok: screenshot ${png.width}x${png.height}, ${colours.size} colours, ${boxPixels} box pixels`);
    assert.ok(colours.size >= 1000, `the screenshot looks blank (${colours.size} colours)`);
    assert.ok(boxPixels >= 400, `no face box drawn in the screenshot (${boxPixels} pixels)`);

    // Delete the second person from the table.
    out = await act(page, () => page.click(`#persons tr[data-person="${bob}"] button.delete`));
    expectState(out, 'ok', `delete ${bob}`);
    const remaining = await page.$$eval('#persons tr', (trs) => trs.map((tr) => tr.dataset.person));
    assert.deepStrictEqual(remaining, [alice], 'the table after delete');
    assert.strictEqual((await apiCall(args, 'GET', `/v1/collections/default/persons/${bob}`)).status, 404);

    assert.deepStrictEqual(pageErrors, [], 'uncaught errors in the page');
  } finally {
    await browser.close();
  }
  console.log('ui_test: all checks passed');
}

main().catch((e) => {
  console.error(`ui_test: FAILED: ${e.message}`);
  process.exit(1);
});
