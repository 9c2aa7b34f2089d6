"""The files JavaScript plugin authors see (the bootstrap shim every isolate
runs first, and the TypeScript declarations), shipped as ``hostrt.js_api``
so the runtime can read them from an installed package."""
