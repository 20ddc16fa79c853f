// The project page in a real browser against the real server (started by `cargo xtask test`,
// which passes VITRINA_URL and CHROMIUM_PATH).
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

/** A fresh page that records every console error and uncaught exception. */
async function openPage(options = {}) {
  const context = await browser.newContext(options);
  const page = await context.newPage();
  const errors = [];
  page.on('console', (message) => {
    if (message.type() === 'error') errors.push(`console: ${message.text()}`);
  });
  page.on('pageerror', (error) => errors.push(`exception: ${error.message}`));
  return { context, page, errors };
}

async function hydrated(page) {
  await page.goto(baseUrl);
  await page.waitForSelector('html[data-hydrated="true"]', { timeout: 30_000 });
}

test('the language switch loads the page in the chosen language, and the server remembers it', async () => {
  const { context, page, errors } = await openPage();
  await hydrated(page);
  await page.screenshot({ path: `${artifacts}desktop-es.png`, fullPage: true });

  const heading = page.locator('#motivacion-titulo');
  assert.equal(await heading.textContent(), 'Motivación');
  assert.equal(await page.getAttribute('html', 'lang'), 'es');
  assert.ok(await page.locator('.ods-name', { hasText: 'Educación de calidad' }).count() > 0);

  // The sheet is the server's HTML (only the islands hydrate), so a switch loads the page again.
  const switchTo = async (lang, motivation) => {
    await Promise.all([page.waitForNavigation(), page.click(`button.lang-switch[lang="${lang}"]`)]);
    await page.waitForSelector('html[data-hydrated="true"]');
    assert.equal(await heading.textContent(), motivation);
    assert.equal(await page.getAttribute('html', 'lang'), lang);
  };
  await switchTo('en', 'Motivation');
  assert.ok(await page.locator('.ods-name', { hasText: 'Quality Education' }).count() > 0);
  assert.deepEqual(await page.locator('button.lang-switch').allTextContents(), ['Español', 'Português']);
  await page.screenshot({ path: `${artifacts}desktop-en.png`, fullPage: true });

  // The server renders the remembered language itself, so the first paint is already English.
  const html = await page.evaluate(async () => (await fetch('/')).text());
  assert.match(html, /id="motivacion-titulo"[^>]*>Motivation</);

  await switchTo('pt', 'Motivação');
  assert.ok(await page.locator('.ods-name', { hasText: 'Educação de qualidade' }).count() > 0);
  await switchTo('es', 'Motivación');
  assert.deepEqual(errors, []);
  await context.close();
});

test('in Portuguese the project page, the chat, the judges\' and the corpus pages speak Portuguese', async () => {
  const context = await browser.newContext();
  await context.addCookies([{ name: 'vitrina_lang', value: 'pt', url: baseUrl }]);
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (error) => errors.push(`exception: ${error.message}`));
  for (const [path, name, words] of [
    ['/', 'project', ['Motivação', 'Experimente o modelo', 'Ajustes do modelo', 'Equipe']],
    ['/jurado', 'judges', ['Página do júri', 'Dados dos modelos', 'Ficha do projeto', 'Licença nos metadados']],
    ['/corpus', 'corpus', ['O corpus']],
  ]) {
    await page.goto(`${baseUrl}${path}`);
    await page.waitForSelector('html[data-hydrated="true"]', { timeout: 30_000 });
    assert.equal(await page.getAttribute('html', 'lang'), 'pt', path);
    // What is shown: the page's serialised data (all three languages) is not.
    const text = await page.innerText('body');
    for (const word of words) assert.ok(text.includes(word), `${path}: no «${word}»`);
    for (const spanish of ['Prueba el modelo', 'Ajustes del modelo', 'Página del jurado', 'Saltar al contenido', 'Ficha del proyecto', 'Licencia en los metadatos']) {
      assert.ok(!text.includes(spanish), `${path}: still says «${spanish}»`);
    }
    await page.screenshot({ path: `${artifacts}${name}-pt.png`, fullPage: true });
  }
  assert.deepEqual(errors, []);
  await context.close();
});

