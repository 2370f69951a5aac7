/**
 * The round-trip budget (DESIGN.md), counted on the wire by a loopback proxy, not timed:
 * a lone scoped query costs 1 like raw pg, withTenant with N queries N + 1, and a withTenant that
 * runs no query 0.
 */
import { Kysely, PostgresDialect, type Generated } from 'kysely'
import pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createTenantPool } from '../../src/index.js'
import { createTestDatabase, NEEDS_PGBOUNCER, pgBouncerAvailable, type TestDatabase } from '../setup/fixtures.js'
import { startWireProxy, type WireProxy } from '../setup/wire-proxy.js'

let t: TestDatabase
beforeAll(async () => {
  t = await createTestDatabase()
})
afterAll(() => t.drop())

// Where PgBouncer is not installed those tests are skipped and listed at the end; CI requires it.
describe.each([
  ['direct', () => t.appUrl, true],
  ['through PgBouncer (transaction pooling)', () => t.bouncerUrl, pgBouncerAvailable()],
] as const)('%s', (target, targetUrl, available) => {
if (!available) return it.skip(NEEDS_PGBOUNCER)
let proxy: WireProxy
let pool: pg.Pool
beforeAll(async () => {
  const url = new URL(targetUrl()!)
  proxy = await startWireProxy(url.hostname, Number(url.port))
  url.port = String(proxy.port)
  pool = t.pool({ connectionString: url.toString(), max: 1 })
  await pool.query('select 1') // connect once: startup traffic is not part of any budget
})
afterAll(async () => {
  await pool?.end()
  await proxy?.close()
})

async function trips(fn: () => Promise<unknown>): Promise<number> {
  await fn() // warm: named statements, caches
  proxy.reset()
  await fn()
  return proxy.roundTrips
}

describe('scope transaction (default)', () => {
  const db = () => createTenantPool(pool)

  it('raw pool.query costs 1 (the baseline)', async () => {
    expect(await trips(() => pool.query('select 1'))).toBe(1)
  })

  it('runWithTenant + one query costs 1', async () => {
    const d = db()
    expect(await trips(() => d.runWithTenant('org_1', () => d.query('select * from events')))).toBe(1)
    expect(await trips(() => d.runWithTenant('org_1', () => d.query('select $1::int', [1])))).toBe(1)
    // Directly, the tenant's statement is prepared on the connection by the warm-up, then only
    // bound: the one statement parsed is the caller's. (Behind a transaction pooler it may have
    // been refused once, on another server connection, after which this pool parses it unnamed:
    // still one trip, which is the budget.) Which messages pg writes for that is pg's business.
    if (target === 'direct') {
      expect(proxy.parses.filter((p) => p.text !== 'select $1::int'), proxy.messages.join('')).toEqual([])
    }
  })

  it('runWithTenant with a role costs 1', async () => {
    const d = createTenantPool(pool, { roles: t.roles.sales })
    const role = t.roles.sales[0]!
    expect(await trips(() => d.runWithTenant({ role }, () => d.query('select * from clients')))).toBe(1)
  })

  it.each([1, 2, 3, 5])('withTenant with %i queries costs N + 1', async (n) => {
    const d = db()
    const count = await trips(() =>
      d.withTenant('org_1', async () => {
        for (let i = 0; i < n; i++) await d.query('select * from events where id = $1', [i])
      }),
    )
    expect(count).toBe(n + 1)
  })

  it('withTenant that runs no query costs 0', async () => {
    const d = db()
    expect(await trips(() => d.withTenant('org_1', async () => 'nothing'))).toBe(0)
  })

  it('the naive pattern (BEGIN, set_config, query, COMMIT) costs 4, for comparison', async () => {
    const naive = async () => {
      const client = await pool.connect()
      try {
        await client.query('BEGIN')
        await client.query(`select set_config('app.tenant_id', $1, true)`, ['org_1'])
        await client.query('select * from events')
        await client.query('COMMIT')
      } finally {
        client.release()
      }
    }
    expect(await trips(naive)).toBe(4)
  })

  it('a parameterless query also shares the trip (extended protocol)', async () => {
    const d = db()
    expect(await trips(() => d.runWithTenant('org_1', () => d.query('select 1')))).toBe(1)
  })

  it('several statements in one text take the slower path: tenant, Query, COMMIT', async () => {
    const d = db()
    expect(await trips(() => d.runWithTenant('org_1', () => d.query('select 1; select 2')))).toBe(3)
  })

  it('a nested db.transaction costs its SAVEPOINT and RELEASE', async () => {
    const d = db()
    const count = await trips(() =>
      d.withTenant('org_1', async () => {
        await d.query('select 1')
        await d.transaction(() => d.query('select 2'))
      }),
    )
    expect(count).toBe(1 + 3 + 1) // first query, SAVEPOINT + query + RELEASE, COMMIT
  })
})

describe('db.pool, the ORM road', () => {
  const db = () => createTenantPool(pool)
  interface DB {
    events: { id: Generated<string>; org_id: Generated<string>; kind: string; payload: string | null }
  }
  const kyselyOn = (p: unknown) => new Kysely<DB>({ dialect: new PostgresDialect({ pool: p as pg.Pool }) })

  it('a connect() client: 1 per autocommit statement, and what the caller sends for a transaction', async () => {
    const d = db()
    const autocommit = () =>
      d.runWithTenant('org_1', async () => {
        const client = await d.pool.connect()
        await client.query('select * from events')
        await client.query('select $1::int', [1])
        client.release()
      })
    expect(await trips(autocommit)).toBe(2)
    const transaction = (setTransaction: boolean) => async (c: { query(text: string): Promise<unknown> }) => {
      await c.query('BEGIN')
      if (setTransaction) await c.query('SET TRANSACTION ISOLATION LEVEL SERIALIZABLE')
      await c.query('select * from events')
      await c.query('select count(*) from events')
      await c.query('COMMIT')
    }
    for (const setTransaction of [false, true]) {
      const raw = await trips(async () => {
        const client = await pool.connect()
        await transaction(setTransaction)(client)
        client.release()
      })
      const scoped = await trips(() =>
        d.runWithTenant('org_1', async () => {
          const client = await d.pool.connect()
          await transaction(setTransaction)(client as never)
          client.release()
        }),
      )
      expect(raw).toBe(setTransaction ? 5 : 4)
      expect(scoped).toBe(raw)
    }
  })

  it('Kysely: a lone statement costs 1, a transaction what Kysely sends alone', async () => {
    const d = db()
    const plain = kyselyOn(pool)
    const scoped = kyselyOn(d.pool)
    const select = (k: Kysely<DB>) => k.selectFrom('events').selectAll().execute()
    const transaction = (k: Kysely<DB>) =>
      k
        .transaction()
        .setIsolationLevel('repeatable read')
        .execute(async (trx) => {
          await trx.selectFrom('events').selectAll().execute()
          await trx.selectFrom('events').select('id').execute()
        })
    expect(await trips(() => d.runWithTenant('org_1', () => select(scoped)))).toBe(1)
    const alone = await trips(() => transaction(plain))
    expect(alone).toBe(4)
    expect(await trips(() => d.runWithTenant('org_1', () => transaction(scoped)))).toBe(alone)
  })

  it('inside withTenant, a connect() client shares the scope: its transaction is savepoints', async () => {
    const d = db()
    const count = await trips(() =>
      d.withTenant('org_1', async () => {
        const client = await d.pool.connect()
        await client.query('BEGIN')
        await client.query('select 1')
        await client.query('COMMIT')
        client.release()
      }),
    )
    expect(count).toBe(1 + 1 + 1 + 1) // SAVEPOINT with BEGIN and the tenant, select, RELEASE, COMMIT
  })
})

// Scope session needs session pooling, so it is counted on the direct connection only.
if (target === 'direct') describe('scope session', () => {
  it('withTenant with N queries costs N + 2 (apply, queries, RESET)', async () => {
    const d = createTenantPool(pool, { scope: 'session' })
    const count = await trips(() =>
      d.withTenant('org_1', async () => {
        await d.query('select 1')
        await d.query('select 2')
      }),
    )
    expect(count).toBe(4)
  })
})
})
