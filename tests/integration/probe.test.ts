/**
 * `pg-tenant probe` and `probeIsolation` (pg-tenant/testing) against real PostgreSQL, connected as
 * the NON-owner login role of the test setup: sound tables pass, a policy that ORs in shared rows
 * and a table the login role owns without FORCE leak (and only they), a DELETE policy wider than
 * the SELECT policy is found, role mode (SET ROLE per tenant) works, and no row of any table is
 * changed by the probe. The CLI and the package are tested as built (dist/).
 */
import { execFile } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { promisify } from 'node:util'
import pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { probeIsolation, type ProbeEntry } from '../../src/testing/index.js'
import { freePort } from '../setup/embedded.js'
import { ensureBuilt, root } from '../setup/built.js'
import { createTestDatabase, type TestDatabase } from '../setup/fixtures.js'

const cli = path.join(root, 'dist/cli.js')
const A = '11111111-1111-4111-8111-111111111111'
const B = '22222222-2222-4222-8222-222222222222'
const SCHEMAS = ['probe_sound', 'probe_leaky', 'probe_blind', 'probe_roles', 'probe_views']
const TENANT = `(select nullif(current_setting('app.tenant_id', true), ''))`

interface Run {
  code: number | null
  stdout: string
  stderr: string
}

function run(args: readonly string[], env: Record<string, string> = {}): Promise<Run> {
  const childEnv: NodeJS.ProcessEnv = { ...process.env, ...env }
  if (env.DATABASE_URL === undefined) delete childEnv.DATABASE_URL // never the runner's superuser
  return new Promise((resolve) => {
    execFile(process.execPath, [cli, 'probe', ...args], { env: childEnv, timeout: 60_000 }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof err.code === 'number' ? err.code : null
      resolve({ code, stdout, stderr })
    })
  })
}

let t: TestDatabase

/** Every probed table's row count and content hash, read as superuser. */
async function checksums(): Promise<Record<string, string>> {
  const { rows } = await t.admin<{ name: string }>(
    `select format('%I.%I', n.nspname, c.relname) as name from pg_class c join pg_namespace n on n.oid = c.relnamespace
      where c.relkind = 'r' and n.nspname = any($1) order by 1`,
    [SCHEMAS],
  )
  const out: Record<string, string> = {}
  for (const { name } of rows) {
    const [row] = (await t.admin(`select count(*) as n, md5(coalesce(string_agg(x::text, '|' order by x::text), '')) as h from ${name} x`)).rows
    out[name] = `${row.n}:${row.h}`
  }
  return out
}

let before: Record<string, string>

