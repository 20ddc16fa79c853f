// The chat's browser fallback: the engine compiled to WebAssembly in a Web Worker answers when
// the server cannot, with the conversation so far, runs the team's own model when it fits,
// uses the visitor's threads on an isolated page, and gives the server's tokens at
// temperature 0 on any number of them.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { baseUrl, launchBrowser, launchProfile } from './browser.js';

const browserOnlyUrl = process.env.VITRINA_BROWSER_ONLY_URL;
const brokenModelUrl = process.env.VITRINA_BROKEN_MODEL_URL;
const notIsolatedUrl = process.env.VITRINA_NOT_ISOLATED_URL;
const convertedUrl = process.env.VITRINA_CONVERTED_URL;
const MODEL_FILE = /\/models\/[^/?]+\.gguf(\?|$)/;
let browser;

before(async () => {
  assert.ok(browserOnlyUrl && brokenModelUrl && notIsolatedUrl && convertedUrl, 'VITRINA_BROWSER_ONLY_URL is not set: run these tests with `cargo xtask test`');
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
});

/// A page that records what it sends to the browser model's worker and the model files it
/// downloads.
async function openPage(context, url) {
  const page = await context.newPage();
  const errors = [];
  // A server without a model answers /health with 503 on purpose; Chromium logs that.
  page.on('console', (message) => {
    if (message.type() === 'error' && !message.text().includes('status of 503')) errors.push(message.text());
  });
  page.on('pageerror', (error) => errors.push(error.message));
  const modelDownloads = [];
  page.on('response', (response) => { if (MODEL_FILE.test(response.url())) modelDownloads.push(response.status()); });
  await page.addInitScript(() => {
    window.__toWorker = [];
    const post = Worker.prototype.postMessage;
    Worker.prototype.postMessage = function (message, ...rest) {
      window.__toWorker.push(message);
      return post.call(this, message, ...rest);
    };
  });
  await page.goto(url);
  await page.waitForSelector('html[data-hydrated="true"]');
  return { page, errors, modelDownloads };
}

async function settings(page, { temperature, maxTokens, backend, threads }) {
  if (!(await page.$eval('.chat-settings', (details) => details.open))) await page.click('.chat-settings summary');
  await page.fill('#temperature', String(temperature));
  await page.press('#temperature', 'Tab');
  await page.fill('#max-tokens', String(maxTokens));
  await page.press('#max-tokens', 'Tab');
  if (threads) {
    await page.fill('#browser-threads', String(threads));
    await page.press('#browser-threads', 'Tab');
  }
  if (backend) await page.check(`#backend-${backend}`);
}

/// Asks `question` and waits for answer number `index` to finish; returns where it ran.
async function ask(page, question, index) {
  await page.fill('#pregunta', question);
  await page.keyboard.press('Enter');
  await page.waitForFunction(
    (i) => document.querySelectorAll('.turn-model')[i]?.querySelector('.answer-stats') || document.querySelector('.chat-error p'),
    index,
    { timeout: 300_000 },
  );
  const failure = await page.$eval('.chat-error', (element) => element.textContent);
  assert.equal(failure, '', 'no error');
  return page.textContent(`.turn-model >> nth=${index} >> .answer-stats`);
}

/// Rates the last answer 👍 and returns what the page says of it: the server stores a browser
/// answer only once its own copy of the browser model has written it again.
async function rateLast(page) {
  await page.click('.turn-model:last-of-type button.rate-up');
  await page.waitForFunction(() => /Gracias|No se pudo/.test(document.querySelector('.turn-model:last-of-type .feedback-status')?.textContent ?? ''), null, { timeout: 120_000 });
  return page.textContent('.turn-model:last-of-type .feedback-status');
}

const generateRequests = (page) => page.evaluate(() => window.__toWorker.map((m) => JSON.parse(m)).filter((m) => m.type === 'generate'));
const savedTurns = (page) => page.evaluate(() => JSON.parse(localStorage.getItem('vitrina-chat-v1')).turns);

