import { defineConfig } from 'tsup'

// Dual ESM + CJS output. tsup copies shared modules into each CJS entry, so anything that must be
// unique per process (the AsyncLocalStorage, error identity) is keyed on globalThis, not on module
// identity: see src/context.ts and src/errors.ts.
export default defineConfig({
  entry: { index: 'src/index.ts', express: 'src/express.ts', fastify: 'src/fastify.ts' },
  // Adapters' frameworks are peers: never bundle them.
  external: ['express', 'fastify', 'fastify-plugin'],
  format: ['esm', 'cjs'],
  dts: true,
  sourcemap: true,
  clean: true,
  target: 'node20',
  platform: 'node',
  splitting: true,
  treeshake: false,
})
