/**
 * Scope 'session' behind PgBouncer's transaction pooling is unsafe: session settings stay on a
 * server connection that PgBouncer hands to other clients. pg-tenant cannot prevent the pooler from
 * moving a session, but it detects it (the backend that answers the RESET is not the one that took
 * the settings), destroys the client, raises SessionPoolingError and refuses later session scopes.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createTenantPool as createUnchecked } from '../../src/index.js'
import { createTenantPool, SessionPoolingError } from '../setup/pg-tenant.js'
import { createTestDatabase, NEEDS_PGBOUNCER, pgBouncerAvailable, type TestDatabase } from '../setup/fixtures.js'

let t: TestDatabase
beforeAll(async () => {
  t = await createTestDatabase()
})
afterAll(() => t.drop())

describe('scope session through PgBouncer (transaction pooling)', () => {
  if (!pgBouncerAvailable()) return it.skip(NEEDS_PGBOUNCER)
  it('is detected, reported with SessionPoolingError, and refused afterwards', async () => {
    // Not through tests/setup/pg-tenant.ts: here the release canary may rightly find dirty clients
    // (a check that lands on a server connection still holding another scope's session settings).
    const db = createUnchecked(t.pool({ connectionString: t.bouncerUrl, max: 20 }), {
      scope: 'session',
      verifyRelease: true,
    })
    const outcomes = await Promise.allSettled(
      Array.from({ length: 40 }, (_, i) =>
        db.withTenant(`org_${i % 4}`, async () => {
          await db.query('select pg_sleep(0.01)')
          await db.query('select 1')
        }),
      ),
    )
    const detected = outcomes.filter(
      (o) => o.status === 'rejected' && o.reason instanceof SessionPoolingError,
    )
    expect(detected.length).toBeGreaterThan(0)
    const stats = db.stats()
    expect(stats.destroyedBy.dirty).toBe(stats.dirty)
    expect(stats.released + stats.destroyed).toBe(40)
    // From now on the pool refuses session scopes before any SQL.
    await expect(db.withTenant('org_1', () => db.query('select 1'))).rejects.toBeInstanceOf(SessionPoolingError)
  })
})

describe('scope session on a direct connection', () => {
  it('is never reported: one backend answers the whole scope', async () => {
    const db = createTenantPool(t.pool({ max: 4 }), { scope: 'session' })
    await Promise.all(
      Array.from({ length: 40 }, (_, i) =>
        db.withTenant(`org_${i % 4}`, async () => {
          await db.query('select pg_sleep(0.01)')
          await db.query('select 1')
        }),
      ),
    )
    // Every scope resolved (no SessionPoolingError); every client was reset, checked and kept.
    expect(db.stats()).toMatchObject({ released: 40, destroyed: 0, verified: 40, dirty: 0 })
    await expect(db.withTenant('org_1', () => db.query('select 1'))).resolves.toMatchObject({ rowCount: 1 })
  })
})
