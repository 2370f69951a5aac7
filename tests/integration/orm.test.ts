/**
 * db.pool with the real ORMs: Kysely (PostgresDialect) and Drizzle (node-postgres driver) run
 * tenant-scoped with no ORM-specific code, fail closed, nest their transactions inside withTenant,
 * and keep tenants apart under concurrency.
 */
import { drizzle } from 'drizzle-orm/node-postgres'
import { eq } from 'drizzle-orm'
import { bigserial, pgTable, text } from 'drizzle-orm/pg-core'
import { Kysely, PostgresDialect, sql, type Generated } from 'kysely'
import pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createTenantPool, tenantErrorOf, TenantRequiredError, type TenantPool } from '../setup/pg-tenant.js'
import { createTestDatabase, type TestDatabase } from '../setup/fixtures.js'

interface DB {
  events: { id: Generated<string>; org_id: Generated<string>; kind: string; payload: string | null }
}
const events = pgTable('events', {
  id: bigserial('id', { mode: 'number' }).primaryKey(),
  orgId: text('org_id').notNull(),
  kind: text('kind').notNull(),
  payload: text('payload'),
})

let t: TestDatabase
let raw: pg.Pool
let db: TenantPool<pg.Pool>
let kysely: Kysely<DB>
beforeAll(async () => {
  t = await createTestDatabase()
  raw = t.pool({ max: 4 })
  db = createTenantPool(raw)
  kysely = new Kysely<DB>({ dialect: new PostgresDialect({ pool: db.pool }) })
})
afterAll(async () => {
  await kysely.destroy().catch(() => undefined)
  await t.drop()
})

const count = async (kind: string) =>
  Number((await t.admin<{ n: string }>('select count(*) n from events where kind = $1', [kind])).rows[0]!.n)

describe('db.pool', () => {
  it('passes instanceof pg.Pool and passes counters and events through', async () => {
    expect(db.pool).toBeInstanceOf(pg.Pool)
    const listener = () => undefined
    expect(db.pool.on('connect', listener)).toBe(db.pool)
    db.pool.off('connect', listener)
    await db.runWithTenant('org_p', () => db.query('select 1')) // the wrapped pool opens a client
    await new Promise((r) => setTimeout(r, 20)) // and takes it back
    expect(raw.totalCount).toBeGreaterThan(0)
    expect([db.pool.totalCount, db.pool.idleCount, db.pool.waitingCount]).toEqual([
      raw.totalCount,
      raw.idleCount,
      raw.waitingCount,
    ])
  })

  it('query in promise and callback forms is db.query', async () => {
    const viaPromise = await db.runWithTenant('org_p', () => db.pool.query(`select current_setting('app.tenant_id') t`))
    expect(viaPromise.rows).toEqual([{ t: 'org_p' }])
    const viaCallback = await db.runWithTenant('org_p', () =>
      new Promise((resolve, reject) =>
        db.pool.query('select $1::text v', ['x'], (err: Error | undefined, r: pg.QueryResult) => (err ? reject(err) : resolve(r.rows))),
      ),
    )
    expect(viaCallback).toEqual([{ v: 'x' }])
    await expect(db.pool.query('select 1')).rejects.toBeInstanceOf(TenantRequiredError)
  })

  it('connect in callback form hands out a scoped client', async () => {
    const rows = await db.runWithTenant('org_cb', () =>
      new Promise((resolve, reject) => {
        db.pool.connect((err, client, done) => {
          if (err || !client) return reject(err)
          client.query(`select current_setting('app.tenant_id') t`).then((r) => {
            done()
            resolve(r.rows)
          }, reject)
        })
      }),
    )
    expect(rows).toEqual([{ t: 'org_cb' }])
  })

  it('connect with no tenant bound fails closed', async () => {
    await expect(db.pool.connect()).rejects.toBeInstanceOf(TenantRequiredError)
  })
})

