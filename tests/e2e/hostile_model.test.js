// A test model that answers nothing but markup (xtask writes it: engine's `tiny_model` example)
// proves that whatever a model writes is shown as text and never runs.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { launchBrowser } from './browser.js';

const hostileUrl = process.env.VITRINA_HOSTILE_URL;
let browser;

before(async () => {
  assert.ok(hostileUrl, 'VITRINA_HOSTILE_URL is not set: run these tests with `cargo xtask test`');
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
});

test('HTML, scripts and javascript: links written by the model render as text', async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (error) => errors.push(error.message));
  await page.goto(hostileUrl);
  await page.waitForSelector('html[data-hydrated="true"]');
  await page.click('.chat-settings summary');
  await page.fill('#max-tokens', '6');
  await page.press('#max-tokens', 'Tab');
  await page.fill('#pregunta', '<b>¿Qué tal?</b>');
  await page.keyboard.press('Enter');
  await page.waitForSelector('.turn-model .answer-stats', { timeout: 60_000 });

  const answer = page.locator('.turn-model .bubble');
  const text = await answer.textContent();
  assert.ok(text.includes('<img src=x onerror="window.__xss=1">'), text);
  assert.ok(text.includes('<script>window.__xss=1</script>'), text);
  assert.ok(text.includes('clic'), text);
  assert.equal(await answer.locator('img, script').count(), 0);
  assert.equal(await page.locator('a[href^="javascript:"]').count(), 0);
  assert.equal(await page.locator('.turn-visitor b').count(), 0, "the visitor's own markup is text too");
  assert.equal(await page.textContent('.turn-visitor .question'), '<b>¿Qué tal?</b>');
  assert.equal(await page.evaluate(() => window.__xss), undefined);
  // And after a reload, from storage.
  await page.reload();
  await page.waitForSelector('.turn-model .bubble');
  assert.equal(await page.locator('.turn-model .bubble img, .turn-model .bubble script').count(), 0);
  assert.equal(await page.evaluate(() => window.__xss), undefined);
  assert.deepEqual(errors, []);
  await context.close();
});
