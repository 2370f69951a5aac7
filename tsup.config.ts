import { defineConfig } from 'tsup'

// Dual ESM + CJS output. tsup copies shared modules into each CJS entry, so anything that must be
// unique per process (the AsyncLocalStorage, error identity) is keyed on globalThis, not on module
// identity: see src/context.ts and src/errors.ts.
//
// keepNames, in the CJS build only: it rewrites classes with static fields as
// `(_class2 = class ..., _class2)`, which loses the class's name; errors set
// `this.name = new.target.name`, so without it a CJS TenantRequiredError would print as
// `_class2: ...`. Not in the ESM builds, where classes keep their names anyway: keepNames also
// names every arrow function it creates, with an Object.defineProperty per closure, and the scope's
// hot path creates several per query. scripts/pack-check.sh checks every export in both builds.
// sourcemap: none are shipped. They would point at src/, which the package does not contain, and
// the code is not minified, so stack traces already read as the source.
export default defineConfig([
  {
    // `doctor` (pg-tenant/doctor) is an entry of its own: db.doctor() imports it dynamically, and
    // with splitting that import points at dist/doctor.js (dist/doctor.cjs), so the core bundle
    // carries none of the doctor.
    entry: {
      index: 'src/index.ts',
      express: 'src/adapters/express.ts',
      fastify: 'src/adapters/fastify.ts',
      doctor: 'src/doctor/index.ts',
      // pg-tenant/testing (probeIsolation): for test suites, never imported by the core.
      testing: 'src/testing/index.ts',
    },
    // Adapters' frameworks are peers: never bundle them.
    external: ['express', 'fastify', 'fastify-plugin'],
    format: ['esm', 'cjs'],
    dts: true,
    sourcemap: false,
    esbuildOptions(options, context) {
      if (context.format === 'cjs') options.keepNames = true
    },
    // Both builds write to dist/ at once: leave the command line's file to its own build.
    clean: ['**/*', '!cli.js'],
    target: 'node20',
    platform: 'node',
    splitting: true,
    treeshake: false,
  },
  {
    // The `pg-tenant` command line (package.json "bin"): ESM only, self-contained, with the
    // shebang kept from src/cli.ts. `pg` is a peer dependency, loaded at run time.
    entry: { cli: 'src/cli.ts' },
    format: ['esm'],
    dts: false,
    sourcemap: false,
    clean: false,
    target: 'node20',
    platform: 'node',
    splitting: false,
  },
])
