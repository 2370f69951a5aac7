/**
 * A lone query that waits for a client is handed one from inside another query's release, and pg
 * calls back from the socket's handler: both run in someone else's async context. Code of the
 * caller that pg-tenant runs on the way (a value's toPostgres, diagnostics subscribers) must still
 * see the caller's tenant. And nothing thrown on the way may escape into pg's message handling.
 */
import diagnostics from 'node:diagnostics_channel'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createTenantPool, diagnosticsChannels, type QueryMessage } from '../setup/pg-tenant.js'
import { createTestDatabase, type TestDatabase } from '../setup/fixtures.js'

let t: TestDatabase
beforeAll(async () => {
  t = await createTestDatabase()
})
afterAll(() => t.drop())

const TENANTS = ['org_1', 'org_2', 'org_3', 'org_4', 'org_5', 'org_6']

describe('a lone query waiting for a client', () => {
  it("runs its values' toPostgres in the caller's context, as the caller's tenant", async () => {
    const db = createTenantPool(t.pool({ max: 1 }))
    // The one connection is opened by another tenant's query: its socket carries that context.
    await db.runWithTenant('org_opener', () => db.query('select 1'))
    const rows = await Promise.all(
      TENANTS.map((tenant) =>
        db.runWithTenant(tenant, async () => {
          const seen = { toPostgres: () => String(db.currentTenant()) }
          const { rows } = await db.query<{ v: string; s: string }>(
            "select $1::text as v, current_setting('app.tenant_id') as s",
            [seen],
          )
          return rows[0]
        }),
      ),
    )
    expect(rows).toEqual(TENANTS.map((tenant) => ({ v: tenant, s: tenant })))
  })

  it("publishes its diagnostics in the caller's context", async () => {
    const db = createTenantPool(t.pool({ max: 1 }))
    await db.runWithTenant('org_opener', () => db.query('select 1'))
    const seen: Array<[unknown, unknown]> = []
    const listener = (m: unknown) => seen.push([(m as QueryMessage).tenant, db.currentTenant()])
    diagnostics.subscribe(diagnosticsChannels.query, listener)
    try {
      await Promise.all(TENANTS.map((tenant) => db.runWithTenant(tenant, () => db.query('select 1'))))
    } finally {
      diagnostics.unsubscribe(diagnosticsChannels.query, listener)
    }
    expect(seen).toHaveLength(TENANTS.length)
    for (const [published, current] of seen) expect(current).toBe(published)
  })
})

describe('failures on the way', () => {
  it('values that are not an array: pg refuses them, nothing is written, the client is kept', async () => {
    const db = createTenantPool(t.pool({ max: 1 }))
    const pid = () => db.runWithTenant('org_1', () => db.query<{ pid: number }>('select pg_backend_pid() as pid'))
    const before = (await pid()).rows[0]!.pid
    for (const values of ['abc', new Set([1])]) {
      const err = await db
        .runWithTenant('org_1', () => db.query('select $1::text', values as never))
        .catch((e: unknown) => e)
      expect((err as Error).message).toMatch(/must be an array/)
    }
    expect((await pid()).rows[0]!.pid).toBe(before)
    expect(db.stats()).toMatchObject({ destroyed: 0 })
  })

  it("a pool 'release' listener that throws rejects the query; pg's handling is not cut short", async () => {
    const pool = t.pool({ max: 2 })
    const db = createTenantPool(pool)
    await db.runWithTenant('org_1', () => db.query('select 1'))
    const boom = new Error('listener failed')
    const listener = () => {
      throw boom
    }
    pool.on('release', listener)
    const err = await db.runWithTenant('org_1', () => db.query('select 1')).catch((e: unknown) => e)
    pool.off('release', listener)
    expect(err).toBe(boom)
    // (pg-pool itself never takes that client back, as the listener threw inside its release:
    // this file's teardown waits 5 s for it.)
    // The pool still serves queries, as the right tenant.
    const { rows } = await db.runWithTenant('org_2', () => db.query<{ s: string }>("select current_setting('app.tenant_id') as s"))
    expect(rows).toEqual([{ s: 'org_2' }])
  })
})
