// The chat's browser model runs in this Web Worker: the `worker` crate (engine compiled to
// WebAssembly) does everything; this module only picks its bundle and starts it.
//
// `?threads=N` is the visitor's setting. More than one thread needs memory shared between
// workers, which browsers give only to cross-origin isolated pages (COOP/COEP headers): then
// the bundle built with atomics starts its threads; otherwise, or if that fails, the
// one-thread bundle runs and `start` tells the page why. The thread that runs this module
// works too: N-1 of the pool's N threads join it, one is left to rayon.
//
// Browsers with relaxed SIMD get that bundle built with it (its byte dot product; SmolLM2 in
// Chromium: decode on two threads +7%, a prompt on one +15%), even for one thread, which it
// then runs alone.
const wanted = Math.max(1, Math.floor(Number(new URL(self.location.href).searchParams.get('threads'))) || 1);
const isolated = self.crossOriginIsolated === true;
// A function that returns i32x4.relaxed_dot_i8x16_i7x16_add_s of three splats: what the
// relaxed bundle's kernels use, valid only where the browser has relaxed SIMD.
const relaxedSimd = WebAssembly.validate(new Uint8Array([
  0, 97, 115, 109, 1, 0, 0, 0, 1, 5, 1, 96, 0, 1, 123, 3, 2, 1, 0, 10, 19, 1, 17, 0,
  65, 1, 253, 15, 65, 2, 253, 15, 65, 3, 253, 15, 253, 147, 2, 11,
]));
let failure;
let started = false;
if (isolated && (wanted > 1 || relaxedSimd)) {
  try {
    const threaded = await (relaxedSimd
      ? import('./pkg/vitrina_worker_threads_relaxed.js')
      : import('./pkg/vitrina_worker_threads.js'));
    await threaded.default();
    await threaded.initThreadPool(wanted);
    threaded.start(wanted, isolated, undefined);
    started = true;
  } catch (error) {
    failure = String(error && error.message || error);
  }
}
if (!started) {
  const single = await import('./pkg/vitrina_worker.js');
  await single.default();
  single.start(wanted, isolated, failure);
}
