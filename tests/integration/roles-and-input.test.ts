/**
 * Guarantees 7 and 8: only allow-listed roles are ever set, refused roles leave a clean client,
 * and malformed input is rejected before any SQL while hostile-looking ids travel verbatim.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  createTenantPool,
  InvalidOptionsError,
  InvalidTenantError,
  RoleNotAllowedError,
  RoleSwitchError,
} from '../setup/pg-tenant.js'
import { createTestDatabase, STATE_SQL, type State, type TestDatabase } from '../setup/fixtures.js'

let t: TestDatabase
beforeAll(async () => {
  t = await createTestDatabase()
})
afterAll(() => t.drop())


describe('roles (guarantee 7)', () => {
  it('uses allow-listed names and whole-name RegExp matches only', async () => {
    const [first, second] = t.roles.sales
    const prefix = first!.replace(/_sales_1$/, '')
    const db = createTenantPool(t.pool({ max: 1 }), {
      roles: [first!, new RegExp(`${prefix}_sales_[0-9]`)],
    })
    for (const role of [first!, second!]) {
      const { rows } = await db.withTenant({ role }, () => db.query<{ current_user: string }>(STATE_SQL))
      expect(rows[0]!.current_user).toBe(role)
    }
  })

  it.each([
    ['a role not on the list', (t: TestDatabase) => t.ownerRole],
    ['a superuser', () => 'postgres'],
    ['a RegExp match that is not the whole name', (t: TestDatabase) => `${t.roles.sales[0]}x`],
    ['NONE (which would mean RESET ROLE)', () => 'none'],
  ])('refuses %s with RoleNotAllowedError before any SQL', async (_, role) => {
    const pool = t.countingPool(1)
    const prefix = t.roles.sales[0]!.replace(/_sales_1$/, '')
    const db = createTenantPool(pool, { roles: [new RegExp(`${prefix}_sales_[0-9]`), 'none'] })
    const err = await db.withTenant({ role: role(t) }, () => db.query('select 1')).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(RoleNotAllowedError)
    expect(err).toMatchObject({ code: 'ROLE_NOT_ALLOWED', status: 403 })
    expect(pool.checkouts).toBe(0)
  })

  it.each([
    ['does not exist', (t: TestDatabase) => `${t.roles.group}_missing`, '22023'],
    ['is not granted to the login role', (t: TestDatabase) => t.roles.notGranted, '42501'],
  ])('gives RoleSwitchError and a clean client when the role %s', async (_, role, sqlstate) => {
    for (const scope of ['transaction', 'session'] as const) {
      const db = createTenantPool(t.pool({ max: 1 }), { scope, roles: [role(t)] })
      const before = (await db.withoutTenant(() => db.query<{ pid: number }>(STATE_SQL))).rows[0]!
      const err = await db
        .withTenant({ id: 'org_r', role: role(t) }, () => db.query('select 1'))
        .catch((e: unknown) => e)
      expect(err).toBeInstanceOf(RoleSwitchError)
      expect((err as RoleSwitchError).role).toBe(role(t))
      expect(((err as RoleSwitchError).cause as { code: string }).code).toBe(sqlstate)
      const after = (
        await db.withoutTenant(() =>
          db.query<{ pid: number; current_user: string; session_user: string; tenant: string }>(STATE_SQL),
        )
      ).rows[0]!
      expect(after.pid).toBe(before.pid)
      expect(after.current_user).toBe(after.session_user)
      expect(after.tenant).toBe('')
    }
  })
})

describe('input (guarantee 8)', () => {
  const bad: Array<[string, unknown]> = [
    ['an empty id', ''],
    ['a number', 42],
    ['null', null],
    ['an array', ['org_1']],
    ['an over-long id', 'x'.repeat(257)],
    ['an id with NUL', 'org\u0000_1'],
    ['an id with an unpaired surrogate', 'org_\ud800'],
    ['an object with nothing to apply', {}],
    ['an object with an empty id', { id: '' }],
    ['an object with an unknown field', { id: 'a', tenantId: 'b' }],
    ['settings with a bad name', { settings: { 'no_dot': 'x' } }],
    ['settings with a non-string value', { settings: { 'app.user_id': 7 } }],
    ['settings that overwrite the id setting', { id: 'a', settings: { 'app.tenant_id': 'b' } }],
    ['a non-string role', { role: 5 }],
  ]

  it.each(bad)('rejects %s with InvalidTenantError before any SQL', async (_, tenant) => {
    const pool = t.countingPool(1)
    const db = createTenantPool(pool)
    const err = await db.withTenant(tenant as string, () => db.query('select 1')).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(InvalidTenantError)
    expect(err).toMatchObject({ code: 'INVALID_TENANT', status: 400 })
    expect(() => db.runWithTenant(tenant as string, () => 1)).toThrow(InvalidTenantError)
    expect(pool.checkouts).toBe(0)
  })

  it('stores and reads back ids full of quotes, backslashes and semicolons verbatim', async () => {
    const db = createTenantPool(t.pool({ max: 2 }))
    const ids = [
      `o'rg"; drop table events; --`,
      `\\'; select pg_sleep(10); --\\`,
      `$1 $$ $tag$ %s %I`,
      `ünïcødé 組織 🏢`,
      `'`.repeat(256),
    ]
    for (const id of ids) {
      await db.withTenant(id, () => db.query(`insert into events (kind) values ('verbatim')`))
      const { rows } = await db.runWithTenant(id, () =>
        db.query<{ org_id: string; tenant: string }>(
          `select org_id, current_setting('app.tenant_id') tenant from events where kind = 'verbatim'`,
        ),
      )
      expect(rows).toEqual([{ org_id: id, tenant: id }])
    }
    const { rows } = await t.admin<{ n: string }>(`select count(*) n from events where kind = 'verbatim'`)
    expect(Number(rows[0]!.n)).toBe(ids.length)
  })

  it('applies extra settings from a tenant object', async () => {
    const db = createTenantPool(t.pool({ max: 1 }))
    const { rows } = await db.withTenant({ id: 'org_s', settings: { 'app.user_id': "u'1" } }, () =>
      db.query<{ user_id: string; tenant: string }>(
        `select current_setting('app.user_id') user_id, current_setting('app.tenant_id') tenant`,
      ),
    )
    expect(rows).toEqual([{ user_id: "u'1", tenant: 'org_s' }])
  })

  it.each([
    'tenant_id',
    "app.tenant_id'; drop table events; --",
    'app.tenant id',
    'app..tenant',
    '1app.tenant',
    `app.${'x'.repeat(64)}`,
    '',
  ])('refuses the setting name %j at construction', (setting) => {
    expect(() => createTenantPool(t.pool(), { setting })).toThrow(InvalidOptionsError)
  })

  it('refuses other malformed options at construction', () => {
    expect(() => createTenantPool(t.pool(), { scope: 'request' as never })).toThrow(InvalidOptionsError)
    expect(() => createTenantPool(t.pool(), { roles: [5 as never] })).toThrow(InvalidOptionsError)
    expect(() => createTenantPool({} as never)).toThrow(InvalidOptionsError)
    expect(() => createTenantPool(t.pool(), { maxValueLength: 0 })).toThrow(InvalidOptionsError)
  })
})
