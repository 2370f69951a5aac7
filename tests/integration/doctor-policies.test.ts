/**
 * The doctor's reading of policy expressions, on real tables: the WITH CHECK it proposes for a
 * USING with an escape hatch really closes the hole, a setting-controlled bypass is reported and
 * its fix removes it, a cast tenant column is reported and its fix lets an index serve the policy,
 * and a selection that matches nothing is an error, not an empty (passing) result.
 *
 * Every write and read that decides whether a hole is open goes through PostgreSQL as the
 * unprivileged login role (t.appRole); fixes are applied as an administrator, as the doctor says.
 */
import { randomUUID } from 'node:crypto'
import pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createTenantPool, type Finding, type FindingCode } from '../setup/pg-tenant.js'
import { checkRls } from '../../src/doctor/index.js'
import { createTestDatabase, type TestDatabase } from '../setup/fixtures.js'

let t: TestDatabase
const A = randomUUID()
const B = randomUUID()
const GOOD_UUID = `(org_id = (select nullif(current_setting('app.tenant_id', true), '')::uuid))`
const GOOD_TEXT = `(org_id = (select nullif(current_setting('app.tenant_id', true), '')))`

const only = (findings: readonly Finding[], code: FindingCode) => findings.filter((f) => f.code === code)
const objects = (findings: readonly Finding[], code: FindingCode) => only(findings, code).map((f) => f.object).sort()

/** The findings on schema pol, as the login role. */
async function doctor(): Promise<Finding[]> {
  const pool = t.pool({ max: 1 })
  try {
    return await checkRls(pool, { tenantColumn: 'org_id', schemas: ['pol'] })
  } finally {
    await pool.end()
  }
}

/** Runs `fn` as the login role with tenant A bound, through pg-tenant. */
async function asTenantA<T>(fn: (db: ReturnType<typeof createTenantPool>) => Promise<T>): Promise<T> {
  const db = createTenantPool(t.pool({ max: 1 }))
  try {
    return await db.withTenant(A, () => fn(db))
  } finally {
    await db.end()
  }
}

beforeAll(async () => {
  t = await createTestDatabase()
  const app = t.appRole
  await t.admin(`create schema pol authorization ${t.ownerRole}; grant usage on schema pol to ${app}`)
  await t.admin(`set role ${t.ownerRole};
    -- USING ORs in an escape hatch, no WITH CHECK
    create table pol.escape (id int, org_id uuid not null, is_public boolean not null default false);
    alter table pol.escape enable row level security;
    alter table pol.escape force row level security;
    create policy p on pol.escape using (org_id = current_setting('app.tenant_id')::uuid or is_public);
    grant select, insert, update on pol.escape to ${app};
    -- a bypass any session can switch on
    create table pol.bypass (id int, org_id text not null);
    alter table pol.bypass enable row level security;
    alter table pol.bypass force row level security;
    create policy p on pol.bypass
      using (${GOOD_TEXT} or current_setting('app.bypass_rls', true) = 'on')
      with check ${GOOD_TEXT};
    grant select, insert on pol.bypass to ${app};
    -- an OR that is not a setting, and a second setting under AND: no bypass
    create table pol.public_rows (id int, org_id text, is_public boolean);
    alter table pol.public_rows enable row level security;
    alter table pol.public_rows force row level security;
    create policy p on pol.public_rows for select
      using (${GOOD_TEXT} or (is_public and current_setting('app.region', true) = 'eu'));
    grant select on pol.public_rows to ${app};
    -- a row rule on another setting, and a bypass written as a boolean cast: one bypass
    create table pol.owner_rows (id int, org_id text, owner_id text);
    alter table pol.owner_rows enable row level security;
    alter table pol.owner_rows force row level security;
    create policy mine on pol.owner_rows for select
      using (${GOOD_TEXT} or owner_id = (select nullif(current_setting('app.user_id', true), '')));
    create policy ops on pol.owner_rows for select
      using (${GOOD_TEXT} or coalesce(nullif(current_setting('app.ops', true), ''), 'off')::boolean);
    grant select on pol.owner_rows to ${app};
    -- the tenant column cast to text: no index can serve it
    create table pol.cast_bad (id int, org_id uuid not null);
    create index on pol.cast_bad (org_id);
    alter table pol.cast_bad enable row level security;
    alter table pol.cast_bad force row level security;
    create policy p on pol.cast_bad
      using (org_id::text = current_setting('app.tenant_id', true))
      with check ${GOOD_UUID};
    grant select on pol.cast_bad to ${app};
    -- the setting cast to the column's type: fine
    create table pol.cast_good (id int, org_id uuid not null);
    alter table pol.cast_good enable row level security;
    alter table pol.cast_good force row level security;
    create policy p on pol.cast_good using ${GOOD_UUID} with check ${GOOD_UUID};
    grant select on pol.cast_good to ${app};
    reset role;
    -- rows written as the administrator (a superuser: RLS does not apply to it)
    insert into pol.bypass values (1, '${A}'), (2, '${B}');
    insert into pol.cast_bad select g, case when g % 2 = 0 then '${A}'::uuid else gen_random_uuid() end
      from generate_series(1, 2000) g;
    analyze pol.cast_bad`)
})

