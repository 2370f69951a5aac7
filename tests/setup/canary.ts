/**
 * A setup file (vitest.config.ts `setupFiles`): after each test file, no pool made through
 * tests/setup/pg-tenant.ts may have found a dirty client on release. Files that make dirt on
 * purpose (verify-release.test.ts) use src/index.ts directly.
 *
 * Also: every test must make at least one assertion. A test that asserts nothing passes whatever
 * the code does (one did: a "never reported" case that only ran its scopes).
 */
import { afterAll, beforeEach, expect } from 'vitest'
import { canaryTotals } from './pg-tenant.js'

beforeEach(() => {
  expect.hasAssertions()
})

afterAll(() => {
  const { pools, verified, dirty } = canaryTotals()
  if (dirty > 0) {
    throw new Error(`the release canary found ${dirty} dirty client(s) in ${pools} pool(s) (${verified} checks)`)
  }
})