test('everything is reachable from the keyboard', async () => {
  const { context, page, errors } = await openPage();
  await hydrated(page);
  await page.keyboard.press('Tab');
  assert.equal(await page.evaluate(() => document.activeElement?.className), 'skip-link');
  // Skip link, brand, then the language switch.
  await page.keyboard.press('Tab');
  await page.keyboard.press('Tab');
  assert.equal(await page.evaluate(() => document.activeElement?.className), 'lang-switch');
  assert.equal(await page.evaluate(() => document.activeElement?.getAttribute('lang')), 'en');
  await Promise.all([page.waitForNavigation(), page.keyboard.press('Enter')]);
  await page.waitForSelector('html[data-hydrated="true"]');
  assert.equal(await page.getAttribute('html', 'lang'), 'en');
  // In English the first switch is Español, in the same place.
  for (let i = 0; i < 3; i += 1) await page.keyboard.press('Tab');
  assert.equal(await page.evaluate(() => document.activeElement?.getAttribute('lang')), 'es');
  await Promise.all([page.waitForNavigation(), page.keyboard.press('Enter')]);
  await page.waitForSelector('html[data-hydrated="true"]');
  assert.equal(await page.getAttribute('html', 'lang'), 'es');
  assert.deepEqual(errors, []);
  await context.close();
});

test('a 360 px phone shows the page without sideways scrolling', async () => {
  const { context, page, errors } = await openPage({ viewport: { width: 360, height: 740 }, isMobile: true, hasTouch: true });
  await hydrated(page);
  const widths = await page.evaluate(() => ({ scroll: document.documentElement.scrollWidth, client: document.documentElement.clientWidth }));
  assert.ok(widths.scroll <= widths.client, `page is ${widths.scroll}px wide in a ${widths.client}px screen`);
  await page.screenshot({ path: `${artifacts}phone-es.png`, fullPage: true });
  assert.deepEqual(errors, []);
  await context.close();
});

test('without JavaScript the whole sheet is already there', async () => {
  const { context, page } = await openPage({ javaScriptEnabled: false });
  await page.goto(baseUrl);
  // Playwright's locators need page scripts; the parsed document is what a visitor gets.
  const dom = await page.content();
  assert.match(dom, /<h1>[^<]+<\/h1>/);
  assert.match(dom, /id="motivacion"[^>]*>.*?<p>[^<]+<\/p>/s);
  assert.match(dom, /href="https:\/\/huggingface\.co\/datasets\/[^"]+"/);
  assert.match(dom, /class="card member"/);
  assert.doesNotMatch(dom, /data-hydrated/);
  await page.screenshot({ path: `${artifacts}no-javascript.png` });
  await context.close();
});

test('the chat\'s input is in the first screen, beside the sheet on a desktop and under the title on a phone', async () => {
  for (const [name, options] of [
    ['desktop', { viewport: { width: 1280, height: 900 } }],
    ['phone', { viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true }],
  ]) {
    const { context, page, errors } = await openPage(options);
    await hydrated(page);
    await page.screenshot({ path: `${artifacts}first-screen-${name}.png` });
    const input = await page.locator('#pregunta').boundingBox();
    assert.ok(input, `${name}: the chat's input is not shown`);
    assert.ok(input.y >= 0 && input.y + input.height <= options.viewport.height,
      `${name}: the chat's input lies at ${input.y}–${input.y + input.height} px, below the first ${options.viewport.height} px`);
    const chips = await page.locator('.example-chip').first().boundingBox();
    assert.ok(chips && chips.y + chips.height <= options.viewport.height,
      `${name}: the first example is not in the first screen`);
    if (name === 'desktop') {
      const sheet = await page.locator('#motivacion').boundingBox();
      assert.ok(sheet.x + sheet.width <= input.x, `desktop: the chat (x ${input.x}) is not beside the sheet (ends at ${sheet.x + sheet.width})`);
    }
    assert.deepEqual(errors, []);
    await context.close();
  }
});

test('axe-core finds no serious or critical accessibility problem on /, /jurado and /corpus', async () => {
  const { createRequire } = await import('node:module');
  const axePath = createRequire(import.meta.url).resolve('axe-core/axe.min.js');
  const { readFileSync } = await import('node:fs');
  const axeSource = readFileSync(axePath, 'utf8');
  for (const path of ['/', '/jurado', '/corpus']) {
    const { context, page } = await openPage();
    await page.goto(`${baseUrl}${path}`);
    await page.waitForSelector('html[data-hydrated="true"]', { timeout: 30_000 });
    await page.addScriptTag({ content: axeSource });
    const violations = await page.evaluate(async () => {
      const result = await window.axe.run(document, { resultTypes: ['violations'] });
      return result.violations
        .filter((violation) => violation.impact === 'serious' || violation.impact === 'critical')
        .map((violation) => `${violation.id} (${violation.impact}): ${violation.help} — ${violation.nodes.slice(0, 3).map((node) => node.target.join(' ')).join('; ')}`);
    });
    assert.deepEqual(violations, [], `${path}: ${violations.join('\n')}`);
    await context.close();
  }
});