afterAll(async () => {
  if (t === undefined) return
  await t.admin('drop schema if exists pol cascade')
  await t.drop()
})

describe('POLICY_NO_WITH_CHECK with an escape hatch in USING', () => {
  it('proposes the tenant predicate as WITH CHECK, not USING with its OR, and the fix closes the hole', async () => {
    const [finding] = only(await doctor(), 'POLICY_NO_WITH_CHECK')
    expect(finding?.object).toBe('policy p on pol.escape')
    expect(finding!.message).toContain('is_public')
    expect(finding!.fix).toBe(
      `ALTER POLICY "p" ON "pol"."escape" WITH CHECK ("org_id" = (SELECT nullif(current_setting('app.tenant_id', true), '')::uuid));`,
    )
    expect(finding!.fix).not.toContain('is_public')

    // The hole, today: tenant A writes a row of tenant B, marked public.
    const write = (id: number) =>
      asTenantA((db) => db.query('insert into pol.escape (id, org_id, is_public) values ($1, $2, true)', [id, B]))
    await expect(write(1)).resolves.toBeDefined()

    await t.admin(finding!.fix)
    await expect(write(2)).rejects.toMatchObject({ code: '42501' }) // new row violates row-level security
    // The tenant's own rows still go in, public or not.
    await asTenantA((db) => db.query('insert into pol.escape (id, org_id, is_public) values (3, $1, true)', [A]))
    const { rows } = await t.admin(`select id from pol.escape order by id`)
    expect(rows.map((r) => r.id)).toEqual([1, 3])
    expect(only(await doctor(), 'POLICY_NO_WITH_CHECK')).toEqual([])
  })
})

describe('POLICY_SETTING_BYPASS', () => {
  it('reports an OR on another setting, not an OR on a column or a setting under AND', async () => {
    const findings = await doctor()
    expect(objects(findings, 'POLICY_SETTING_BYPASS')).toEqual(['policy ops on pol.owner_rows', 'policy p on pol.bypass'])
    const finding = only(findings, 'POLICY_SETTING_BYPASS').find((f) => f.object === 'policy p on pol.bypass')
    expect(finding!.severity).toBe('warning')
    expect(finding!.message).toContain(`current_setting('app.bypass_rls')`)
    expect(finding!.message).toContain('BYPASSRLS')
  })

  it('proposes the policy without the bypass, which then no longer opens other tenants\' rows', async () => {
    const finding = only(await doctor(), 'POLICY_SETTING_BYPASS').find((f) => f.object === 'policy p on pol.bypass')
    expect(finding!.fix).toContain('ALTER POLICY "p" ON "pol"."bypass"\n  USING (org_id = ')
    expect(finding!.fix).not.toContain('bypass_rls')
    const visible = () =>
      asTenantA(async (db) => {
        await db.query(`select set_config('app.bypass_rls', 'on', true)`)
        return (await db.query('select id from pol.bypass order by id')).rows.map((r) => r.id)
      })
    expect(await visible()).toEqual([1, 2]) // the hole: tenant A switched isolation off
    await t.admin(finding!.fix)
    expect(await visible()).toEqual([1])
    expect(objects(await doctor(), 'POLICY_SETTING_BYPASS')).toEqual(['policy ops on pol.owner_rows'])
  })
})

