/**
 * isRlsViolation against the errors a real PostgreSQL raises: it must match a write refused by a
 * policy, and nothing else (a missing GRANT shares SQLSTATE 42501 but is not a tenant's doing);
 * also once wrapped, by `new Error(msg, { cause })` and by Drizzle through db.pool. With them,
 * tenantErrorOf and httpStatusOf on pg-tenant's own errors wrapped the same ways.
 */
import { DrizzleQueryError } from 'drizzle-orm'
import { drizzle } from 'drizzle-orm/node-postgres'
import { eq } from 'drizzle-orm'
import { integer, pgTable, text } from 'drizzle-orm/pg-core'
import pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  createTenantPool,
  httpStatusOf,
  isRlsViolation,
  tenantErrorOf,
  TenantRequiredError,
  type TenantPool,
} from '../setup/pg-tenant.js'
import { createTestDatabase, type TestDatabase } from '../setup/fixtures.js'

let t: TestDatabase
let db: TenantPool
beforeAll(async () => {
  t = await createTestDatabase()
  db = createTenantPool(t.pool({ max: 2 }), { roles: t.roles.sales })
})
afterAll(() => t.drop())

const caught = (p: Promise<unknown>) =>
  p.then(
    () => expect.fail('expected a rejection'),
    (err: unknown) => err,
  )

it('matches an INSERT whose row fails a WITH CHECK policy (setting model)', async () => {
  const err = await caught(
    db.withTenant('org_1', () => db.query(`insert into events (org_id, kind) values ('org_2', 'x')`)),
  )
  expect(err).toMatchObject({ code: '42501' })
  expect(isRlsViolation(err)).toBe(true)
})

it('matches an UPDATE that would move a row to another tenant', async () => {
  await db.withTenant('org_1', () => db.query(`insert into events (kind) values ('mine')`))
  const err = await caught(
    db.runWithTenant('org_1', () => db.query(`update events set org_id = 'org_2' where kind = 'mine'`)),
  )
  expect(isRlsViolation(err)).toBe(true)
})

it('matches an INSERT refused in the role-per-user model', async () => {
  const [mine, other] = t.roles.sales
  const err = await caught(
    db.withTenant({ role: mine! }, () =>
      db.query('insert into clients (name, salesperson) values ($1, $2)', ['stolen', other]),
    ),
  )
  expect(isRlsViolation(err)).toBe(true)
})

it('does not match "permission denied" (same SQLSTATE, a missing GRANT)', async () => {
  const err = await caught(db.withTenant('org_1', () => db.query('insert into parents values (2)')))
  expect(err).toMatchObject({ code: '42501' })
  expect(isRlsViolation(err)).toBe(false)
})

it('does not match other errors, nor non-errors', async () => {
  const err = await caught(db.withTenant('org_1', () => db.query('select 1/0')))
  expect(isRlsViolation(err)).toBe(false)
  expect(isRlsViolation(undefined)).toBe(false)
  expect(isRlsViolation(null)).toBe(false)
  expect(isRlsViolation('42501')).toBe(false)
  expect(isRlsViolation({ code: 42501 })).toBe(false)
  // A driver or proxy that drops `routine`: the English message decides.
  expect(isRlsViolation({ code: '42501', message: 'new row violates row-level security policy for table "t"' })).toBe(true)
  expect(isRlsViolation({ code: '42501', message: 'permission denied for table t' })).toBe(false)
})

