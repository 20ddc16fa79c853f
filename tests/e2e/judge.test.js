// The judges' page and the feedback loop in a real browser, against the real server: the
// checklist and model facts render, «Ejecutar todos los ejemplos» streams every example beside
// the base model ([compare]), and a 👍 given in the chat becomes a permalink and a DPO pair.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { baseUrl, launchBrowser } from './browser.js';

let browser;

before(async () => { browser = await launchBrowser(); });
after(async () => { await browser?.close(); });

async function open(path) {
  const context = await browser.newContext();
  const page = await context.newPage();
  const errors = [];
  page.on('console', (message) => { if (message.type() === 'error') errors.push(message.text()); });
  page.on('pageerror', (error) => errors.push(error.message));
  await page.goto(baseUrl + path);
  await page.waitForSelector('html[data-hydrated="true"]');
  return { context, page, errors };
}

test('the judges page shows the checklist and the model facts, and runs every example beside the base model', async () => {
  // The base model loads after the team's: wait until the page says it is ready.
  let { context, page, errors } = await open('/jurado');
  for (let tries = 0; !(await page.$$eval('table.facts caption', (captions) => captions.some((caption) => caption.textContent.includes('comparación')))); tries++) {
    assert.ok(tries < 60, 'the compare model never appeared');
    await page.waitForTimeout(1000);
    await page.reload();
  }
  await page.waitForSelector('html[data-hydrated="true"]');

  const checks = await page.$$eval('li.check', (items) => items.map((item) => ({ passed: item.classList.contains('check-pass'), text: item.textContent })));
  assert.ok(checks.length >= 20, `only ${checks.length} checks`);
  // The shipped space.toml is the template: its placeholders are reported, each with its reason.
  assert.ok(checks.some((check) => !check.passed && check.text.includes('Motivación') && check.text.includes('plantilla')), JSON.stringify(checks));
  assert.ok(checks.some((check) => check.passed && check.text.includes('Licencia en los metadatos')));
  const summary = await page.$eval('.checks-summary', (element) => [Number(element.dataset.passed), Number(element.dataset.total)]);
  assert.equal(summary[1], checks.length);
  assert.equal(summary[0], checks.filter((check) => check.passed).length);
  const facts = await page.$eval('table.facts', (table) => table.textContent);
  assert.match(facts, /smollm2-135m/);
  assert.match(facts, /Q4_1/);
  assert.match(facts, /[0-9a-f]{64}/);

  const examples = await page.$$eval('li.example-run', (runs) => runs.length);
  assert.ok(examples >= 1);
  await page.click('button.run-examples');
  await page.waitForFunction(
    (count) => document.querySelectorAll('.example-answer[data-state="done"]').length === count,
    examples * 2,
    { timeout: 300_000 },
  );
  const answers = await page.$$eval('.example-run', (runs) => runs.map((run) => [...run.querySelectorAll('.example-answer .bubble')].map((bubble) => bubble.textContent)));
  for (const [fineTuned, base] of answers) {
    assert.ok(fineTuned.trim().length > 0 && base.trim().length > 0, JSON.stringify(answers));
    // The same model twice, same seed and settings: the same answer.
    assert.equal(fineTuned, base);
  }
  assert.deepEqual(errors, []);
  await context.close();
});

test('a liked answer gets a permalink, and with the regenerated one it becomes a DPO pair', async () => {
  const { context, page, errors } = await open('/');
  if (!(await page.$eval('.chat-settings', (details) => details.open))) await page.click('.chat-settings summary');
  await page.fill('#max-tokens', '12');
  await page.press('#max-tokens', 'Tab');
  const question = `¿Qué es un corpus? (${Date.now()})`;
  await page.fill('#pregunta', question);
  await page.press('#pregunta', 'Enter');
  const finished = () => page.waitForFunction(() => document.querySelector('.turn-model .answer-stats') && document.querySelector('button.stop').hidden, null, { timeout: 120_000 });
  await finished();
  await page.click('button.regenerate');
  await page.waitForFunction(() => document.querySelector('.earlier-answers:not([hidden])'), null, { timeout: 120_000 });
  await finished();
  // The answers as the model wrote them (the bubbles show them rendered as Markdown).
  const [chosen, rejected] = await page.evaluate(() => {
    const answer = JSON.parse(localStorage.getItem('vitrina-chat-v1')).turns.at(-1);
    return [answer.text, answer.earlier[0].text];
  });

  await page.click('.turn-model button.rate-up');
  await page.waitForFunction(() => document.querySelector('.turn-model .feedback-status')?.textContent.includes('Gracias'));
  assert.equal(await page.$eval('.turn-model button.rate-up', (button) => button.getAttribute('aria-pressed')), 'true');
  await page.click('.turn-model .feedback-comment summary');
  await page.fill('.turn-model .feedback-comment textarea', 'Clara y breve');
  await page.click('.turn-model .feedback-comment button[type="submit"]');
  const permalink = await page.waitForSelector('.turn-model a.permalink');
  await permalink.click();
  await page.waitForURL(/\/respuesta\/[0-9a-f]{16}$/);
  // The router may navigate in the page: the stored answer then arrives after the URL changes.
  await page.waitForFunction((text) => document.querySelector('main')?.textContent.includes(text), question);
  const stored = await page.textContent('main');
  assert.ok(stored.includes(question), stored);
  assert.ok(stored.includes('Clara y breve'), stored);
  assert.match(stored, /[0-9a-f]{64}/);
  // Same model, settings and seed on the same server: the very same answer.
  await page.waitForSelector('html[data-hydrated="true"]');
  await page.click('button.reproduce');
  await page.waitForFunction(() => document.querySelector('.reproduction-verdict')?.textContent.length > 0, null, { timeout: 120_000 });
  assert.match(await page.textContent('.reproduction-verdict'), /Idéntica/);

  // The team's exports hold the pair.
  const dpo = await fetch(`${baseUrl}/v1/export/dpo.jsonl`, { headers: { Authorization: `Bearer ${process.env.VITRINA_ADMIN_TOKEN}` } });
  assert.equal(dpo.status, 200);
  const pairs = (await dpo.text()).trim().split('\n').filter(Boolean).map((line) => JSON.parse(line));
  // TRL's conversational form: the whole signed conversation as the prompt, each answer a message.
  const pair = pairs.find((candidate) => candidate.prompt.at(-1)?.content === question);
  assert.ok(pair, JSON.stringify(pairs));
  assert.equal(pair.prompt.at(-1).role, 'user');
  assert.deepEqual(pair.chosen, [{ role: 'assistant', content: chosen }]);
  assert.deepEqual(pair.rejected, [{ role: 'assistant', content: rejected }]);
  const unauthorised = await fetch(`${baseUrl}/v1/export/corpus.jsonl`);
  assert.equal(unauthorised.status, 401);
  assert.deepEqual(errors, []);
  await context.close();
});