describe('POLICY_CAST_PREVENTS_INDEX', () => {
  it('reports the cast tenant column, not the cast setting', async () => {
    const findings = await doctor()
    expect(objects(findings, 'POLICY_CAST_PREVENTS_INDEX')).toEqual(['policy p on pol.cast_bad'])
    const [finding] = only(findings, 'POLICY_CAST_PREVENTS_INDEX')
    expect(finding!.severity).toBe('warning')
    expect(finding!.message).toContain('org_id::text')
    expect(finding!.fix).toBe(
      `ALTER POLICY "p" ON "pol"."cast_bad"\n  USING ("org_id" = (SELECT nullif(current_setting('app.tenant_id', true), '')::uuid));`,
    )
  })

  it('proposes a policy PostgreSQL accepts, which an index on the column serves', async () => {
    const [finding] = only(await doctor(), 'POLICY_CAST_PREVENTS_INDEX')
    const admin = new pg.Client({ connectionString: t.adminUrl })
    await admin.connect()
    const plan = async () => {
      await admin.query(`set local role ${t.appRole}`)
      await admin.query(`select set_config('app.tenant_id', $1, true)`, [A])
      const { rows } = await admin.query(`explain select * from pol.cast_bad`)
      await admin.query('reset role')
      return rows.map((r) => r['QUERY PLAN']).join('\n')
    }
    try {
      await admin.query('begin')
      await admin.query('set local enable_seqscan = off') // the planner's cheapest path with an index, if any
      expect(await plan()).not.toContain('Index Cond') // the cast leaves the index unusable
      await admin.query(finding!.fix)
      expect(await plan()).toMatch(/Index Cond: \(org_id = \$?\w*/)
      const after = await checkRls(admin, { tenantColumn: 'org_id', schemas: ['pol'], loginRole: t.appRole })
      expect(only(after, 'POLICY_CAST_PREVENTS_INDEX')).toEqual([])
    } finally {
      await admin.query('rollback')
      await admin.end()
    }
  })
})

describe('NOTHING_CHECKED', () => {
  it('is an error when no table has the tenant column, naming the selection', async () => {
    const pool = t.pool({ max: 1 })
    try {
      const findings = await checkRls(pool, { tenantColumn: 'org_idd', schemas: ['pol'] })
      // Policies are still read (their setting checks apply to any table); no table was checked.
      expect(findings.filter((f) => f.severity === 'error').map((f) => [f.code, f.object])).toEqual([
        ['NOTHING_CHECKED', 'tenant tables'],
      ])
      expect(findings[0]!.message).toContain('no table in schema "pol" has a column named "org_idd"')
    } finally {
      await pool.end()
    }
  })

  it('is an error for a schema that does not exist, even when another schema was checked', async () => {
    const db = createTenantPool(t.pool({ max: 1 }))
    try {
      const findings = await db.doctor({ tenantColumn: 'org_id', schemas: ['pol', 'pool'] })
      expect(objects(findings, 'NOTHING_CHECKED')).toEqual(['schema pool'])
      expect(only(findings, 'NOTHING_CHECKED')[0]!.severity).toBe('error')
      expect(findings[0]!.code).toBe('NOTHING_CHECKED') // errors first
      // Every schema missing: the schema, and the empty selection.
      const none = await db.doctor({ tenantColumn: 'org_id', schemas: ['nope'] })
      expect(objects(none, 'NOTHING_CHECKED')).toEqual(['schema nope', 'tenant tables'])
    } finally {
      await db.end()
    }
  })
})