beforeAll(async () => {
  ensureBuilt(['cli.js', 'testing.js', 'testing.cjs'])
  t = await createTestDatabase()
  const app = t.appRole
  const group = t.roles.group
  const [s1, s2] = t.roles.sales
  await t.admin(`create schema probe_none authorization ${t.ownerRole}; grant usage on schema probe_none to ${app};
    create table probe_none.private (id int primary key)`)
  for (const schema of SCHEMAS) {
    await t.admin(`create schema ${schema} authorization ${t.ownerRole}; grant usage on schema ${schema} to ${app}, ${group}`)
  }
  await t.admin(`set role ${t.ownerRole};
    create table probe_sound.items (id int primary key, org_id text not null, name text);
    alter table probe_sound.items enable row level security;
    alter table probe_sound.items force row level security;
    create policy p on probe_sound.items using (org_id = ${TENANT}) with check (org_id = ${TENANT});
    grant select, update, delete on probe_sound.items to ${app};
    create table probe_sound.notes (org_id text not null, body text);
    alter table probe_sound.notes enable row level security;
    alter table probe_sound.notes force row level security;
    create policy p on probe_sound.notes using (org_id = ${TENANT}) with check (org_id = ${TENANT});
    grant select, delete on probe_sound.notes to ${app};
    create table probe_sound.secret (id int primary key);

    create table probe_leaky.docs (id int primary key, org_id uuid, body text);
    alter table probe_leaky.docs enable row level security;
    alter table probe_leaky.docs force row level security;
    create policy shared_too on probe_leaky.docs
      using (org_id = (select nullif(current_setting('app.tenant_id', true), '')::uuid) or org_id is null);
    grant select, update, delete on probe_leaky.docs to ${app};
    create table probe_leaky.tidy (id int primary key, org_id text not null);
    alter table probe_leaky.tidy enable row level security;
    alter table probe_leaky.tidy force row level security;
    create policy p on probe_leaky.tidy using (org_id = ${TENANT});
    grant select on probe_leaky.tidy to ${app};
    create table probe_leaky.owned (id int primary key, org_id text not null);
    alter table probe_leaky.owned enable row level security;
    create policy p on probe_leaky.owned using (org_id = ${TENANT});

    create table probe_blind.files (id int primary key, org_id text not null);
    alter table probe_blind.files enable row level security;
    alter table probe_blind.files force row level security;
    create policy see on probe_blind.files for select using (org_id = ${TENANT});
    create policy remove on probe_blind.files for delete using (true);
    grant select, delete on probe_blind.files to ${app};
    -- "No tenant set: show everything", true only on a connection that never wrote the setting.
    create table probe_blind.unset_open (id int primary key, org_id text not null);
    alter table probe_blind.unset_open enable row level security;
    alter table probe_blind.unset_open force row level security;
    create policy p on probe_blind.unset_open
      using (current_setting('app.tenant_id', true) is null or org_id = ${TENANT});
    grant select on probe_blind.unset_open to ${app};

    create table probe_roles.accounts (id int primary key, salesperson text not null);
    alter table probe_roles.accounts enable row level security;
    alter table probe_roles.accounts force row level security;
    create policy p on probe_roles.accounts using (salesperson = current_user);
    grant select, update, delete on probe_roles.accounts to ${group};
    create table probe_roles.directory (id int primary key, name text);
    grant select on probe_roles.directory to ${group};

    -- RLS enabled, not forced: its owner (the owner of the views too) is not bound by the policy.
    create table probe_views.base (id int primary key, org_id text not null);
    alter table probe_views.base enable row level security;
    create policy p on probe_views.base using (org_id = ${TENANT});
    create view probe_views.v_base as select * from probe_views.base;
    create view probe_views.v_items as select * from probe_sound.items;
    grant select on probe_views.v_base, probe_views.v_items to ${app};
    reset role`)
  // The login role owns this one, with RLS enabled and not forced: it bypasses its own policy.
  await t.admin(`alter table probe_leaky.owned owner to ${app}`)
  await t.admin(`insert into probe_sound.items values (1, '${A}', 'a1'), (2, '${A}', 'a2'), (3, '${B}', 'b1');
    insert into probe_sound.notes values ('${A}', 'x'), ('${B}', 'y'), ('${B}', 'z');
    insert into probe_sound.secret values (1);
    insert into probe_leaky.docs values (1, '${A}', 'a'), (2, '${B}', 'b'), (3, null, 'for everyone');
    insert into probe_leaky.tidy values (1, '${A}'), (2, '${B}');
    insert into probe_leaky.owned values (1, '${A}'), (2, '${B}');
    insert into probe_blind.files values (1, '${A}'), (2, '${B}');
    insert into probe_blind.unset_open values (1, '${A}'), (2, '${B}');
    insert into probe_roles.accounts values (1, '${s1}'), (2, '${s2}'), (3, '${s2}');
    insert into probe_roles.directory values (1, 'one'), (2, 'two');
    insert into probe_views.base values (1, '${A}'), (2, '${B}')`)
  await t.admin(`set role ${t.ownerRole};
    create materialized view probe_views.m_base as select * from probe_views.base;
    grant select on probe_views.m_base to ${app};
    reset role`)
  before = await checksums()
}, 180_000) // a rebuild of dist/ (a bare `npx vitest run` after a source change) takes a while

afterAll(async () => {
  if (t === undefined) return
  // Whatever ran above, no row of any probed table changed.
  expect(await checksums()).toEqual(before)
  await t.drop()
})

const byTable = (entries: readonly ProbeEntry[]) => Object.fromEntries(entries.map((e) => [e.table, e]))

