/**
 * The tenant statement of a lone query (`runWithTenant` + `db.query`) is prepared once per
 * connection and then only bound. When the server refuses it (it was dropped by DISCARD ALL, or
 * another client holds the name on a pooled server connection), nothing of the query ran: the
 * query is sent again with the statement parsed unnamed, still as the right tenant, and the pool
 * stops preparing. Messages and round trips are read off the wire by a loopback proxy.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createTenantPool, InvalidOptionsError } from '../../src/index.js'
import { preparedName } from '../../src/driver/statements.js'
import { ResetPlan } from '../../src/scope/reset.js'
import { applyStatement, resolveTenant } from '../../src/tenant.js'
import { createTestDatabase, type TestDatabase } from '../setup/fixtures.js'
import { startWireProxy, type WireProxy } from '../setup/wire-proxy.js'

let t: TestDatabase
let proxy: WireProxy
beforeAll(async () => {
  t = await createTestDatabase()
  const url = new URL(t.appUrl)
  proxy = await startWireProxy(url.hostname, Number(url.port))
  await t.admin(`insert into events (org_id, kind) values ('org_1', 'a'), ('org_1', 'b'), ('org_2', 'c')`)
})
afterAll(async () => {
  await t.drop()
  await proxy.close()
})

// The tenant statement (bound), the query (parsed, bound, described, executed), then SET
// CONSTRAINTS ALL IMMEDIATE and the reset (bound).
const PREPARED = ['B', 'E', 'P', 'B', 'D', 'E', 'B', 'E', 'B', 'E', 'S']
const UNNAMED = ['P', 'B', 'E', 'P', 'B', 'D', 'E', 'P', 'B', 'E', 'P', 'B', 'E', 'S']
// The tenant statement and what follows it parsed under their names first, then as PREPARED.
const FIRST = ['P', 'P', 'P', ...PREPARED]

/** A pool of one connection through the counting proxy. */
function onePool() {
  const url = new URL(t.appUrl)
  url.port = String(proxy.port)
  return t.pool({ connectionString: url.toString(), max: 1 })
}

/** The name pg-tenant prepares the tenant statement of a plain tenant id under. */
const tenantStatementName = () => {
  const tenant = resolveTenant('org_1', { setting: 'app.tenant_id', roles: [], maxValueLength: 256 })
  return preparedName(applyStatement(tenant, true).text)
}
/** The reset prepared with it. */
const afterStatement = () => new ResetPlan('app.tenant_id').afterStatementWith({ name: tenantStatementName(), text: '', values: [] })

async function kindsOf(db: ReturnType<typeof createTenantPool>, tenant: string): Promise<string[]> {
  const { rows } = await db.runWithTenant(tenant, () => db.query<{ kind: string }>('select kind from events order by kind'))
  return rows.map((r) => r.kind)
}

async function wire<T>(fn: () => Promise<T>): Promise<{ value: T; messages: string[]; trips: number }> {
  proxy.reset()
  const value = await fn()
  return { value, messages: [...proxy.messages], trips: proxy.roundTrips }
}

describe('the prepared tenant statement', () => {
  it('is parsed under its name once per connection, then only bound', async () => {
    const pool = onePool()
    await pool.query('select 1') // connect: startup traffic is no query's
    const db = createTenantPool(pool)
    const first = await wire(() => kindsOf(db, 'org_1'))
    expect(first).toEqual({ value: ['a', 'b'], messages: FIRST, trips: 1 })
    const second = await wire(() => kindsOf(db, 'org_2'))
    expect(second).toEqual({ value: ['c'], messages: PREPARED, trips: 1 })
    const { rows } = await pool.query<{ name: string; statement: string }>(
      'select name, statement from pg_prepared_statements order by name',
    )
    const expected = [
      { name: tenantStatementName(), statement: 'select set_config($1, $2, true)' },
      ...afterStatement().map(({ name, text }) => ({ name: name!, statement: text })),
    ]
    expect(rows).toEqual(expected.sort((a, b) => (a.name < b.name ? -1 : 1)))
  })

  it('dropped by DISCARD ALL: the query runs again unnamed, as the tenant, and the pool stops preparing', async () => {
    const pool = onePool()
    const db = createTenantPool(pool)
    expect(await kindsOf(db, 'org_1')).toEqual(['a', 'b'])
    await pool.query('discard all') // the same single connection: the statement is gone
    const refused = await wire(() => kindsOf(db, 'org_2'))
    // The refused trip ran nothing; the second one ran the query as org_2.
    expect(refused).toEqual({ value: ['c'], messages: [...PREPARED, ...UNNAMED], trips: 2 })
    const after = await wire(() => kindsOf(db, 'org_1'))
    expect(after).toEqual({ value: ['a', 'b'], messages: UNNAMED, trips: 1 })
    expect(db.stats()).toMatchObject({ destroyed: 0 })
  })

  it('a name another client holds with other text is never run: the query runs unnamed', async () => {
    const pool = onePool()
    // What a client sharing a pooled server connection could leave there under the same name.
    await pool.query(`prepare ${tenantStatementName()} (text, text, bool) as select 'not the tenant'`)
    const db = createTenantPool(pool)
    const first = await wire(() => kindsOf(db, 'org_1'))
    expect(first).toEqual({ value: ['a', 'b'], messages: [...FIRST, ...UNNAMED], trips: 2 })
    expect(await kindsOf(db, 'org_2')).toEqual(['c'])
  })

  it('a refused statement in a write leaves exactly one row, in the right tenant', async () => {
    const pool = onePool()
    const db = createTenantPool(pool)
    await kindsOf(db, 'org_1')
    await pool.query('deallocate all')
    await db.runWithTenant('org_3', () => db.query(`insert into events (kind) values ('once')`))
    const { rows } = await t.admin(`select org_id from events where kind = 'once'`)
    expect(rows).toEqual([{ org_id: 'org_3' }])
  })

  it('prepareTenantStatement: false parses it unnamed every time; anything but a boolean is refused', async () => {
    const pool = onePool()
    await pool.query('select 1')
    const db = createTenantPool(pool, { prepareTenantStatement: false })
    for (const tenant of ['org_1', 'org_2']) {
      expect((await wire(() => kindsOf(db, tenant))).messages).toEqual(UNNAMED)
    }
    expect(() => createTenantPool(pool, { prepareTenantStatement: 'yes' as never })).toThrow(InvalidOptionsError)
  })

  it('names depend on the text alone', () => {
    const name = preparedName('select set_config($1, $2, true)')
    expect(name).toMatch(/^pg_tenant_[0-9a-f]{16}$/)
    expect(preparedName('select set_config($1, $2, true)')).toBe(name)
    expect(preparedName("select set_config($1, $2, true), set_config('role', $3, true)")).not.toBe(name)
  })
})