test('with no model on the server, the browser downloads the team\'s model once with progress and answers, naming it', async () => {
  const described = await (await fetch(`${browserOnlyUrl}/models`)).json();
  assert.equal(described.name, 'qwen2.5-coder-0.5b', 'space.toml names no browser model: the server\'s own fits');
  const context = await launchProfile();
  const first = await openPage(context, browserOnlyUrl);
  await settings(first.page, { temperature: 0, maxTokens: 12 });
  const progressSeen = first.page.waitForSelector('.model-download progress', { timeout: 120_000 });
  const where = await ask(first.page, 'What is the capital of France?', 0);
  await progressSeen;
  assert.match(where, /qwen2\.5-coder-0\.5b Q4_K_M · tu navegador \(WASM · \d+ hilos?\)/);
  assert.ok((await first.page.textContent('.turn-model .bubble')).trim().length > 0);
  assert.match(await rateLast(first.page), /Gracias/, 'the server made the browser answer again');
  assert.deepEqual(first.modelDownloads, [200], 'one download of the model file');
  assert.deepEqual(first.errors, []);

  // A reload answers again from the browser's cache: no second download.
  const second = await openPage(context, browserOnlyUrl);
  await second.page.click('button.clear');
  const again = await ask(second.page, 'And the capital of Spain?', 0);
  assert.match(again, /qwen2\.5-coder-0\.5b Q4_K_M · tu navegador \(WASM/);
  assert.deepEqual(second.modelDownloads, [], 'the model came from the browser cache');
  assert.deepEqual(second.errors, []);
  await context.close();
});

test('when the server fails mid-conversation the browser answers with the earlier turns, then the server again', async () => {
  const context = await browser.newContext();
  const { page, errors } = await openPage(context, baseUrl);
  await settings(page, { temperature: 0, maxTokens: 12 });
  assert.match(await ask(page, 'What is the capital of France?', 0), /servidor \(CPU\)/);

  const failing = (route) => route.fulfill({
    status: 503,
    contentType: 'application/json',
    body: JSON.stringify({ error: { message: 'the model could not be loaded: simulated outage', type: 'service_unavailable' } }),
  });
  await page.route('**/v1/chat/completions', failing);
  assert.match(await ask(page, 'And the capital of Spain?', 1), /tu navegador \(WASM/);
  const [request] = await generateRequests(page);
  const contents = request.messages.map((message) => message.content);
  const [firstAnswer] = (await savedTurns(page)).filter((turn) => turn.speaker === 'Model').map((turn) => turn.text);
  assert.ok(contents.includes('What is the capital of France?') && contents.includes(firstAnswer), `history carried over: ${JSON.stringify(contents)}`);
  assert.equal(contents.at(-1), 'And the capital of Spain?');

  await page.unroute('**/v1/chat/completions', failing);
  assert.match(await ask(page, 'And of Italy?', 2), /servidor \(CPU\)/, 'back to the server once it answers');
  assert.deepEqual(errors.filter((error) => !error.includes('503')), []);
  await context.close();
});

const modelAnswers = async (page) => (await savedTurns(page)).filter((turn) => turn.speaker === 'Model').map((turn) => turn.text);

test('at temperature 0 the browser gives the same tokens as the server, on 1, 2 and 4 threads', async () => {
  const context = await browser.newContext();
  const { page, errors } = await openPage(context, baseUrl);
  assert.equal(await page.evaluate(() => window.crossOriginIsolated), true, 'the server sends COOP/COEP');
  await settings(page, { temperature: 0, maxTokens: 24, backend: 'browser', threads: 1 });
  assert.match(await ask(page, 'Name three colours of the rainbow.', 0), /tu navegador \(WASM · 1 hilo\)/);
  const [request] = await generateRequests(page);
  const [inBrowser] = await modelAnswers(page);

  const response = await fetch(`${baseUrl}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ messages: request.messages, temperature: 0, top_p: request.params.sampling.top_p, max_tokens: 24 }),
  });
  const onServer = (await response.json()).choices[0].message.content;
  assert.equal(inBrowser, onServer);
  assert.match(await rateLast(page), /Gracias/);

  // The threads share each matrix's rows; every row is added in one order, so the split
  // changes nothing.
  for (const threads of [2, 4]) {
    await page.click('button.clear');
    await page.waitForFunction(() => document.querySelectorAll('.turn').length === 0);
    await settings(page, { temperature: 0, maxTokens: 24, backend: 'browser', threads });
    const where = await ask(page, 'Name three colours of the rainbow.', 0);
    assert.match(where, new RegExp(`tu navegador \\(WASM · ${threads} hilos\\)`));
    assert.equal(await page.$('.thread-limit'), null, 'no reason given: it got what it asked');
    const [withThreads] = await modelAnswers(page);
    assert.equal(withThreads, onServer, `${threads} threads`);
  }

  // Sampled, the browser's answer is still the one the server's copy of its model writes.
  await page.click('button.clear');
  await settings(page, { temperature: 0.8, maxTokens: 16, threads: 2 });
  assert.match(await ask(page, 'Tell me a very short story.', 0), /tu navegador/);
  assert.match(await rateLast(page), /Gracias/);
  assert.deepEqual(errors, []);
  await context.close();
});

test('a checkpoint converted from safetensors answers in the browser with the server\'s tokens', async () => {
  // A tiny random Qwen3 in Hugging Face's format, converted by `tiny_checkpoint` as
  // `vitrina --prefetch` converts a team's model: the server serves the very file to browsers.
  const context = await browser.newContext();
  const { page, errors } = await openPage(context, convertedUrl);
  await settings(page, { temperature: 0, maxTokens: 12, backend: 'browser', threads: 1 });
  assert.match(await ask(page, 'Hola', 0), /tu navegador \(WASM · 1 hilo\)/);
  const [request] = await generateRequests(page);
  const [inBrowser] = await modelAnswers(page);
  const response = await fetch(`${convertedUrl}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ messages: request.messages, temperature: 0, top_p: request.params.sampling.top_p, max_tokens: 12 }),
  });
  const answer = await response.json();
  assert.equal(inBrowser, answer.choices[0].message.content);
  assert.ok(answer.usage.completion_tokens > 0, JSON.stringify(answer));
  assert.deepEqual(errors, []);
  await context.close();
});

