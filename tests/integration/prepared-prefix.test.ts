/**
 * The tenant statement of a lone query (`runWithTenant` + `db.query`) is prepared once per
 * connection and then only bound. When the server refuses it (it was dropped by DISCARD ALL, or
 * another client holds the name on a pooled server connection), nothing of the query ran: the
 * query is sent again with the statement parsed unnamed, still as the right tenant, and the pool
 * stops preparing.
 *
 * What is asserted is behaviour, not pg's choice of messages: round trips and the statements parsed
 * (read off the wire by a loopback proxy), the rows (so the tenant the query ran as), what the
 * server holds prepared (pg_prepared_statements), and the connection afterwards (same backend, no
 * role or tenant left, not inside a transaction).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createTenantPool, InvalidOptionsError } from '../../src/index.js'
import { preparedName } from '../../src/driver/statements.js'
import { applyStatement, resolveTenant } from '../../src/tenant.js'
import { CONNECTION_STATE_SQL, createTestDatabase, type ConnectionState, type TestDatabase } from '../setup/fixtures.js'
import { startWireProxy, type Parsed, type WireProxy } from '../setup/wire-proxy.js'

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

/** The caller's statement of every lone query below. */
const CALLER = 'select kind from events order by kind'

/** A pool of one connection through the counting proxy. */
/**
 * A TenantPool whose first checkout sends nothing but the query: the once-per-pool check of the
 * login role (tests/integration/rls-bypass-warning.test.ts) would add a statement to the first
 * query's messages.
 */
const tenantPool = (pool: Parameters<typeof createTenantPool>[0], options: Parameters<typeof createTenantPool>[1] = {}) =>
  createTenantPool(pool, { allowRlsBypass: true, ...options })

function onePool() {
  const url = new URL(t.appUrl)
  url.port = String(proxy.port)
  return t.pool({ connectionString: url.toString(), max: 1 })
}
type Pool = ReturnType<typeof onePool>

/** The tenant statement of a plain tenant id, and the name pg-tenant prepares it under. */
const tenantStatement = (): Parsed => {
  const tenant = resolveTenant('org_1', { setting: 'app.tenant_id', roles: [], maxValueLength: 256 })
  const { text } = applyStatement(tenant, true)
  return { name: preparedName(text), text }
}
const unnamedTenantStatement = (): Parsed => ({ name: '', text: tenantStatement().text })

async function kindsOf(db: ReturnType<typeof createTenantPool>, tenant: string): Promise<string[]> {
  const { rows } = await db.runWithTenant(tenant, () => db.query<{ kind: string }>(CALLER))
  return rows.map((r) => r.kind)
}

/** Runs `fn`, and what it sent: round trips, the statements parsed, and the messages (for failures). */
async function wire<T>(fn: () => Promise<T>): Promise<{ value: T; trips: number; parses: Parsed[]; sent: string }> {
  proxy.reset()
  const value = await fn()
  return { value, trips: proxy.roundTrips, parses: [...proxy.parses], sent: proxy.messages.join('') }
}

/** The statements the server holds prepared on the pool's one connection. */
async function preparedOn(pool: Pool): Promise<Array<{ name: string; statement: string; prepare_time: Date }>> {
  return (await pool.query('select name, statement, prepare_time from pg_prepared_statements order by name')).rows
}

/** The pool's one connection, read outside pg-tenant. */
async function stateOf(pool: Pool): Promise<ConnectionState> {
  return (await pool.query<ConnectionState>(CONNECTION_STATE_SQL)).rows[0]!
}

/** Same backend as before (the client was kept, not replaced), no role or tenant left, idle. */
function expectKeptClean(after: ConnectionState, before: ConnectionState) {
  expect(after).toEqual({ ...before, current_user: before.session_user, tenant: '', idle: true })
}

