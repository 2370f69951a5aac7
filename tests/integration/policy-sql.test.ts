/**
 * The generated SQL, applied to fresh schemas, isolates tenants through createTenantPool as the
 * non-owner login role: concurrent scopes see zero foreign rows, WITH CHECK refuses writes for
 * another tenant (42501), an unset or empty tenant sees nothing, the owner is bound by FORCE, the
 * doctor finds nothing to say, and the undo SQL removes it all.
 */
import { randomUUID } from 'node:crypto'
import pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  createTenantPool,
  createTenantRoleSql,
  dropRolePolicySql,
  dropTenantPolicySql,
  dropTenantRoleSql,
  rolePolicySql,
  tenantPolicySql,
  type TenantColumnType,
} from '../setup/pg-tenant.js'
import { checkRls } from '../../src/doctor/index.js'
import { createTestDatabase, type TestDatabase } from '../setup/fixtures.js'

let t: TestDatabase
beforeAll(async () => {
  t = await createTestDatabase()
})
afterAll(() => t.drop())

/** A pool of the login role. */
function appPool(max = 3): pg.Pool {
  return t.pool({ max })
}

const asOwner = (sql: string) => t.admin(`set role ${t.ownerRole}; ${sql}; reset role`)
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

async function rlsState(schema: string, table: string) {
  const { rows } = await t.admin<{ rls: boolean; force: boolean; policies: number }>(
    `select c.relrowsecurity as rls, c.relforcerowsecurity as force,
            (select count(*) from pg_policy p where p.polrelid = c.oid)::int as policies
       from pg_class c join pg_namespace n on n.oid = c.relnamespace
      where n.nspname = $1 and c.relname = $2`,
    [schema, table],
  )
  return rows[0]
}

const TENANTS: Record<'text' | 'uuid' | 'bigint', string[]> = {
  text: ['org_a', 'org_b', 'org_c', 'org_d'],
  uuid: Array.from({ length: 4 }, () => randomUUID()),
  bigint: ['101', '202', '303', '9007199254740993'], // past 2^53: compared as bigint, not as a JS number
}

