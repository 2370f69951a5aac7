// The benchmark's rows, built over one set of pools: run.mjs builds them once straight to
// PostgreSQL and once through the latency proxy, so both runs send exactly the same statements.
//
// A row is { name, sends, baseline, latency, run }: `sends` is what one operation sends (its
// round trips; for pg-tenant, the budget from DESIGN.md, measured separately), `baseline` the row
// running the same statements with no tenant work, which its ratio is taken to, and `latency`
// whether it also runs through the proxy.
import { Kysely, PostgresDialect, sql } from 'kysely'
import pg from 'pg'
import { createTenantPool } from '../dist/index.js'
import { floorQuery } from './floor.mjs'

export const POINT = 'select id, kind from events where id = $1'
const CLIENT_POINT = 'select id from clients where id = $1'

export const RAW = 'raw pg: pool.query (1 statement)'
export const RAW_3 = 'raw pg: 3 statements, each pool.query'
export const RAW_KYSELY = 'raw Kysely: select (1 statement)'
export const RAW_KYSELY_TX = 'raw Kysely: transaction of 2 statements'

// Every lookup finds exactly one row: ids are chosen within the tenant that runs them (events
// belong to org_(id % 10)).
let n = 0
/** An id of a row of org_1, the tenant raw pg's connections carry. */
export const nextId = () => (n++ % 1000) * 10 + 1
let current = 0
const pickTenant = () => {
  current = (current + 1) % 10
  return `org_${current}`
}
const idOf = (tenant) => (n++ % 1000) * 10 + Number(tenant.slice(4)) + (tenant === 'org_0' ? 10 : 0)
const tenantOf = (count) => (count === 10 ? pickTenant() : `org_${n % count}`)
const salesRole = (count) => `bench_sales_${(n % count) + 1}`

// The statements the Kysely rows run: the same compiled SQL on every pool.
const kyselySelect = (k, id) => k.selectFrom('events').select(['id', 'kind']).where('id', '=', id).execute()
const kyselyOn = (pool) => new Kysely({ dialect: new PostgresDialect({ pool }) })

/**
 * @param {string} url the application role's URL (straight to PostgreSQL or through the proxy)
 * @param {{ poolSize: number, roleCount: number }} options
 */
