// Runs a wasm32-wasip1 test binary under Node's WASI: how `cargo xtask test` runs the engine's
// kernel tests with the browser's SIMD (simd128) against the portable kernels.
import { readFile } from 'node:fs/promises';
import { WASI } from 'node:wasi';
const wasi = new WASI({ version: 'preview1', args: process.argv.slice(2), env: process.env, preopens: { '/': '/' } });
const module = await WebAssembly.compile(await readFile(process.argv[2]));
const instance = await WebAssembly.instantiate(module, wasi.getImportObject());
process.exit(wasi.start(instance));
