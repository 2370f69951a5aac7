/**
 * isRlsViolation against the errors a real PostgreSQL raises: it must match a write refused by a
 * policy, and nothing else (a missing GRANT shares SQLSTATE 42501 but is not a tenant's doing).
 */
import { afterAll, beforeAll, expect, it } from 'vitest'
import { createTenantPool, isRlsViolation, type TenantPool } from '../setup/pg-tenant.js'
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