describe.each<'text' | 'uuid' | 'bigint'>(['text', 'uuid', 'bigint'])(
  'tenantPolicySql with type %s',
  (type: TenantColumnType & keyof typeof TENANTS) => {
    const schema = `policy_${type}`
    const tenants = TENANTS[type]
    const options = { schema, table: 'items', column: 'org_id', type } as const
    const [a, b] = tenants as [string, string]

    beforeAll(async () => {
      await t.admin(`create schema ${schema} authorization ${t.ownerRole};
        grant usage on schema ${schema} to ${t.appRole}`)
      await asOwner(`
        create table ${schema}.items (id serial primary key, org_id ${type} not null, body text not null);
        grant select, insert, update, delete on ${schema}.items to ${t.appRole};
        grant usage on sequence ${schema}.items_id_seq to ${t.appRole};
        ${tenantPolicySql(options)}`)
    })

    it('keeps 120 concurrent scopes over 4 tenants on a pool of 3 apart, with zero foreign rows', async () => {
      const db = createTenantPool(appPool(3))
      let foreign = 0
      let seen = 0
      await Promise.all(
        Array.from({ length: 120 }, (_, i) => {
          const tenant = tenants[i % tenants.length]!
          return db.withTenant(tenant, async () => {
            await db.query(`insert into ${schema}.items (org_id, body) values ($1, $2)`, [tenant, tenant])
            await sleep(Math.random() * 3)
            const { rows } = await db.query<{ org_id: string; body: string }>(
              `select org_id::text as org_id, body from ${schema}.items`,
            )
            seen += rows.length
            foreign += rows.filter((r) => r.org_id !== tenant || r.body !== tenant).length
          })
        }),
      )
      expect(foreign).toBe(0)
      expect(seen).toBeGreaterThan(120) // there were other tenants' rows to leak
      const { rows } = await t.admin<{ n: string }>(`select count(*) n from ${schema}.items`)
      expect(Number(rows[0]!.n)).toBe(120)
    })

    it('keeps single runWithTenant queries apart', async () => {
      const db = createTenantPool(appPool(3))
      const results = await Promise.all(
        Array.from({ length: 80 }, (_, i) => {
          const tenant = tenants[i % tenants.length]!
          return db.runWithTenant(tenant, async () => {
            const { rows } = await db.query<{ org_id: string }>(`select org_id::text as org_id from ${schema}.items`)
            return rows.length === 30 && rows.every((r) => r.org_id === tenant)
          })
        }),
      )
      expect(results.every(Boolean)).toBe(true)
    })

    it('refuses, with 42501, a write for another tenant (WITH CHECK)', async () => {
      const db = createTenantPool(appPool(1))
      await expect(
        db.withTenant(a, () => db.query(`insert into ${schema}.items (org_id, body) values ($1, 'x')`, [b])),
      ).rejects.toMatchObject({ code: '42501' })
      await expect(
        db.withTenant(a, () => db.query(`update ${schema}.items set org_id = $1`, [b])),
      ).rejects.toMatchObject({ code: '42501' })
      // Another tenant's rows cannot even be targeted: they are not visible.
      const { rowCount } = await db.withTenant(a, () =>
        db.query(`delete from ${schema}.items where org_id::text = $1`, [b]),
      )
      expect(rowCount).toBe(0)
    })

    it('shows nothing when no tenant is set, or after the setting was used and reads empty', async () => {
      const db = createTenantPool(appPool(1))
      expect((await db.withoutTenant(() => db.query(`select * from ${schema}.items`))).rows).toEqual([])
      const client = new pg.Client({ connectionString: t.appUrl })
      await client.connect()
      try {
        await client.query(`select set_config('app.tenant_id', $1, false)`, [a])
        await client.query(`reset app.tenant_id`) // now reads '' rather than NULL
        const { rows } = await client.query(
          `select current_setting('app.tenant_id', true) as v, (select count(*) from ${schema}.items)::int as n`,
        )
        expect(rows[0]).toEqual({ v: '', n: 0 })
      } finally {
        await client.end()
      }
    })

    it('binds the table owner too (FORCE ROW LEVEL SECURITY)', async () => {
      const admin = new pg.Client({ connectionString: t.adminUrl })
      await admin.connect()
      try {
        await admin.query('begin')
        await admin.query(`set local role ${t.ownerRole}`)
        const count = `select count(*)::int as n, count(*) filter (where org_id::text <> $1)::int as foreign
                         from ${schema}.items`
        expect((await admin.query(count, [a])).rows[0]).toEqual({ n: 0, foreign: 0 })
        await admin.query(`select set_config('app.tenant_id', $1, true)`, [a])
        expect((await admin.query(count, [a])).rows[0]).toEqual({ n: 30, foreign: 0 })
      } finally {
        await admin.query('rollback')
        await admin.end()
      }
    })

    it('reads the setting once per statement (InitPlan)', async () => {
      const db = createTenantPool(appPool(1))
      const { rows } = await db.withTenant(a, () =>
        db.query<{ 'QUERY PLAN': string }>(`explain (costs off) select * from ${schema}.items`),
      )
      expect(rows.map((r) => r['QUERY PLAN']).join('\n')).toMatch(/InitPlan/)
    })

    it('passes the doctor as the login role', async () => {
      expect(await checkRls(appPool(1), { tenantColumn: 'org_id', schemas: [schema] })).toEqual([])
    })

    it('is removed by the undo SQL', async () => {
      await asOwner(dropTenantPolicySql(options))
      expect(await rlsState(schema, 'items')).toEqual({ rls: false, force: false, policies: 0 })
      const findings = await checkRls(appPool(1), { tenantColumn: 'org_id', schemas: [schema] })
      expect(findings.map((f) => [f.code, f.object])).toEqual([['RLS_DISABLED', `table ${schema}.items`]])
      // keepRls: only the policy goes; the table denies everything instead.
      await asOwner(tenantPolicySql(options))
      await asOwner(dropTenantPolicySql({ ...options, keepRls: true }))
      expect(await rlsState(schema, 'items')).toEqual({ rls: true, force: true, policies: 0 })
    })
  },
)

