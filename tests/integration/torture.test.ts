/**
 * The torture test, short version (20,000 operations): see tests/soak/torture.ts for what it runs
 * and the invariants it checks; `npm run soak` runs 1,000,000.
 */
import { afterAll, beforeAll, expect, it } from 'vitest'
import { createTestDatabase, type TestDatabase } from '../setup/fixtures.js'
import { formatReport, runTorture } from '../soak/torture.js'

let t: TestDatabase
beforeAll(async () => {
  t = await createTestDatabase()
})
afterAll(() => t.drop())

const OPERATIONS = Number(process.env.PG_TENANT_TORTURE_OPS ?? 20_000)

it(`keeps tenants apart through ${OPERATIONS.toLocaleString('en')} operations with injected faults`, { timeout: 150_000 }, async () => {
  const report = await runTorture({
    appUrl: t.appUrl,
    adminUrl: t.adminUrl,
    roles: t.roles.sales,
    operations: OPERATIONS,
    timeLimitMs: 120_000,
  })
  console.log(formatReport(report))
  expect(report.violations).toEqual([])
  expect(report.unexpected).toEqual([])
  expect(report.operations).toBe(OPERATIONS)
  // Not vacuous: every kind of operation ran, every injected fault failed as it should at least
  // once, and the faults around them happened.
  for (const [kind, s] of Object.entries(report.byKind)) {
    expect(s.ran, kind).toBeGreaterThan(0)
  }
  for (const kind of ['mismatch', 'no tenant', 'SQL error', 'error thrown mid-scope', 'swallowed SQL error',
    'floating promise', 'statement_timeout', 'query_timeout', 'query_timeout swallowed']) {
    expect(report.byKind[kind]!.injected, kind).toBeGreaterThan(0)
  }
  expect(report.terminations).toBeGreaterThan(0)
  expect(report.hogTimeouts).toBeGreaterThan(0)
  expect(report.rowsRead).toBeGreaterThan(0)
  expect(report.probes).toBeGreaterThan(0)
  expect(report.stats.verified).toBeGreaterThan(0)
  expect(report.stats.dirty).toBe(0)
  expect(report.hangs).toBe(0)
})
