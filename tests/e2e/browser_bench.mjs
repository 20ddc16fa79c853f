// `cargo xtask bench --browser`: the browser worker's prefill and decode speed on a ~512-token
// prompt and 128 generated tokens, in headless Chromium, as the GGUF comes and requantised to
// Q8_0; one JSON line each, like the engine's own benchmark. Not a test: it measures.
import { readFileSync } from 'node:fs';
import { launchBrowser, baseUrl } from './browser.js';

const text = readFileSync(new URL('../../engine/tests/data/texto_es.txt', import.meta.url), 'utf8');
const browser = await launchBrowser();
const page = await browser.newPage();
await page.goto(`${baseUrl}/`);
for (const requantize of [false, true]) {
const result = await page.evaluate(async ({ prompt, requantize }) => {
  const model = await (await fetch('/models')).json();
  const worker = new Worker('/worker.js', { type: 'module' });
  const next = () => new Promise((resolve) => worker.addEventListener('message', (event) => resolve(JSON.parse(event.data)), { once: true }));
  const until = async (type) => {
    for (;;) {
      const message = await next();
      if (message.type === 'failed') throw new Error(message.message);
      if (message.type === type) return message;
    }
  };
  await until('started');
  worker.postMessage(JSON.stringify({ type: 'load', url: model.url, sha256: model.sha256, bytes: model.bytes, requantize }));
  const ready = await until('ready');
  worker.postMessage(JSON.stringify({
    type: 'generate',
    messages: [{ role: 'user', content: prompt }],
    params: { sampling: { temperature: 0, repetition_penalty: 1 }, max_tokens: 128, ignore_eos: true },
  }));
  const done = await until('done');
  worker.terminate();
  return { name: model.name, ready, completion: done.completion };
}, { prompt: text.slice(0, 940), requantize });
const round = (value) => Math.round(value * 100) / 100;
console.log(JSON.stringify({
  model: result.name,
  arch: result.ready.info.architecture,
  quant: result.ready.info.quantization,
  requantized_to_q8_0: requantize,
  backend: 'wasm (headless Chromium)',
  threads: 1,
  prompt_tokens: result.completion.usage.prompt_tokens,
  generated_tokens: result.completion.usage.completion_tokens,
  prefill_tok_s: round(result.completion.timings.prefill_tokens_per_second),
  decode_tok_s: round(result.completion.timings.decode_tokens_per_second),
  load_s: round(result.ready.load_seconds),
}));
}
await browser.close();