describe('probeIsolation', () => {
  it('passes sound tables, notes what it did not try, and skips a table no tenant can read', async () => {
    const entries = await probeIsolation({ connectionString: t.appUrl, tenants: [A, B], schemas: ['probe_sound'] })
    expect(entries.map((e) => [e.table, e.status, e.ok])).toEqual([
      ['probe_sound.items', 'pass', true],
      ['probe_sound.notes', 'pass', true],
      ['probe_sound.secret', 'skipped', false],
    ])
    const { 'probe_sound.items': items, 'probe_sound.notes': notes } = byTable(entries)
    expect(items!.noTenantRows).toBe(0)
    expect(items!.tenantRows).toEqual([{ tenant: A, rows: 2 }, { tenant: B, rows: 1 }])
    expect(items!.identity).toEqual({ kind: 'primary-key', columns: ['id'] })
    expect(notes!.identity).toEqual({ kind: 'ctid' })
    expect(notes!.tenantRows).toEqual([{ tenant: A, rows: 1 }, { tenant: B, rows: 2 }])
    expect(notes!.notes).toContain("UPDATE not tried: no UPDATE privilege")
    expect(await checksums()).toEqual(before)
  })

  it('finds the OR-shared-rows policy and the owner without FORCE, and nothing else', async () => {
    const entries = await probeIsolation({ connectionString: t.appUrl, tenants: [A, B], schemas: ['probe_leaky'] })
    expect(entries.map((e) => [e.table, e.status])).toEqual([
      ['probe_leaky.docs', 'leak'],
      ['probe_leaky.owned', 'leak'],
      ['probe_leaky.tidy', 'pass'],
    ])
    const { 'probe_leaky.docs': docs, 'probe_leaky.owned': owned } = byTable(entries)
    expect(docs!.noTenantRows).toBe(1)
    expect(docs!.tenantRows).toEqual([{ tenant: A, rows: 2 }, { tenant: B, rows: 2 }])
    expect(docs!.leaks.map((l) => [l.kind, l.rows, l.tenants])).toEqual([
      ['no-tenant', 1, []],
      ['shared-rows', 1, [A, B]],
      ['cross-tenant-update', 1, [B, A]],
      ['cross-tenant-delete', 1, [B, A]],
      ['cross-tenant-update', 1, [A, B]],
      ['cross-tenant-delete', 1, [A, B]],
    ])
    expect(docs!.leaks[0]!.message).toBe('1 row visible with no tenant bound (setting unset or empty, no role switched)')
    expect(docs!.reason).toMatch(/^a policy lets rows through when no tenant is bound; a policy lets two tenants see the same rows/)
    expect(docs!.fix).toContain(`current_setting('app.tenant_id', true)`)

    expect(owned!.noTenantRows).toBe(2)
    expect(owned!.leaks.find((l) => l.kind === 'shared-rows')?.rows).toBe(2)
    expect(owned!.reason).toBe(`the login role ${t.appRole} owns it and row-level security is not forced: owners bypass RLS`)
    expect(owned!.fix).toContain('ALTER TABLE "probe_leaky"."owned" FORCE ROW LEVEL SECURITY;')
    expect(await checksums()).toEqual(before)
  })

  it('finds rows a tenant can DELETE without seeing them (a DELETE policy wider than the SELECT policy)', async () => {
    const entries = byTable(await probeIsolation({ connectionString: t.appUrl, tenants: [A, B], schemas: ['probe_blind'] }))
    const files = entries['probe_blind.files']
    expect(files!.status).toBe('leak')
    expect(files!.noTenantRows).toBe(0)
    expect(files!.leaks.map((l) => [l.kind, l.rows, l.tenants])).toEqual([
      ['blind-delete', 1, [A]],
      ['blind-delete', 1, [B]],
    ])
    expect(files!.reason).toBe('a DELETE policy lets a tenant delete rows its SELECT policy hides')

    // Fail-open only where the setting was never written: the no-tenant read of a fresh session.
    const open = entries['probe_blind.unset_open']
    expect(open!.status).toBe('leak')
    expect(open!.tenantRows).toEqual([{ tenant: A, rows: 1 }, { tenant: B, rows: 1 }])
    expect(open!.leaks.map((l) => l.message)).toEqual(['2 rows visible with no tenant bound (setting unset, no role switched)'])
  })

  it('reads views and materialized views: a view with its owner rights leaks, one over a FORCEd table does not', async () => {
    const entries = await probeIsolation({ connectionString: t.appUrl, tenants: [A, B], schemas: ['probe_views'] })
    expect(entries.map((e) => [e.table, e.kind, e.status, e.noTenantRows, e.tenantRows.map((r) => r.rows)])).toEqual([
      ['probe_views.base', 'table', 'skipped', null, [null, null]],
      ['probe_views.m_base', 'materialized view', 'leak', 2, [2, 2]],
      ['probe_views.v_base', 'view', 'leak', 2, [2, 2]],
      ['probe_views.v_items', 'view', 'pass', 0, [2, 1]],
    ])
    const { 'probe_views.v_base': view, 'probe_views.m_base': matview } = byTable(entries)
    expect(view!.identity).toEqual({ kind: 'row-hash' })
    expect(view!.reason).toBe(`the view reads its tables with its owner's rights (${t.ownerRole}), not the caller's: the owner's RLS, or none, applies`)
    expect(view!.fix).toContain('ALTER VIEW "probe_views"."v_base" SET (security_invoker = true);')
    expect(matview!.reason).toMatch(/^a materialized view has no row-level security/)
  })

  it('switches role per tenant through the allow-list (role mode), and takes a declared shared table', async () => {
    const [s1, s2] = t.roles.sales as [string, string]
    const pool = t.pool({ max: 2 })
    const tenants = [{ role: s1 }, { role: s2 }]
    const entries = await probeIsolation({ pool, tenants, schemas: ['probe_roles'] })
    expect(entries.map((e) => [e.table, e.status, e.noTenantRows, e.tenantRows.map((r) => r.rows)])).toEqual([
      ['probe_roles.accounts', 'pass', null, [1, 2]],
      ['probe_roles.directory', 'leak', null, [2, 2]],
    ])
    expect(entries[1]!.reason).toMatch(/^row-level security is not enabled on it/)
    const shared = await probeIsolation({ pool, tenants, schemas: ['probe_roles'], shared: ['probe_roles.directory'] })
    expect(shared.map((e) => [e.table, e.status, e.shared])).toEqual([
      ['probe_roles.accounts', 'pass', false],
      ['probe_roles.directory', 'pass', true],
    ])
    // The pool given is not ended by the probe.
    expect((await pool.query('select 1 as one')).rows).toEqual([{ one: 1 }])
  })

  it('refuses bad options before connecting', async () => {
    await expect(probeIsolation({ connectionString: t.appUrl, tenants: [A] })).rejects.toMatchObject({ code: 'INVALID_OPTIONS' })
    await expect(probeIsolation({ connectionString: 'http://x/y', tenants: [A, B] })).rejects.toMatchObject({ code: 'INVALID_OPTIONS' })
    await expect(probeIsolation({ connectionString: t.appUrl, tenants: [A, B], bogus: 1 } as never)).rejects.toMatchObject({ code: 'INVALID_OPTIONS' })
  })
})