test('a server whose model cannot load says why, and the page tells the visitor and answers in the browser', async () => {
  const response = await fetch(`${brokenModelUrl}/health`);
  assert.equal(response.status, 503);
  const health = await response.json();
  assert.equal(health.status, 'error');
  assert.match(health.message, /broken\.gguf/, 'the reason names the file');

  const context = await browser.newContext();
  const { page, errors } = await openPage(context, brokenModelUrl);
  await page.waitForSelector('.server-notice:not([hidden])');
  const notice = await page.textContent('.server-notice');
  assert.match(notice, /El modelo del servidor no está disponible: .*broken\.gguf/);
  assert.match(notice, /las respuestas vienen de tu navegador/);
  await settings(page, { temperature: 0, maxTokens: 8 });
  assert.match(await ask(page, 'Hola', 0), /smollm2-135m Q4_1 · tu navegador \(WASM/, 'the server\'s broken model gave way to the small one');
  assert.deepEqual(errors, []);
  await context.close();
});

test('served without the isolation headers, the browser runs on one thread and says why', async () => {
  const response = await fetch(notIsolatedUrl);
  assert.equal(response.headers.get('cross-origin-embedder-policy'), null);
  const context = await browser.newContext();
  const { page, errors } = await openPage(context, notIsolatedUrl);
  assert.equal(await page.evaluate(() => window.crossOriginIsolated), false);
  await settings(page, { temperature: 0, maxTokens: 8, threads: 2 });
  assert.match(await ask(page, 'Hola', 0), /tu navegador \(WASM · 1 hilo\)/);
  const why = await page.textContent('.turn-model .thread-limit');
  assert.match(why, /Un solo hilo: esta página no se sirvió aislada \(cabeceras COOP\/COEP\)/);
  assert.deepEqual(errors, []);
  await context.close();
});
