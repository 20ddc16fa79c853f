// The chat's browser model runs in this Web Worker: the `worker` crate (engine compiled to
// WebAssembly) does everything; this module only picks its bundle and starts it.
//
// `?threads=N` is the visitor's setting. More than one thread needs memory shared between
// workers, which browsers give only to cross-origin isolated pages (COOP/COEP headers): then
// the bundle built with atomics starts its threads; otherwise, or if that fails, the
// one-thread bundle runs and `start` tells the page why. The thread that runs this module
// works too: N-1 of the pool's N threads join it, one is left to rayon.
const wanted = Math.max(1, Math.floor(Number(new URL(self.location.href).searchParams.get('threads'))) || 1);
const isolated = self.crossOriginIsolated === true;
let failure;
if (wanted > 1 && isolated) {
  try {
    const threaded = await import('./pkg/vitrina_worker_threads.js');
    await threaded.default();
    await threaded.initThreadPool(wanted);
    threaded.start(wanted, isolated, undefined);
  } catch (error) {
    failure = String(error && error.message || error);
  }
}
if (wanted === 1 || !isolated || failure !== undefined) {
  const single = await import('./pkg/vitrina_worker.js');
  await single.default();
  single.start(wanted, isolated, failure);
}
