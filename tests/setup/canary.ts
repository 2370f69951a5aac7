/**
 * A setup file (vitest.config.ts `setupFiles`): after each test file, no pool made through
 * tests/setup/pg-tenant.ts may have found a dirty client on release. Files that make dirt on
 * purpose (verify-release.test.ts) use src/index.ts directly.
 */
import { afterAll } from 'vitest'
import { canaryTotals } from './pg-tenant.js'

afterAll(() => {
  const { pools, verified, dirty } = canaryTotals()
  if (dirty > 0) {
    throw new Error(`the release canary found ${dirty} dirty client(s) in ${pools} pool(s) (${verified} checks)`)
  }
})
