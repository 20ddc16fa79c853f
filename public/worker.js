// The chat's browser model runs in this Web Worker: the `worker` crate (engine compiled to
// WebAssembly) does everything; this module only starts it.
import init from './pkg/vitrina_worker.js';

await init();
