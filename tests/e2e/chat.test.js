// The chat in a real browser: the answer streams in from the real server and model.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { baseUrl, launchBrowser } from './browser.js';

let browser;

before(async () => {
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
});

test('a question gets an answer that streams in, and can be stopped', async () => {
  const page = await browser.newPage();
  const errors = [];
  page.on('console', (message) => { if (message.type() === 'error') errors.push(message.text()); });
  page.on('pageerror', (error) => errors.push(error.message));
  await page.goto(baseUrl);
  await page.waitForSelector('html[data-hydrated="true"]');

  // Record every length the answer takes on its way.
  await page.evaluate(() => {
    window.__answerLengths = [];
    new MutationObserver(() => {
      const bubble = document.querySelector('.turn-model:last-child .bubble');
      if (bubble) window.__answerLengths.push(bubble.textContent.length);
    }).observe(document.querySelector('.turns'), { subtree: true, childList: true, characterData: true });
  });
  await page.fill('#pregunta', 'What is the capital of France?');
  await page.keyboard.press('Enter');
  await page.waitForSelector('.turn-visitor .bubble');
  assert.equal(await page.textContent('.turn-visitor .bubble'), 'What is the capital of France?');
  await page.waitForFunction(() => !document.querySelector('button.stop') || document.querySelector('button.stop').hidden, null, { timeout: 120_000 });
  const answer = await page.textContent('.turn-model .bubble');
  assert.ok(answer.trim().length > 0, 'the model answered');
  const lengths = [...new Set(await page.evaluate(() => window.__answerLengths))].filter((n) => n > 0);
  assert.ok(lengths.length > 1, `the answer grew in several steps: ${lengths}`);

  // A second question continues the conversation; Stop ends it early.
  await page.fill('#pregunta', 'Write a long story about a dragon.');
  await page.click('button[type=submit]');
  await page.waitForFunction(() => (document.querySelectorAll('.turn-model .bubble')[1]?.textContent.length ?? 0) > 0, null, { timeout: 120_000 });
  await page.click('button.stop');
  await page.waitForFunction(() => document.querySelector('button.stop').hidden, null, { timeout: 30_000 });
  assert.equal(await page.locator('.turn').count(), 4);
  assert.equal(await page.isDisabled('button[type=submit]'), false);

  await page.click('text=Borrar la conversación');
  assert.equal(await page.locator('.turn').count(), 0);
  assert.deepEqual(errors, []);
  await page.close();
});
