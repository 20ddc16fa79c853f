// `cargo xtask bench --browser --threads N`: the browser worker's prefill and decode speed on a
// ~512-token prompt and 128 generated tokens, in headless Chromium on a cross-origin isolated
// page, for each thread count of BENCH_THREADS (e.g. "1,2") in BENCH_ROUNDS rounds (3); one JSON
// line each, like the engine's own benchmark. Not a test: it measures.
import { readFileSync } from 'node:fs';
import { launchBrowser, baseUrl } from './browser.js';

const text = readFileSync(new URL('../../engine/tests/data/texto_es.txt', import.meta.url), 'utf8');
const browser = await launchBrowser();
const page = await browser.newPage();
await page.goto(`${baseUrl}/`);
const requantize = false;
const threadCounts = (process.env.BENCH_THREADS || '1').split(',').map(Number);

// One answer by a new worker with `threads` threads, timed by the engine.
const answer = (threads) => page.evaluate(async ({ prompt, requantize, threads }) => {
  const model = await (await fetch('/models')).json();
  const worker = new Worker(`/worker.js?threads=${threads}`, { type: 'module' });
  const next = () => new Promise((resolve) => worker.addEventListener('message', (event) => resolve(JSON.parse(event.data)), { once: true }));
  const until = async (type) => {
    for (;;) {
      const message = await next();
      if (message.type === 'failed') throw new Error(message.message);
      if (message.type === type) return message;
    }
  };
  const started = await until('started');
  worker.postMessage(JSON.stringify({ type: 'load', url: model.url, sha256: model.sha256, bytes: model.bytes, requantize }));
  const ready = await until('ready');
  worker.postMessage(JSON.stringify({
    type: 'generate',
    messages: [{ role: 'user', content: prompt }],
    params: { sampling: { temperature: 0, repetition_penalty: 1 }, max_tokens: 128, ignore_eos: true },
  }));
  const done = await until('done');
  worker.terminate();
  return { name: model.name, started, ready, completion: done.completion };
}, { prompt: text.slice(0, 940), requantize, threads });

const hundredths = (value) => Math.round(value * 100) / 100;
// Not reported: Chromium compiles the worker's code at its optimising tier while the first
// answers run (the first round's one thread decoded 20% slower than the third's).
await answer(Math.max(...threadCounts));
// In turns, every thread count once per round and in the other order every other round, as the
// machine's speed drifts within minutes: one run of each gave thread speedups from 1.45× to 1.9×
// on the same build.
const rounds = Number(process.env.BENCH_ROUNDS || 3);
for (let round = 1; round <= rounds; round++) {
  const order = round % 2 === 1 ? threadCounts : [...threadCounts].reverse();
  for (const threads of order) {
    const result = await answer(threads);
    console.log(JSON.stringify({
      model: result.name,
      arch: result.ready.info.architecture,
      quant: result.ready.info.quantization,
      requantized_to_q8_0: requantize,
      backend: 'wasm',
      threads: result.started.threads,
      threads_asked: threads,
      round,
      ...(result.started.limit ? { thread_limit: result.started.limit } : {}),
      prompt_tokens: result.completion.usage.prompt_tokens,
      generated_tokens: result.completion.usage.completion_tokens,
      prefill_tok_s: hundredths(result.completion.timings.prefill_tokens_per_second),
      decode_tok_s: hundredths(result.completion.timings.decode_tokens_per_second),
      load_s: hundredths(result.ready.load_seconds),
    }));
  }
}
await browser.close();