describe('rolePolicySql and createTenantRoleSql (a role per user)', () => {
  const schema = 'policy_role'
  let group: string
  let reps: string[]

  beforeAll(async () => {
    group = `${t.database}_crm`
    reps = [1, 2, 3].map((n) => `${t.database}_rep_${n}`)
    await t.admin(`create role ${group} nologin`)
    for (const rep of reps) {
      await t.admin(createTenantRoleSql(rep, { memberOf: group, grantTo: t.appRole }))
    }
    await t.admin(`create schema ${schema} authorization ${t.ownerRole};
      grant usage on schema ${schema} to ${group}`)
    await asOwner(`
      create table ${schema}.clients (id serial primary key, name text not null,
                                      rep text not null default current_user);
      grant select, insert, update, delete on ${schema}.clients to ${group};
      grant usage on sequence ${schema}.clients_id_seq to ${group};
      ${rolePolicySql({ schema, table: 'clients', column: 'rep' })}`)
  })

  afterAll(async () => {
    await t.admin(`drop schema if exists ${schema} cascade`)
    for (const rep of reps) await t.admin(dropTenantRoleSql(rep))
    await t.admin(`drop owned by ${group}; drop role if exists ${group}`)
  })

  it('keeps 90 concurrent role scopes apart, with zero foreign rows', async () => {
    const db = createTenantPool(appPool(3), { roles: reps })
    let foreign = 0
    let seen = 0
    await Promise.all(
      Array.from({ length: 90 }, (_, i) => {
        const role = reps[i % reps.length]!
        return db.withTenant({ role }, async () => {
          await db.query(`insert into ${schema}.clients (name) values ($1)`, [`client of ${role}`])
          await sleep(Math.random() * 3)
          const { rows } = await db.query<{ rep: string; name: string }>(`select rep, name from ${schema}.clients`)
          seen += rows.length
          foreign += rows.filter((r) => r.rep !== role || r.name !== `client of ${role}`).length
        })
      }),
    )
    expect(foreign).toBe(0)
    expect(seen).toBeGreaterThan(90)
  })

  it('refuses, with 42501, a row written for another role', async () => {
    const db = createTenantPool(appPool(1), { roles: reps })
    await expect(
      db.withTenant({ role: reps[0]! }, () =>
        db.query(`insert into ${schema}.clients (name, rep) values ('x', $1)`, [reps[1]]),
      ),
    ).rejects.toMatchObject({ code: '42501' })
  })

  it('passes the doctor with the allow-list, the login role holding no tenant privileges', async () => {
    const db = createTenantPool(appPool(1), { roles: reps })
    expect(await db.doctor({ tenantColumn: 'rep', schemas: [schema] })).toEqual([])
    // The login role alone (NOINHERIT) sees nothing: it has no privilege on the table.
    await expect(
      db.withoutTenant(() => db.query(`select * from ${schema}.clients`)),
    ).rejects.toMatchObject({ code: '42501' })
  })

  it('is removed by the undo SQL', async () => {
    await asOwner(dropRolePolicySql({ schema, table: 'clients' }))
    expect(await rlsState(schema, 'clients')).toEqual({ rls: false, force: false, policies: 0 })
    const db = createTenantPool(appPool(1), { roles: reps })
    const findings = await db.doctor({ tenantColumn: 'rep', schemas: [schema] })
    expect(findings.map((f) => f.code)).toEqual(['RLS_DISABLED'])
    await t.admin(dropTenantRoleSql(reps[2]!))
    const { rows } = await t.admin(`select 1 from pg_roles where rolname = $1`, [reps[2]])
    expect(rows).toEqual([])
    reps = reps.slice(0, 2)
  })
})
