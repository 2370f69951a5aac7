import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    include: ['tests/**/*.test.ts'],
    globalSetup: ['tests/setup/global.ts'],
    // The release canary's verdict on every pool a test file made (tests/setup/pg-tenant.ts).
    setupFiles: ['tests/setup/canary.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // Every test file gets a database of its own (tests/setup/fixtures.ts), so files run in parallel.
    fileParallelism: true,
  },
})
