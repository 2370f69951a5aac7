/**
 * A login role RLS cannot bind (a superuser, or BYPASSRLS) makes every policy moot: the app
 * "works" and every tenant sees every row. The pool learns it on its first checkout (one
 * statement, once) and emits one process warning with a stable code; later queries cost nothing
 * more; `allowRlsBypass: true` says it is meant, and then nothing is checked.
 */
import pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createTenantPool, InvalidOptionsError } from '../setup/pg-tenant.js'
import { createTestDatabase, type TestDatabase } from '../setup/fixtures.js'
import { startWireProxy, type WireProxy } from '../setup/wire-proxy.js'
import { TEST_ROLE_PASSWORD } from '../setup/pgbouncer.js'

let t: TestDatabase
let bypass: string
const warnings: Array<{ code?: string; message: string; name: string }> = []
const onWarning = (warning: Error & { code?: string }) => warnings.push({ code: warning.code, message: warning.message, name: warning.name })
beforeAll(async () => {
  t = await createTestDatabase()
  // A login role with BYPASSRLS, granted what the app role has.
  bypass = `${t.appRole}_bypass`
  await t.admin(`create role ${bypass} login bypassrls password '${TEST_ROLE_PASSWORD}'`)
  await t.admin(`grant select on events to ${bypass}`)
  await t.admin(`insert into events (org_id, kind) values ('org_a', 'seen'), ('org_b', 'seen')`)
  process.on('warning', onWarning)
})
afterAll(async () => {
  process.off('warning', onWarning)
  await t.admin(`drop owned by ${bypass}`)
  await t.drop()
  const admin = new pg.Client({ connectionString: t.adminUrl.replace(/\/[^/]*$/, '/postgres') })
  await admin.connect()
  await admin.query(`drop role if exists ${bypass}`).finally(() => admin.end())
})

const ours = () => warnings.filter((w) => w.code === 'PG_TENANT_RLS_BYPASSED')
const settle = () => new Promise((r) => setTimeout(r, 20))
const urlAs = (role: string) => {
  const url = new URL(t.appUrl)
  url.username = role
  return url.toString()
}

describe('a login role RLS cannot bind', () => {
  it('a superuser: one warning, naming the role and why, however many queries and pools of scopes', async () => {
    warnings.length = 0
    const db = createTenantPool(new pg.Pool({ connectionString: t.adminUrl, max: 2 }))
    // Every tenant sees every row: the hazard the warning is about.
    const rows = await db.runWithTenant('org_a', () => db.query(`select org_id from events where kind = 'seen'`))
    expect(rows.rows.map((r) => r.org_id).sort()).toEqual(['org_a', 'org_b'])
    await Promise.all([
      db.withTenant('org_a', () => db.query('select 1')),
      db.runWithTenant('org_b', async () => {
        const client = await db.pool.connect()
        await client.query('select 1')
        client.release()
      }),
    ])
    await settle()
    expect(ours()).toHaveLength(1)
    expect(ours()[0]!.name).toBe('PgTenantWarning')
    expect(ours()[0]!.message).toMatch(/the login role "postgres" is a superuser, so PostgreSQL's Row-Level Security policies do not apply/)
    expect(ours()[0]!.message).toMatch(/allowRlsBypass: true/)
    await db.end()
  })

  it('a role with BYPASSRLS: one warning that says so', async () => {
    warnings.length = 0
    const db = createTenantPool(new pg.Pool({ connectionString: urlAs(bypass), max: 1 }))
    await db.runWithTenant('org_a', () => db.query('select 1'))
    await settle()
    expect(ours().map((w) => w.message)).toEqual([expect.stringMatching(new RegExp(`"${bypass}" has the BYPASSRLS attribute`))])
    await db.end()
  })

  it('allowRlsBypass: true says it is meant: no check, no warning', async () => {
    warnings.length = 0
    const db = createTenantPool(new pg.Pool({ connectionString: t.adminUrl, max: 1 }), { allowRlsBypass: true })
    await db.runWithTenant('org_a', () => db.query('select 1'))
    await settle()
    expect(ours()).toEqual([])
    expect(() => createTenantPool(new pg.Pool(), { allowRlsBypass: 'yes' as never })).toThrow(InvalidOptionsError)
    await db.end()
  })
})

describe('a login role RLS binds', () => {
  it('no warning', async () => {
    warnings.length = 0
    const db = createTenantPool(t.pool({ max: 1 }))
    await db.runWithTenant('org_a', () => db.query('select 1'))
    await db.withTenant('org_b', () => db.query('select 1'))
    await settle()
    expect(ours()).toEqual([])
  })
})

describe('what the check costs', () => {
  let proxy: WireProxy
  beforeAll(async () => {
    const url = new URL(t.appUrl)
    proxy = await startWireProxy(url.hostname, Number(url.port))
  })
  afterAll(() => proxy.close())

  it('one statement on the first checkout of a pool, nothing after', async () => {
    const url = new URL(t.appUrl)
    url.port = String(proxy.port)
    const pool = t.pool({ connectionString: url.toString(), max: 1 })
    await pool.query('select 1') // the connection's startup is no query's cost
    const db = createTenantPool(pool, { verifyRelease: false }) // the canary's own trip is not counted here
    const trips = async () => {
      proxy.reset()
      await db.runWithTenant('org_a', () => db.query('select 1'))
      return proxy.roundTrips
    }
    expect(await trips()).toBe(2) // the check, then the query
    expect(await trips()).toBe(1)
    expect(await trips()).toBe(1)
  })
})