describe('Kysely', () => {
  it('runs queries and transactions under runWithTenant', async () => {
    await db.runWithTenant('org_k1', async () => {
      await kysely.insertInto('events').values({ kind: 'kysely', payload: 'org_k1' }).execute()
      await kysely.transaction().execute(async (trx) => {
        await trx.insertInto('events').values({ kind: 'kysely', payload: 'org_k1' }).execute()
      })
    })
    const rows = await db.runWithTenant('org_k1', () => kysely.selectFrom('events').selectAll().where('kind', '=', 'kysely').execute())
    expect(rows.map((r) => r.org_id)).toEqual(['org_k1', 'org_k1'])
    const other = await db.runWithTenant('org_k2', () => kysely.selectFrom('events').selectAll().where('kind', '=', 'kysely').execute())
    expect(other).toEqual([])
  })

  it('keeps its own isolation level under runWithTenant', async () => {
    const level = await db.runWithTenant('org_k1', () =>
      kysely
        .transaction()
        .setIsolationLevel('serializable')
        .execute(async (trx) => (await sql<{ l: string }>`select current_setting('transaction_isolation') l`.execute(trx)).rows[0]!.l),
    )
    expect(level).toBe('serializable')
  })

  it('nests a transaction that rolls back inside withTenant, keeping the outer work and tenant', async () => {
    let innerSaw: unknown
    let innerErr: unknown
    const tenantAfter = await db.withTenant('org_k3', async () => {
      await kysely.insertInto('events').values({ kind: 'kysely-outer' }).execute()
      innerErr = await kysely
        .transaction()
        .execute(async (trx) => {
          await trx.insertInto('events').values({ kind: 'kysely-inner' }).execute()
          innerSaw = await trx.selectFrom('events').select('org_id').where('kind', '=', 'kysely-inner').execute()
          throw new Error('roll the inner transaction back')
        })
        .catch((e: unknown) => e)
      const row = await sql<{ t: string }>`select current_setting('app.tenant_id') t`.execute(kysely)
      return row.rows[0]!.t
    })
    // The inner transaction ran (its row was there) and failed with the callback's own error, so
    // the count below shows a rollback, not a transaction that never ran.
    expect(innerSaw).toEqual([{ org_id: 'org_k3' }])
    expect((innerErr as Error).message).toBe('roll the inner transaction back')
    expect(tenantAfter).toBe('org_k3')
    expect(await count('kysely-outer')).toBe(1)
    expect(await count('kysely-inner')).toBe(0)
  })

  it('refuses transaction modes it cannot honour inside withTenant', async () => {
    const err = await db
      .withTenant('org_k3', () => kysely.transaction().setIsolationLevel('serializable').execute(async () => 1))
      .catch((e: unknown) => e)
    expect(err).toMatchObject({ code: 'INVALID_QUERY' })
  })

  it('fails closed outside any tenant', async () => {
    await expect(kysely.selectFrom('events').selectAll().execute()).rejects.toBeInstanceOf(TenantRequiredError)
  })

  it('keeps 120 concurrent requests across 4 tenants apart', async () => {
    const tenants = ['org_a', 'org_b', 'org_c', 'org_d']
    let foreign = 0
    let seen = 0
    await Promise.all(
      Array.from({ length: 120 }, (_, i) => {
        const tenant = tenants[i % 4]!
        const request = async () => {
          await kysely.insertInto('events').values({ kind: 'kysely-load', payload: tenant }).execute()
          const rows = await kysely.selectFrom('events').select(['org_id', 'payload']).where('kind', '=', 'kysely-load').execute()
          seen += rows.length
          foreign += rows.filter((r) => r.org_id !== tenant || r.payload !== tenant).length
        }
        return i % 2 ? db.runWithTenant(tenant, request) : db.withTenant(tenant, request)
      }),
    )
    expect(seen).toBeGreaterThan(120)
    expect(foreign).toBe(0)
  })
})

describe('Drizzle', () => {
  const orm = () => drizzle(db.pool)

  it('runs queries and an atomic transaction under runWithTenant', async () => {
    await db.runWithTenant('org_d1', async () => {
      await orm().insert(events).values({ orgId: 'org_d1', kind: 'drizzle', payload: 'a' })
      await orm().transaction(async (tx) => {
        await tx.insert(events).values({ orgId: 'org_d1', kind: 'drizzle', payload: 'b' })
      })
    })
    const rows = await db.runWithTenant('org_d1', () => orm().select().from(events).where(eq(events.kind, 'drizzle')))
    expect(rows.map((r) => r.payload).sort()).toEqual(['a', 'b'])
  })

  it('rolls back a transaction that throws and leaves no row behind', async () => {
    const err = await db
      .runWithTenant('org_d1', () =>
        orm().transaction(async (tx) => {
          await tx.insert(events).values({ orgId: 'org_d1', kind: 'drizzle-rollback' })
          throw new Error('undo')
        }),
      )
      .catch((e: unknown) => e)
    expect((err as Error).message).toBe('undo')
    expect(await count('drizzle-rollback')).toBe(0)
  })

  it('nests inside withTenant and db.transaction', async () => {
    let innerSaw: unknown
    let innerErr: unknown
    await db.withTenant('org_d2', () =>
      db.transaction(async () => {
        await orm().insert(events).values({ orgId: 'org_d2', kind: 'drizzle-outer' })
        innerErr = await orm()
          .transaction(async (tx) => {
            await tx.insert(events).values({ orgId: 'org_d2', kind: 'drizzle-inner' })
            innerSaw = (await tx.select().from(events).where(eq(events.kind, 'drizzle-inner'))).map((r) => r.orgId)
            throw new Error('inner')
          })
          .catch((e: unknown) => e)
      }),
    )
    // The inner transaction ran and failed with its own error: the count below shows a rollback.
    expect(innerSaw).toEqual(['org_d2'])
    expect((innerErr as Error).message).toBe('inner')
    expect(await count('drizzle-outer')).toBe(1)
    expect(await count('drizzle-inner')).toBe(0)
  })

  it('refuses rows for another tenant (WITH CHECK) and fails closed without one', async () => {
    const err = await db
      .runWithTenant('org_d1', () => orm().insert(events).values({ orgId: 'org_other', kind: 'drizzle-forged' }))
      .catch((e: unknown) => e)
    expect(JSON.stringify((err as { cause?: unknown }).cause ?? err)).toContain('42501')
    const unbound = await orm().select().from(events).then(() => undefined, (e: unknown) => e)
    expect(tenantErrorOf(unbound)).toBeInstanceOf(TenantRequiredError) // Drizzle wraps it (cause)
    expect(await count('drizzle-forged')).toBe(0)
  })

  it('keeps 120 concurrent requests across 4 tenants apart', async () => {
    const tenants = ['org_e', 'org_f', 'org_g', 'org_h']
    let foreign = 0
    await Promise.all(
      Array.from({ length: 120 }, (_, i) => {
        const tenant = tenants[i % 4]!
        return db.runWithTenant(tenant, async () => {
          await orm().transaction(async (tx) => {
            await tx.insert(events).values({ orgId: tenant, kind: 'drizzle-load', payload: tenant })
          })
          const rows = await orm().select().from(events).where(eq(events.kind, 'drizzle-load'))
          foreign += rows.filter((r) => r.orgId !== tenant || r.payload !== tenant).length
        })
      }),
    )
    expect(foreign).toBe(0)
    expect(await count('drizzle-load')).toBe(120)
  })
})