describe('pg-tenant probe (built CLI)', () => {
  it('exits 0 on sound tables, naming each table checked', async () => {
    const { code, stdout, stderr } = await run(['--url', t.appUrl, '--tenant', A, '--tenant', B, '--schema', 'probe_sound'])
    expect(stderr).toBe('')
    expect(stdout).toMatch(new RegExp(`^TABLE\\s+NO TENANT\\s+${A}\\s+${B}\\s+VERDICT$`, 'm'))
    expect(stdout).toMatch(/^probe_sound\.items\s+0\s+2\s+1\s+pass$/m)
    expect(stdout).toMatch(/^probe_sound\.notes\s+0\s+1\s+2\s+pass$/m)
    expect(stdout).toMatch(/^probe_sound\.secret\s+-\s+-\s+-\s+skipped$/m)
    expect(stdout).toMatch(/^2 passed, 0 leaking, 0 failed, 1 skipped/m)
    expect(code).toBe(0)
  })

  it('exits 1 on the leaky schema, with exactly the two leaking tables, their reason and fix', async () => {
    const { code, stdout } = await run(['--url', t.appUrl, '--tenant', A, '--tenant', B, '--schema', 'probe_leaky'])
    expect(code).toBe(1)
    expect(stdout.match(/^\S+\s.*\bLEAK$/gm)?.map((l) => l.split(/\s+/)[0])).toEqual(['probe_leaky.docs', 'probe_leaky.owned'])
    expect(stdout).toMatch(/^probe_leaky\.tidy\s+0\s+1\s+1\s+pass$/m)
    expect(stdout).toContain('    leak: 1 row seen by both')
    expect(stdout).toContain('      ALTER TABLE "probe_leaky"."owned" FORCE ROW LEVEL SECURITY;')
  })

  it('prints one JSON entry per table with --json, and reads DATABASE_URL', async () => {
    const { code, stdout } = await run(['--json', '--tenant', A, '--tenant', B, '--schema', 'probe_leaky', '--schema', 'probe_sound'], {
      DATABASE_URL: t.appUrl,
    })
    expect(code).toBe(1)
    const entries = JSON.parse(stdout) as ProbeEntry[]
    expect(entries.map((e) => [e.table, e.ok])).toEqual([
      ['probe_leaky.docs', false],
      ['probe_leaky.owned', false],
      ['probe_leaky.tidy', true],
      ['probe_sound.items', true],
      ['probe_sound.notes', true],
      ['probe_sound.secret', false],
    ])
    expect(Object.keys(entries[0]!).sort()).toEqual(
      ['fix', 'identity', 'kind', 'leaks', 'noTenantRows', 'notes', 'ok', 'reason', 'shared', 'status', 'table', 'tenantRows'],
    )
  })

  it('runs role mode with --role, and --shared', async () => {
    const [s1, s2] = t.roles.sales as [string, string]
    const roles = ['--url', t.appUrl, '--role', s1, '--role', s2, '--schema', 'probe_roles']
    expect((await run(roles)).code).toBe(1)
    const shared = await run([...roles, '--shared', 'probe_roles.directory'])
    expect(shared.stdout).toMatch(/^probe_roles\.directory\s+-\s+2\s+2\s+pass \(shared\)$/m)
    expect(shared.code).toBe(0)
    // A role the login role may not switch to: the probe cannot run.
    const refused = await run(['--url', t.appUrl, '--role', s1, '--role', t.roles.notGranted, '--schema', 'probe_roles'])
    expect(refused.code).toBe(2)
    expect(refused.stderr).toMatch(/^pg-tenant: /)
  })

  it('exits 2 on bad usage, a malformed URL, an unreachable database, or nothing checked', async () => {
    const cases: Array<[string[], RegExp]> = [
      [['--url', t.appUrl, '--tenant', A], /at least two tenants/],
      [['--url', t.appUrl, '--tenant', A, '--tenant', B, '--bogus'], /Unknown option '--bogus'/],
      [['--url', 'not a url', '--tenant', A, '--tenant', B], /--url is not a PostgreSQL connection URL: it does not start with postgres:\/\//],
      [['--url', 'http://localhost/x', '--tenant', A, '--tenant', B], /its scheme is "http:", not postgres:/],
      [['--tenant', A, '--tenant', B], /no database/],
      [['--url', t.appUrl, '--tenant', A, '--tenant', B, '--schema', 'no_such_schema'], /no table was checked/],
      [['--url', t.appUrl, '--tenant', A, '--tenant', B, '--schema', 'probe_none'], /no table was checked/],
      [['--url', t.appUrl, '--tenant', A, '--tenant', B, '--schema', 'probe_sound', '--shared', 'x.y'], /shared table "x.y"/],
    ]
    for (const [args, message] of cases) {
      const { code, stderr } = await run(args)
      expect(stderr, args.join(' ')).toMatch(message)
      expect(stderr).not.toMatch(/\n\s+at /) // no stack trace
      expect(code, args.join(' ')).toBe(2)
    }
    const closed = new URL(t.appUrl)
    closed.port = String(await freePort())
    const unreachable = await run(['--url', closed.toString(), '--tenant', A, '--tenant', B])
    expect(unreachable.stderr).toMatch(/^pg-tenant: the probe could not run on 127\.0\.0\.1:\d+\/\w+: .*ECONNREFUSED/)
    expect(unreachable.stderr).not.toContain(closed.password)
    expect(unreachable.code).toBe(2)
  })
})

it('runs from the built package: pg-tenant/testing by require and by import', async () => {
  const { stdout } = await promisify(execFile)(process.execPath, [path.join(root, 'tests/integration/programs/probe-load.cjs')], {
    cwd: root,
    env: { ...process.env, APP_URL: t.appUrl, PROBE_SCHEMA: 'probe_leaky', PROBE_TENANTS: `${A},${B}` },
  })
  expect(JSON.parse(stdout)).toEqual({
    cjsWithPool: 'probe_leaky.docs:leak,probe_leaky.owned:leak,probe_leaky.tidy:pass',
    poolStillUsable: true,
    esmWithUrl: 'probe_leaky.docs:leak,probe_leaky.owned:leak,probe_leaky.tidy:pass',
    exitCode: 1,
    text: `TABLE              NO TENANT  ${A}  ${B}  VERDICT`,
    oneTenant: 'InvalidOptionsError:INVALID_OPTIONS',
    sameExports: true,
  })
})

// pg-tenant/testing is an entry of its own: neither index.* nor a chunk they load holds the probe.
it('keeps the probe out of the core bundle', () => {
  const code = (file: string) => fs.readFileSync(path.join(root, 'dist', file), 'utf8')
  const core = (entry: string): string[] => {
    const seen = new Set<string>([entry])
    for (const file of seen) {
      for (const m of code(file).matchAll(/(?:from\s*|require\()["']\.\/([\w-]+\.c?js)["']/g)) seen.add(m[1]!)
    }
    return [...seen]
  }
  const files = [...core('index.js'), ...core('index.cjs')]
  expect(files.length).toBeGreaterThan(2) // the walk follows the chunks
  for (const file of files) {
    expect(code(file), file).not.toContain('pg_tenant_probe_')
    expect(file).not.toMatch(/^testing\./)
  }
  expect(core('testing.js').some((file) => code(file).includes('pg_tenant_probe_'))).toBe(true)
  expect(fs.readFileSync(path.join(root, 'src/index.ts'), 'utf8')).not.toMatch(/probe|testing/)
})