describe('wrapped errors', () => {
  const wrap = (err: unknown, depth = 1) => {
    let out = err
    for (let i = 0; i < depth; i++) out = new Error(`wrapper ${i}`, { cause: out })
    return out
  }

  it("matches a real RLS refusal wrapped in new Error(msg, { cause }), and answers 403", async () => {
    const err = await caught(
      db.withTenant('org_1', () => db.query(`insert into events (org_id, kind) values ('org_2', 'x')`)),
    )
    expect(err).toBeInstanceOf(pg.DatabaseError)
    for (const depth of [1, 3, 8]) {
      expect(isRlsViolation(wrap(err, depth))).toBe(true)
      expect(httpStatusOf(wrap(err, depth))).toBe(403)
    }
    expect(isRlsViolation(wrap(err, 9))).toBe(false) // deeper than the walk goes
  })

  it('does not match a real missing GRANT, nor another error, once wrapped', async () => {
    const grant = await caught(db.withTenant('org_1', () => db.query('insert into parents values (3)')))
    const other = await caught(db.withTenant('org_1', () => db.query('select 1/0')))
    expect(grant).toMatchObject({ code: '42501' })
    for (const err of [grant, other]) {
      expect(isRlsViolation(wrap(err))).toBe(false)
      expect(httpStatusOf(wrap(err))).toBeUndefined()
    }
  })

  it('finds a TenantRequiredError rejected outside any scope, wrapped, and answers 401', async () => {
    const err = await caught(db.query('select 1'))
    expect(err).toBeInstanceOf(TenantRequiredError)
    expect(tenantErrorOf(wrap(err, 2))).toBe(err)
    expect(httpStatusOf(wrap(err, 2))).toBe(401)
    expect(isRlsViolation(wrap(err, 2))).toBe(false)
  })
})

describe('Drizzle through db.pool', () => {
  const events = pgTable('events', { orgId: text('org_id').notNull(), kind: text('kind').notNull() })
  const parents = pgTable('parents', { id: integer('id').primaryKey() })
  // tests/setup's createTenantPool returns TenantPool<PgPoolLike>: db.pool is a pg.Pool at run time.
  const orm = () => drizzle(db.pool as unknown as pg.Pool)

  it('wraps an RLS refusal in DrizzleQueryError with the pg error as cause: 403', async () => {
    const insert = await caught(
      db.runWithTenant('org_1', () => orm().insert(events).values({ orgId: 'org_2', kind: 'drizzle-forged' })),
    )
    expect(insert).toBeInstanceOf(DrizzleQueryError)
    expect((insert as DrizzleQueryError).cause).toMatchObject({ code: '42501', routine: 'ExecWithCheckOptions' })
    expect(isRlsViolation(insert)).toBe(true)
    expect(httpStatusOf(insert)).toBe(403)

    // An UPDATE that would move a row to another tenant, inside Drizzle's own transaction.
    await db.runWithTenant('org_1', () => orm().insert(events).values({ orgId: 'org_1', kind: 'drizzle-mine' }))
    const update = await caught(
      db.runWithTenant('org_1', () =>
        orm().transaction((tx) => tx.update(events).set({ orgId: 'org_2' }).where(eq(events.kind, 'drizzle-mine'))),
      ),
    )
    expect(isRlsViolation(update)).toBe(true)
    expect(httpStatusOf(new Error('route failed', { cause: update }))).toBe(403)
    const { rows } = await t.admin(`select count(*)::int n from events where kind = 'drizzle-forged' or org_id = 'org_2'`)
    expect(rows[0].n).toBe(0)
  })

  it('does not take a missing GRANT through Drizzle for an RLS refusal', async () => {
    const err = await caught(db.withTenant('org_1', () => orm().insert(parents).values({ id: 4 })))
    expect(err).toBeInstanceOf(DrizzleQueryError)
    expect((err as DrizzleQueryError).cause).toMatchObject({ code: '42501' })
    expect(isRlsViolation(err)).toBe(false)
    expect(httpStatusOf(err)).toBeUndefined()
  })

  it("wraps db.pool's TenantRequiredError in DrizzleQueryError: 401", async () => {
    const select = await caught(orm().select().from(events))
    expect(select).toBeInstanceOf(DrizzleQueryError)
    expect((select as DrizzleQueryError).cause).toBeInstanceOf(TenantRequiredError)
    expect(tenantErrorOf(select)).toBe((select as DrizzleQueryError).cause)
    expect(httpStatusOf(select)).toBe(401)
    expect(isRlsViolation(select)).toBe(false)

    // Drizzle's transaction takes a client with db.pool.connect(), which it does not wrap.
    const tx = await caught(orm().transaction((t2) => t2.select().from(events)))
    expect(tenantErrorOf(tx)).toBeInstanceOf(TenantRequiredError)
    expect(httpStatusOf(tx)).toBe(401)
  })
})