export function buildRows(url, { poolSize, roleCount }) {
  const pool = new pg.Pool({ connectionString: url, max: poolSize })
  pool.on('error', () => undefined)
  // Raw pg gets the same RLS work and the same one-row answers: its connections carry a tenant set
  // once, at connect time, and it asks only for that tenant's rows.
  const rawPool = new pg.Pool({ connectionString: url, max: poolSize, options: '-c app.tenant_id=org_1' })
  // The floor's own pool: its prepared statements are not pg-tenant's.
  const floorPool = new pg.Pool({ connectionString: url, max: poolSize })
  floorPool.on('error', () => undefined)

  const tenants = createTenantPool(pool)
  const roles = createTenantPool(pool, { roles: [/^bench_sales_[0-9]+$/] })
  const sessions = createTenantPool(pool, { scope: 'session' })
  // The release canary: one more round trip per checked release.
  const checked = createTenantPool(pool, { verifyRelease: true })
  const sampled = createTenantPool(pool, { verifyRelease: 0.01 })
  // The per-tenant quota at the pool's size: it never holds anyone back, so the row shows what
  // passing the gate costs.
  const quota = createTenantPool(pool, { maxPerTenant: poolSize })

  // Kysely as users would set it up: on a plain pg.Pool (raw: the tenant comes with the
  // connection; naive: the tenant is set in a transaction per request), and on db.pool.
  const rawKysely = kyselyOn(rawPool)
  const naiveKysely = kyselyOn(pool)
  const tenantKysely = kyselyOn(tenants.pool)

  // Shorthands for the rows below: one statement for a tenant, through pg-tenant.
  const scoped = (db, fn) => {
    const t = tenantOf(10)
    return db.runWithTenant(t, () => fn(t))
  }
  const onePoint = (db) => scoped(db, (t) => db.query(POINT, [idOf(t)]))
  const threePoints = async (query) => {
    await query()
    await query()
    await query()
  }

  async function naive(tenant) {
    const client = await pool.connect()
    try {
      await client.query('BEGIN')
      await client.query(`select set_config('app.tenant_id', $1, true)`, [tenant])
      await client.query(POINT, [idOf(tenant)])
      await client.query('COMMIT')
    } finally {
      client.release()
    }
  }

  async function sessionSet(tenant) {
    const client = await pool.connect()
    try {
      await client.query(`select set_config('app.tenant_id', $1, false)`, [tenant])
      await client.query(POINT, [idOf(tenant)])
      await client.query('RESET app.tenant_id')
    } finally {
      client.release()
    }
  }

  async function setRole(role) {
    const client = await pool.connect()
    try {
      await client.query(`SET ROLE ${client.escapeIdentifier(role)}`)
      await client.query(CLIENT_POINT, [nextId()])
      await client.query('RESET ROLE')
    } finally {
      client.release()
    }
  }

  // The pattern users write without pg-tenant: a Kysely transaction per request whose first
  // statement sets the tenant for that transaction.
  const naiveKyselyTx = (statements) => {
    const t = tenantOf(10)
    return naiveKysely.transaction().execute(async (trx) => {
      await sql`select set_config('app.tenant_id', ${t}, true)`.execute(trx)
      for (let i = 0; i < statements; i++) await kyselySelect(trx, idOf(t))
    })
  }

  const row = (name, sends, run, { baseline = RAW, latency = false } = {}) => ({ name, sends, run, baseline, latency })
  const kyselyRow = (name, sends, run, options) => row(name, sends, run, { baseline: RAW_KYSELY, latency: true, ...options })
  const kyselyTxRow = (name, sends, run) => kyselyRow(name, sends, run, { baseline: RAW_KYSELY_TX })

  const rows = [
    row(RAW, '1: the statement (tenant set at connect time)', () => rawPool.query(POINT, [nextId()]), { latency: true }),
    row('floor: hand-written 1-trip set_config + query', '1: set_config, statement, one Sync', () => {
      const tenant = tenantOf(10)
      return floorQuery(floorPool, { tenant, text: POINT, values: [idOf(tenant)] })
    }, { latency: true }),
    row('floor + reset: the same trip, then a session reset', '1: set_config, statement, role and tenant reset, one Sync', () => {
      const tenant = tenantOf(10)
      return floorQuery(floorPool, { tenant, text: POINT, values: [idOf(tenant)], reset: true })
    }, { latency: true }),
    row('floor + reset + tenant again (what pg-tenant sends)', '1: set_config, statement, reset, set_config again, one Sync', () => {
      const tenant = tenantOf(10)
      return floorQuery(floorPool, { tenant, text: POINT, values: [idOf(tenant)], reset: true, reapply: true })
    }, { latency: true }),
    row('naive: BEGIN, set_config, query, COMMIT', '4: BEGIN, set_config, statement, COMMIT', () => naive(tenantOf(10)), { latency: true }),
    row('session: set_config, query, RESET', '3: set_config(…, false), statement, RESET', () => sessionSet(tenantOf(10))),
    row('SET ROLE, query, RESET ROLE (seed 000)', '3: SET ROLE, statement, RESET ROLE', () => setRole(salesRole(10))),
    row('pg-tenant runWithTenant + 1 query', 'budget 1', () => onePoint(tenants), { latency: true }),
    row('pg-tenant runWithTenant + 1 query, verifyRelease', 'budget 1, + 1 canary', () => onePoint(checked)),
    row('pg-tenant runWithTenant + 1 query, verifyRelease 1%', 'budget 1, + 1 canary on 1%', () => onePoint(sampled)),
    row('pg-tenant runWithTenant + 1 query, maxPerTenant', 'budget 1, through the per-tenant quota', () => onePoint(quota)),
    row('pg-tenant withTenant, 1 query', 'budget 2: N + 1', () => {
      const t = tenantOf(10)
      return tenants.withTenant(t, () => tenants.query(POINT, [idOf(t)]))
    }),
    row('pg-tenant scope session, 1 query', 'scope session: set on checkout, reset before release', () => {
      const t = tenantOf(10)
      return sessions.withTenant(t, () => sessions.query(POINT, [idOf(t)]))
    }),
    row(RAW_3, '3: three statements', () => threePoints(() => rawPool.query(POINT, [nextId()])), { baseline: RAW_3, latency: true }),
    row('pg-tenant withTenant, 3 queries', 'budget 4: N + 1', () => {
      const t = tenantOf(10)
      return tenants.withTenant(t, () => threePoints(() => tenants.query(POINT, [idOf(t)])))
    }, { baseline: RAW_3, latency: true }),
    row('pg-tenant runWithTenant, 10 tenants', 'budget 1', () => onePoint(tenants)),
    row('pg-tenant runWithTenant, 100,000 tenants', 'budget 1', () => {
      // Tenants org_0 .. org_99999: the rows of the first ten answer, the others find none.
      const t = tenantOf(100000)
      return tenants.runWithTenant(t, () => tenants.query(POINT, [nextId()]))
    }),
    row('pg-tenant role model, 10 roles', 'budget 1', () =>
      roles.runWithTenant({ role: salesRole(10) }, () => roles.query(CLIENT_POINT, [nextId()]))),
    row(`pg-tenant role model, ${roleCount.toLocaleString('en')} roles`, 'budget 1', () =>
      roles.runWithTenant({ role: salesRole(roleCount) }, () => roles.query(CLIENT_POINT, [nextId()]))),

    kyselyRow(RAW_KYSELY, '1: the statement (tenant set at connect time)', () => kyselySelect(rawKysely, nextId())),
    kyselyRow('pg-tenant Kysely via db.pool: select', 'budget 1', () =>
      scoped(tenants, (t) => kyselySelect(tenantKysely, idOf(t)))),
    kyselyRow('naive Kysely: transaction, set_config, select', '4: BEGIN, set_config, statement, COMMIT', () => naiveKyselyTx(1)),
    kyselyTxRow(RAW_KYSELY_TX, '4: BEGIN, 2 statements, COMMIT', () =>
      rawKysely.transaction().execute(async (trx) => {
        await kyselySelect(trx, nextId())
        await kyselySelect(trx, nextId())
      })),
    kyselyTxRow('pg-tenant Kysely via db.pool: transaction of 2', 'budget ≤ 4: what Kysely sends alone', () =>
      scoped(tenants, (t) =>
        tenantKysely.transaction().execute(async (trx) => {
          await kyselySelect(trx, idOf(t))
          await kyselySelect(trx, idOf(t))
        }))),
    kyselyTxRow('naive Kysely: transaction, set_config + 2 statements', '5: BEGIN, set_config, 2 statements, COMMIT', () => naiveKyselyTx(2)),
  ]

  return {
    rows,
    tenants,
    // Kysely's destroy() would end the pools it was given; the pools are ended here instead.
    end: () => Promise.all([pool.end(), rawPool.end(), floorPool.end()]),
  }
}