describe('the prepared tenant statement', () => {
  it('is parsed under its name once per connection, then only bound', async () => {
    const pool = onePool()
    const before = await stateOf(pool) // connects: startup traffic is no query's
    const db = tenantPool(pool)

    const first = await wire(() => kindsOf(db, 'org_1'))
    expect(first.value).toEqual(['a', 'b'])
    expect(first.trips).toBe(1)
    expect(first.parses, first.sent).toContainEqual(tenantStatement())
    const prepared = await preparedOn(pool)
    expect(prepared.map((p) => ({ name: p.name, text: p.statement }))).toContainEqual(tenantStatement())
    // Whatever else pg-tenant prepared with it is its own (named pg_tenant_...), nothing of the caller's.
    expect(prepared.filter((p) => !p.name.startsWith('pg_tenant_'))).toEqual([])

    for (const [tenant, kinds] of [['org_2', ['c']], ['org_1', ['a', 'b']]] as const) {
      const later = await wire(() => kindsOf(db, tenant))
      expect(later.value).toEqual(kinds)
      expect(later.trips).toBe(1)
      // Only bound: nothing but the caller's own statement was parsed.
      expect(later.parses.filter((p) => p.text !== CALLER), later.sent).toEqual([])
    }
    // Nothing was prepared again (a statement prepared again has a new prepare_time).
    expect(await preparedOn(pool)).toEqual(prepared)
    expectKeptClean(await stateOf(pool), before)
  })

  it('dropped by DISCARD ALL: the query runs again unnamed, as the tenant, and the pool stops preparing', async () => {
    const pool = onePool()
    const db = tenantPool(pool)
    expect(await kindsOf(db, 'org_1')).toEqual(['a', 'b'])
    expect((await preparedOn(pool)).map((p) => p.name)).toContain(tenantStatement().name)
    const before = await stateOf(pool)
    await pool.query('discard all') // the same single connection: the statement is gone
    expect(await preparedOn(pool)).toEqual([])

    // The refused trip ran nothing; the second one ran the query as org_2, the statement unnamed.
    const refused = await wire(() => kindsOf(db, 'org_2'))
    expect(refused.value).toEqual(['c'])
    expect(refused.trips).toBe(2)
    expect(refused.parses, refused.sent).toContainEqual(unnamedTenantStatement())

    // From now on: parsed unnamed, one trip, nothing prepared on the server.
    const after = await wire(() => kindsOf(db, 'org_1'))
    expect(after.value).toEqual(['a', 'b'])
    expect(after.trips).toBe(1)
    expect(after.parses, after.sent).toContainEqual(unnamedTenantStatement())
    expect(after.parses.filter((p) => p.name !== '')).toEqual([])
    expect(await preparedOn(pool)).toEqual([])
    expect(db.stats()).toMatchObject({ destroyed: 0 })
    expectKeptClean(await stateOf(pool), before)
  })

  it('a name another client holds with other text is never run: the query runs unnamed', async () => {
    const pool = onePool()
    // What a client sharing a pooled server connection could leave there under the same name.
    await pool.query(`prepare ${tenantStatement().name} (text, text, bool) as select 'not the tenant'`)
    const foreign = await preparedOn(pool)
    expect(foreign.map((p) => p.name)).toEqual([tenantStatement().name])
    const before = await stateOf(pool)
    const db = tenantPool(pool)
    const first = await wire(() => kindsOf(db, 'org_1'))
    // Refused (42P05), then run with the statement parsed unnamed: the rows are org_1's.
    expect(first.value).toEqual(['a', 'b'])
    expect(first.trips).toBe(2)
    expect(first.parses, first.sent).toContainEqual(unnamedTenantStatement())
    expect(await kindsOf(db, 'org_2')).toEqual(['c'])
    // The other client's statement is left as it was.
    expect(await preparedOn(pool)).toEqual(foreign)
    expectKeptClean(await stateOf(pool), before)
  })

  it('a refused statement in a write leaves exactly one row, in the right tenant', async () => {
    const pool = onePool()
    const db = tenantPool(pool)
    await kindsOf(db, 'org_1')
    await pool.query('deallocate all')
    expect(await preparedOn(pool)).toEqual([])
    const write = await wire(() => db.runWithTenant('org_3', () => db.query(`insert into events (kind) values ('once')`)))
    expect(write.trips).toBe(2) // the refused trip, then the write: the refusal really happened
    const { rows } = await t.admin(`select org_id from events where kind = 'once'`)
    expect(rows).toEqual([{ org_id: 'org_3' }])
  })

  it('prepareTenantStatement: false parses it unnamed every time; anything but a boolean is refused', async () => {
    const pool = onePool()
    const before = await stateOf(pool)
    const db = tenantPool(pool, { prepareTenantStatement: false })
    for (const [tenant, kinds] of [['org_1', ['a', 'b']], ['org_2', ['c']], ['org_1', ['a', 'b']]] as const) {
      const run = await wire(() => kindsOf(db, tenant))
      expect(run.value).toEqual(kinds)
      expect(run.trips).toBe(1)
      expect(run.parses, run.sent).toContainEqual(unnamedTenantStatement())
      expect(run.parses.filter((p) => p.name !== '')).toEqual([])
    }
    expect(await preparedOn(pool)).toEqual([])
    expectKeptClean(await stateOf(pool), before)
    expect(() => createTenantPool(pool, { prepareTenantStatement: 'yes' as never })).toThrow(InvalidOptionsError)
  })

  it('names depend on the text alone', () => {
    const name = preparedName('select set_config($1, $2, true)')
    expect(name).toMatch(/^pg_tenant_[0-9a-f]{16}$/)
    expect(preparedName('select set_config($1, $2, true)')).toBe(name)
    expect(preparedName("select set_config($1, $2, true), set_config('role', $3, true)")).not.toBe(name)
  })
})
