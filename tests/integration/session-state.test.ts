/**
 * Guarantee 1, for state pg-tenant did not write: nothing a scope ran survives release, whatever
 * user SQL did at session level (SET ROLE, SET, set_config(..., false), the same inside a DO block
 * or a function no lexer can see), on every path that takes a client. With a pool of one, the next
 * caller gets the same backend (the client was released, not destroyed: the release canary, on in
 * these tests, found it clean) and sees the login role and no tenant setting.
 */
import pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createTenantPool, type TenantPool } from '../setup/pg-tenant.js'
import { createTestDatabase, type TestDatabase } from '../setup/fixtures.js'

let t: TestDatabase
beforeAll(async () => {
  t = await createTestDatabase()
  await t.admin(`create function leave_tenant(v text) returns text language sql as $$ select set_config('app.tenant_id', v, false) $$`)
  await t.admin(`grant execute on function leave_tenant(text) to ${t.appRole}`)
})
afterAll(() => t.drop())

interface Idle {
  pid: number
  current_user: string
  session_user: string
  tenant: string
  user_id: string
}
const IDLE_SQL = `select pg_backend_pid() as pid, current_user::text as current_user, session_user::text as session_user,
  coalesce(current_setting('app.tenant_id', true), '') as tenant, coalesce(current_setting('app.user_id', true), '') as user_id`

type Db = TenantPool<pg.Pool>
// What user SQL can leave at session level, and what it changes while it is there.
const DIRT: Array<[string, () => string, () => Partial<Idle>]> = [
  ['SET ROLE', () => `set role ${t.roles.sales[0]}`, () => ({ current_user: t.roles.sales[0] })],
  ['SET of the tenant setting', () => `set app.tenant_id = 'org_evil'`, () => ({ tenant: 'org_evil' })],
  ['set_config(..., false)', () => `select set_config('app.tenant_id', 'org_evil', false)`, () => ({ tenant: 'org_evil' })],
  [
    'a DO block',
    () => `do $$ begin perform set_config('app.tenant_id', 'org_evil', false); execute 'set role ${t.roles.sales[0]}'; end $$`,
    () => ({ tenant: 'org_evil', current_user: t.roles.sales[0] }),
  ],
  ['a function', () => `select leave_tenant('org_evil')`, () => ({ tenant: 'org_evil' })],
  ['SET of a setting another tenant of the pool wrote', () => `set app.user_id = 'u_evil'`, () => ({ user_id: 'u_evil' })],
]
// Every path that takes a client, each running `sql` once. Where the path keeps a transaction
// open after `sql`, it reads the state there too, so the test sees the dirt was really made; a
// lone statement cannot (its reset rides in the same round trip): for those, the plain pg
// control below shows that each `sql` does leave its dirt on a session.
const PATHS: Array<[string, (db: Db, sql: string) => Promise<Idle | undefined>]> = [
  ['a lone query (runWithTenant)', async (db, sql) => void (await db.runWithTenant('org_a', () => db.query(sql)))],
  ['a lone query (withoutTenant)', async (db, sql) => void (await db.withoutTenant(() => db.query(sql)))],
  [
    'withTenant, scope transaction',
    (db, sql) =>
      db.withTenant('org_a', async () => {
        await db.query(sql)
        return (await db.query<Idle>(IDLE_SQL)).rows[0]
      }),
  ],
  [
    'db.transaction under runWithTenant',
    (db, sql) =>
      db.runWithTenant('org_a', () =>
        db.transaction(async () => {
          await db.query(sql)
          return (await db.query<Idle>(IDLE_SQL)).rows[0]
        }),
      ),
  ],
  ['db.pool.query', async (db, sql) => void (await db.runWithTenant('org_a', () => db.pool.query(sql)))],
  [
    'a db.pool.connect() client, autocommit',
    (db, sql) =>
      db.runWithTenant('org_a', async () => {
        const client = await db.pool.connect()
        await client.query(sql)
        client.release()
        return undefined
      }),
  ],
  [
    "a db.pool.connect() client, in the caller's transaction",
    (db, sql) =>
      db.runWithTenant('org_a', async () => {
        const client = await db.pool.connect()
        await client.query('BEGIN')
        await client.query(sql)
        const inside = (await client.query<Idle>(IDLE_SQL)).rows[0]
        await client.query('COMMIT')
        client.release()
        return inside
      }),
  ],
  [
    'a db.pool.connect() client inside withTenant',
    (db, sql) =>
      db.withTenant('org_a', async () => {
        const client = await db.pool.connect()
        await client.query('BEGIN')
        await client.query(sql)
        const inside = (await client.query<Idle>(IDLE_SQL)).rows[0]
        await client.query('COMMIT')
        client.release()
        return inside
      }),
  ],
]
const LONE = new Set(['a lone query (runWithTenant)', 'a lone query (withoutTenant)', 'db.pool.query', 'a db.pool.connect() client, autocommit'])

async function idle(pool: pg.Pool): Promise<Idle> {
  return (await pool.query<Idle>(IDLE_SQL)).rows[0]!
}

describe('control: on a plain pg connection', () => {
  it.each(DIRT)('%s stays on the session', async (_dirt, sql, effect) => {
    const pool = t.pool({ max: 1 })
    const before = await idle(pool)
    await pool.query(sql())
    const after = await idle(pool)
    expect(after.pid).toBe(before.pid)
    expect(after).toMatchObject(effect())
    expect(after).not.toEqual(before)
  })
})

describe.each(PATHS)('%s', (name, run) => {
  it.each(DIRT)('leaves nothing of %s behind', async (_dirt, sql, effect) => {
    const pool = t.pool({ max: 1 })
    const db = createTenantPool(pool, { roles: t.roles.sales })
    // A tenant that writes app.user_id: from now on this pool resets it too.
    await db.runWithTenant({ id: 'org_u', settings: { 'app.user_id': 'u_1' } }, () => db.query('select 1'))
    const before = await idle(pool)
    const inside = await run(db, sql())
    // The dirt was really there inside (so "clean after" is not vacuous), where the path can show it.
    if (LONE.has(name)) expect(inside).toBeUndefined()
    else expect(inside).toMatchObject(effect())
    await new Promise((r) => setImmediate(r)) // a connect() client's release completes asynchronously
    const after = await idle(pool)
    // The same backend (reset, not replaced), with no role and no setting left.
    expect(after).toEqual({ ...before, tenant: '', user_id: '' })
    expect(after.current_user).toBe(t.appRole)
  })
})

describe('withTenant, scope session', () => {
  it.each(DIRT)('leaves nothing of %s behind', async (_dirt, sql, effect) => {
    const pool = t.pool({ max: 1 })
    const db = createTenantPool(pool, { roles: t.roles.sales, scope: 'session' })
    await db.runWithTenant({ id: 'org_u', settings: { 'app.user_id': 'u_1' } }, () => db.query('select 1'))
    const before = await idle(pool)
    const inside = await db.withTenant({ id: 'org_a', role: t.roles.sales[1]! }, async () => {
      await db.query(sql())
      return (await db.query<Idle>(IDLE_SQL)).rows[0]
    })
    expect(inside).toMatchObject(effect())
    const after = await idle(pool)
    expect(after).toEqual({ ...before, tenant: '', user_id: '' })
  })
})
