// The chat in a real browser, against the real server and model (SmolLM2): streaming, stop,
// settings, regenerate, reload, edit and resend, examples with context, the API section.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { baseUrl, launchBrowser } from './browser.js';

const artifacts = new URL('./artifacts/', import.meta.url).pathname;

let browser;

before(async () => {
  mkdirSync(artifacts, { recursive: true });
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
});

/// A fresh visitor (empty storage) on a hydrated page; `errors` collects console and page errors.
async function openChat(url = baseUrl) {
  const context = await browser.newContext();
  const page = await context.newPage();
  const errors = [];
  page.on('console', (message) => { if (message.type() === 'error') errors.push(message.text()); });
  page.on('pageerror', (error) => errors.push(error.message));
  await page.goto(url);
  await page.waitForSelector('html[data-hydrated="true"]');
  return { context, page, errors };
}

/// Waits until the answer number `index` (0-based) has finished: its stats are shown.
async function answerFinished(page, index) {
  await page.waitForFunction(
    (i) => document.querySelectorAll('.turn-model')[i]?.querySelector('.answer-stats') && document.querySelector('button.stop').hidden,
    index,
    { timeout: 120_000 },
  );
}

const bubbleTexts = (page) => page.$$eval('.turn .bubble', (bubbles) => bubbles.map((bubble) => bubble.textContent));

async function setMaxTokens(page, tokens) {
  if (!(await page.$eval('.chat-settings', (details) => details.open))) await page.click('.chat-settings summary');
  await page.fill('#max-tokens', String(tokens));
  await page.press('#max-tokens', 'Tab');
}

test('the chat streams, stops, regenerates, survives a reload and resends an edited question', async () => {
  const { context, page, errors } = await openChat();
  // Short answers, set in the settings panel: the test is about the chat, not the story.
  await setMaxTokens(page, 40);

  // Record every length the first answer takes on its way.
  await page.evaluate(() => {
    window.__answerLengths = [];
    new MutationObserver(() => {
      const bubble = document.querySelector('.turn-model .bubble');
      if (bubble) window.__answerLengths.push(bubble.textContent.length);
    }).observe(document.querySelector('.turns'), { subtree: true, childList: true, characterData: true });
  });
  const example = await page.textContent('.example-chip >> nth=0');
  await page.click('.example-chip >> nth=0');
  await page.waitForSelector('.turn-visitor .bubble');
  assert.equal(await page.textContent('.turn-visitor .question'), example);
  await answerFinished(page, 0);
  assert.ok((await page.textContent('.turn-model .bubble')).trim().length > 0, 'the model answered');
  const lengths = [...new Set(await page.evaluate(() => window.__answerLengths))].filter((n) => n > 0);
  assert.ok(lengths.length > 1, `the answer grew in several steps: ${lengths}`);
  assert.match(await page.textContent('.turn-model .answer-stats'), /\d+ tokens · [\d,]+ tok\/s · smollm2-135m Q4_1 · servidor \(CPU\)/);

  // A second question continues the conversation; Stop ends it early.
  await setMaxTokens(page, 400);
  await page.fill('#pregunta', 'Write a long story about a dragon.');
  await page.keyboard.press('Enter');
  await page.waitForFunction(() => (document.querySelectorAll('.turn-model .bubble')[1]?.textContent.length ?? 0) > 0, null, { timeout: 120_000 });
  await page.click('button.stop');
  await page.waitForFunction(() => document.querySelector('button.stop').hidden, null, { timeout: 30_000 });
  assert.equal(await page.locator('.turn').count(), 4);
  assert.equal(await page.isDisabled('button[type=submit]'), false);
  await setMaxTokens(page, 40);

  // Regenerate replaces the stopped answer with a whole new one, and keeps the stopped one
  // under «Respuestas anteriores».
  const stopped = await page.$eval('.turn-model >> nth=1', (turn) => turn.querySelector('.bubble').textContent);
  await page.click('button.regenerate');
  await answerFinished(page, 1);
  assert.equal(await page.locator('.turn').count(), 4);
  assert.equal(await page.$eval('.turn-model >> nth=1', (turn) => turn.querySelector('.earlier-answers li').textContent), stopped);

  // A reload finds the same conversation (earlier answers included) and settings.
  const before = await bubbleTexts(page);
  await page.reload();
  await page.waitForSelector('html[data-hydrated="true"]');
  await page.waitForFunction((n) => document.querySelectorAll('.turn').length === n, 4);
  assert.deepEqual(await bubbleTexts(page), before);
  assert.equal(await page.inputValue('#max-tokens'), '40');

  // Edit and resend the last question.
  await page.click('button.edit-last');
  assert.equal(await page.locator('.turn').count(), 2);
  assert.equal(await page.inputValue('#pregunta'), 'Write a long story about a dragon.');
  assert.equal(await page.evaluate(() => document.activeElement?.id), 'pregunta');
  await page.fill('#pregunta', 'Tell me a short story about a cat.');
  await page.keyboard.press('Enter');
  await answerFinished(page, 1);
  assert.equal(await page.textContent('.turn-visitor >> nth=1 >> .question'), 'Tell me a short story about a cat.');

  // An example with context shows its context apart from the question.
  await page.click('.example-chip >> nth=1');
  await answerFinished(page, 2);
  assert.match(await page.textContent('.turn-visitor >> nth=2 >> .context'), /Objetivos de Desarrollo Sostenible/);
  await page.screenshot({ path: `${artifacts}chat-es.png`, fullPage: true });
  await page.setViewportSize({ width: 360, height: 740 });
  const widths = await page.evaluate(() => ({ scroll: document.documentElement.scrollWidth, client: document.documentElement.clientWidth }));
  assert.ok(widths.scroll <= widths.client, `the chat is ${widths.scroll}px wide in a ${widths.client}px screen`);
  await page.locator('#chat').screenshot({ path: `${artifacts}chat-phone-es.png` });

  // Clearing is also remembered.
  await page.click('button.clear');
  assert.equal(await page.locator('.turn').count(), 0);
  await page.reload();
  await page.waitForSelector('html[data-hydrated="true"]');
  assert.equal(await page.locator('.turn').count(), 0);
  assert.deepEqual(errors, []);
  await context.close();
});

test('the API section shows examples for this very server', async () => {
  const { context, page, errors } = await openChat();
  await page.waitForFunction((origin) => document.querySelector('#api code.curl')?.textContent.includes(origin), baseUrl);
  assert.match(await page.textContent('#api code.curl'), new RegExp(`^curl ${baseUrl}/v1/chat/completions`));
  assert.match(await page.textContent('#api code.python'), new RegExp(`base_url="${baseUrl}/v1"`));
  assert.deepEqual(errors, []);
  await context.close();
});
