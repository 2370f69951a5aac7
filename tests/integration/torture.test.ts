/**
 * The torture test, short version (12,000 operations): see tests/soak/torture.ts for what it runs and the invariants
 * it checks; `npm run soak` runs 1,000,000.
 *
 * It prints its seed first. Replay the same operations (each one's kind and choices; not the
 * timing of faults) with PG_TENANT_TORTURE_SEED=<seed>, and PG_TENANT_TORTURE_OPS=<n> if the run
 * was sized differently.
 */
import { afterAll, beforeAll, expect, it } from 'vitest'
import { createTestDatabase, type TestDatabase } from '../setup/fixtures.js'
import { formatReport, parseSeed, runTorture } from '../soak/torture.js'

let t: TestDatabase
beforeAll(async () => {
  t = await createTestDatabase()
})
afterAll(() => t.drop())

// About 30 s on a 2-core CI machine: the ORM road's operations send several statements each.
const OPERATIONS = Number(process.env.PG_TENANT_TORTURE_OPS ?? 12_000)
const SEED = parseSeed(process.env.PG_TENANT_TORTURE_SEED)

it(`keeps tenants apart through ${OPERATIONS.toLocaleString('en')} operations with injected faults`, { timeout: 150_000 }, async () => {
  console.log(`pg-tenant torture: seed ${SEED} (replay: PG_TENANT_TORTURE_SEED=${SEED} PG_TENANT_TORTURE_OPS=${OPERATIONS})`)
  const report = await runTorture({
    appUrl: t.appUrl,
    adminUrl: t.adminUrl,
    roles: t.roles.sales,
    operations: OPERATIONS,
    timeLimitMs: 120_000,
    seed: SEED,
  })
  console.log(formatReport(report))
  const replay = `replay with PG_TENANT_TORTURE_SEED=${SEED} PG_TENANT_TORTURE_OPS=${OPERATIONS}`
  expect(report.violations, replay).toEqual([])
  expect(report.unexpected, replay).toEqual([])
  expect(report.operations).toBe(OPERATIONS)
  // Not vacuous: every kind of operation ran, every injected fault failed as it should at least
  // once, and the faults around them happened.
  const injectedKinds = ['mismatch', 'no tenant', 'SQL error', 'error thrown mid-scope', 'swallowed SQL error',
    'floating promise', 'statement_timeout', 'query_timeout', 'query_timeout swallowed',
    'client throws mid-transaction', 'client refused control', 'client used after release',
    'client backend terminated', 'client query_timeout']
  // The loop below covers every kind the report lists: at least these.
  expect(Object.keys(report.byKind)).toEqual(expect.arrayContaining(injectedKinds))
  for (const [kind, s] of Object.entries(report.byKind)) {
    expect(s.ran, kind).toBeGreaterThan(0)
  }
  for (const kind of injectedKinds) {
    expect(report.byKind[kind]!.injected, kind).toBeGreaterThan(0)
  }
  // The ORM road: clients handed out and returned, destroyed on request, reported when unconfirmed.
  const clients = report.clients
  expect(clients.handedOut).toBeGreaterThan(0)
  expect(clients.releases + clients.destroys).toBe(clients.handedOut)
  expect(clients.releasedWithError).toBeGreaterThan(0)
  expect(clients.releaseErrors).toBeGreaterThan(0)
  expect(clients.commits).toBeGreaterThan(0)
  expect(clients.rollbacks).toBeGreaterThan(0)
  expect(clients.sessionDirt).toBeGreaterThan(0)
  expect(clients.terminations).toBeGreaterThan(0)
  expect(report.terminations).toBeGreaterThan(0)
  expect(report.hogTimeouts).toBeGreaterThan(0)
  expect(report.rowsRead).toBeGreaterThan(0)
  expect(report.probes).toBeGreaterThan(0)
  expect(report.stats.verified).toBeGreaterThan(0)
  expect(report.stats.dirty).toBe(0)
  expect(report.hangs).toBe(0)
})
