/**
 * The single-trip pipeline's edge cases, against a real server: errors on either side of the
 * prefix, timeouts, a connection cut mid-pipeline, type parsing identical to pg's, statements that
 * cannot be pipelined, and pg submittables.
 */
import pg from 'pg'
import Cursor from 'pg-cursor'
import QueryStream from 'pg-query-stream'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createTenantPool, RoleSwitchError, type TenantPool } from '../setup/pg-tenant.js'
import { createTestDatabase, STATE_SQL, type State, type TestDatabase } from '../setup/fixtures.js'
import { startWireProxy } from '../setup/wire-proxy.js'

let t: TestDatabase
beforeAll(async () => {
  t = await createTestDatabase()
  await t.admin(`insert into events (org_id, kind, payload) select 'org_' || (i % 3), 'seed', i::text
                   from generate_series(1, 30) i`)
})
afterAll(() => t.drop())

const stateOf = async (db: TenantPool) => (await db.withoutTenant(() => db.query<State>(STATE_SQL))).rows[0]!
const scoped = <T>(db: TenantPool, fn: () => Promise<T>) => db.runWithTenant('org_1', fn)

describe('errors', () => {
  it('an error in the statement reaches the caller unchanged and leaves the connection clean', async () => {
    const db = createTenantPool(t.pool({ max: 1 }))
    const before = await stateOf(db)
    // An error that names the tenant the statement ran as: applied, so "clean after" means something.
    const err = await scoped(db, () => db.query(`select current_setting('app.tenant_id')::int`)).catch((e: unknown) => e)
    expect(err).toMatchObject({ code: '22P02', message: 'invalid input syntax for type integer: "org_1"' })
    const after = await stateOf(db)
    expect(after.pid).toBe(before.pid)
    expect(after.tenant).toBe('')
  })

  it('an error in set_config gives a typed error and a clean connection; later scopes work', async () => {
    const db = createTenantPool(t.pool({ max: 1 }), { roles: [t.roles.notGranted, t.roles.sales[0]!] })
    const before = await stateOf(db)
    const err = await db
      .runWithTenant({ role: t.roles.notGranted }, () => db.query(`insert into clients (name) values ('x')`))
      .catch((e: unknown) => e)
    expect(err).toBeInstanceOf(RoleSwitchError)
    const after = await stateOf(db)
    expect(after).toEqual({ ...before, current_user: before.session_user })
    const { rows } = await db.runWithTenant({ role: t.roles.sales[0]! }, () => db.query<State>(STATE_SQL))
    expect(rows[0]!.current_user).toBe(t.roles.sales[0])
    expect((await t.admin(`select * from clients where name = 'x'`)).rows).toEqual([])
  })

  it('a statement queued behind a failed apply is refused, not run bare', async () => {
    const db = createTenantPool(t.pool({ max: 1 }), { roles: [t.roles.notGranted] })
    let settled: PromiseSettledResult<unknown>[] = []
    const outcome = await db
      .withTenant({ id: 'org_1', role: t.roles.notGranted }, async () => {
        settled = await Promise.allSettled([
          db.query('select 1'),
          db.query(`insert into events (org_id, kind) values ('org_1', 'queued-behind')`),
        ])
      })
      .catch((e: unknown) => e)
    expect(settled.map((r) => r.status)).toEqual(['rejected', 'rejected'])
    expect(settled.map((r) => (r as PromiseRejectedResult).reason)).toEqual([
      expect.any(RoleSwitchError),
      expect.any(RoleSwitchError),
    ])
    // The callback swallowed both errors, yet the scope still reports that no tenant was applied.
    expect(outcome).toBeInstanceOf(RoleSwitchError)
    expect((await t.admin(`select * from events where kind = 'queued-behind'`)).rows).toEqual([])
  })

  it('a bind value that throws is refused before anything is written', async () => {
    const db = createTenantPool(t.pool({ max: 1 }))
    const before = await stateOf(db)
    const bad = { toPostgres: () => { throw new Error('cannot serialise') } }
    const err = await scoped(db, () => db.query('select $1::text', [bad])).catch((e: unknown) => e)
    expect((err as Error).message).toBe('cannot serialise')
    expect((await stateOf(db)).pid).toBe(before.pid)
    expect((await scoped(db, () => db.query<{ n: number }>('select 1 as n'))).rows).toEqual([{ n: 1 }])
  })

  it('a named statement whose first run failed in the prefix is parsed again next time', async () => {
    const db = createTenantPool(t.pool({ max: 1 }), { roles: [t.roles.notGranted, t.roles.sales[0]!] })
    const named = { name: 'pgt_after_prefix_error', text: 'select $1::int as n', values: [1] }
    // The first run fails in the prefix (the role switch), before the named statement ran.
    await expect(db.runWithTenant({ role: t.roles.notGranted }, () => db.query(named))).rejects.toBeInstanceOf(
      RoleSwitchError,
    )
    const { rows } = await db.runWithTenant({ role: t.roles.sales[0]! }, () => db.query(named))
    expect(rows).toEqual([{ n: 1 }])
  })
})

describe('concurrency inside a scope', () => {
  it('queries started together in a fresh scope all run after the tenant, on one client', async () => {
    const db = createTenantPool(t.pool({ max: 1 }))
    const rows = await db.withTenant('org_2', () =>
      Promise.all(Array.from({ length: 6 }, () => db.query<State>(STATE_SQL))),
    )
    expect(new Set(rows.map((r) => r.rows[0]!.pid)).size).toBe(1)
    expect(rows.map((r) => r.rows[0]!.tenant)).toEqual(Array(6).fill('org_2'))
  })
})

describe('faults', () => {
  it('query_timeout rejects, and the client whose statement is still running is destroyed', async () => {
    const db = createTenantPool(t.pool({ max: 1 }))
    const before = await stateOf(db)
    const err = await scoped(db, () => db.query({ text: 'select pg_sleep(2)', query_timeout: 100 })).catch(
      (e: unknown) => e,
    )
    expect((err as Error).message).toMatch(/timeout/i)
    const after = await stateOf(db)
    expect(after.pid).not.toBe(before.pid)
    expect(after.tenant).toBe('')
  })

  it('a connection cut mid-pipeline rejects, and the pool recovers with a clean client', async () => {
    const url = new URL(t.appUrl)
    const proxy = await startWireProxy(url.hostname, Number(url.port))
    url.port = String(proxy.port)
    const db = createTenantPool(t.pool({ connectionString: url.toString(), max: 1 }))
    const before = await stateOf(db)
    const pending = scoped(db, () => db.query('select pg_sleep(1)')).catch((e: unknown) => e)
    await new Promise((r) => setTimeout(r, 100))
    proxy.cutAll()
    expect(await pending).toBeInstanceOf(Error)
    const after = await stateOf(db)
    expect(after.pid).not.toBe(before.pid)
    expect(after.tenant).toBe('')
    await proxy.close()
  })

  it('statement_timeout inside withTenant: typed pg error, transaction rolled back, client reused', async () => {
    const db = createTenantPool(t.pool({ max: 1 }))
    const before = await stateOf(db)
    const err = await db
      .withTenant('org_1', async () => {
        await db.query(`insert into events (kind) values ('timed-out')`)
        await db.query(`set local statement_timeout = 50`)
        await db.query('select pg_sleep(1)')
      })
      .catch((e: unknown) => e)
    expect(err).toMatchObject({ code: '57014' })
    expect((await stateOf(db)).pid).toBe(before.pid)
    expect((await t.admin(`select * from events where kind = 'timed-out'`)).rows).toEqual([])
  })
})

describe('results', () => {
  const TYPES_SQL = `select 1::int2 a, 2::int4 b, 3::int8 c, 1.5::numeric d, 2.5::float8 e, true f,
    'x'::text g, now() h, '2024-01-02'::date i, '{"k":[1]}'::json j, '{"k":2}'::jsonb k,
    array[1,2]::int[] l, '\\xdead'::bytea m, null::text n, interval '1 day' o, 'ab'::bpchar p`

  it('parses rows exactly as pg does for the same statement', async () => {
    const pool = t.pool({ max: 1 })
    const db = createTenantPool(pool)
    const raw = await pool.query(TYPES_SQL)
    const mine = await scoped(db, () => db.query(TYPES_SQL))
    expect({ ...mine.rows[0], h: null }).toEqual({ ...raw.rows[0], h: null })
    expect(mine.rows[0]!.h).toBeInstanceOf(Date)
    expect(mine.fields.map((f) => [f.name, f.dataTypeID])).toEqual(raw.fields.map((f) => [f.name, f.dataTypeID]))
    expect(mine.command).toBe('SELECT')
    expect(mine.rowCount).toBe(1)
  })

  it('uses the pool-level custom type parsers', async () => {
    const types = { getTypeParser: (oid: number) => (oid === 20 ? (v: string) => BigInt(v) : (v: string) => v) }
    const db = createTenantPool(t.pool({ max: 1, types: types as never }))
    const { rows } = await scoped(db, () => db.query<{ c: bigint }>('select 3::int8 c'))
    expect(rows[0]!.c).toBe(3n)
  })

  it('returns empty results, empty queries and command results', async () => {
    const db = createTenantPool(t.pool({ max: 1 }))
    const empty = await scoped(db, () => db.query(`select * from events where kind = 'none'`))
    expect(empty.rows).toEqual([])
    expect(empty.rowCount).toBe(0)
    const blank = await scoped(db, () => db.query(''))
    expect(blank.rows).toEqual([])
    const update = await scoped(db, () => db.query(`update events set payload = payload where kind = 'seed'`))
    expect(update.command).toBe('UPDATE')
    expect(update.rowCount).toBe(10) // org_1's seed rows only: RLS applied
  })

  it('runs several statements in one text, scoped', async () => {
    const db = createTenantPool(t.pool({ max: 1 }))
    const results = (await scoped(db, () =>
      db.query(`select count(*)::int n from events where kind = 'seed'; select current_setting('app.tenant_id') t`),
    )) as unknown as Array<{ rows: unknown[] }>
    expect(results.map((r) => r.rows)).toEqual([[{ n: 10 }], [{ t: 'org_1' }]])
  })

  it('several statements whose COMMIT fails on a deferred constraint reject, and keep nothing', async () => {
    const db = createTenantPool(t.pool({ max: 1 }))
    const err = await db
      .runWithTenant('org_1', () =>
        db.query(`insert into events (kind) values ('several-fk'); insert into children (parent_id) values (999)`),
      )
      .catch((e: unknown) => e)
    expect(err).toMatchObject({ code: '23503' })
    expect((await t.admin(`select * from events where kind = 'several-fk'`)).rows).toEqual([])
  })
})

describe('pg submittables', () => {
  it('runs pg-cursor inside withTenant, scoped', async () => {
    const db = createTenantPool(t.pool({ max: 1 }))
    const rows = await db.withTenant('org_2', async () => {
      const cursor = await db.query(new Cursor(`select org_id from events where kind = 'seed'`))
      const first = await cursor.read(4)
      const rest = await cursor.read(100)
      await cursor.close()
      return [...first, ...rest]
    })
    expect(rows).toHaveLength(10)
    expect(rows.every((r: { org_id: string }) => r.org_id === 'org_2')).toBe(true)
  })

  it('runs pg-query-stream under runWithTenant and gives the client back when it ends', async () => {
    const pool = t.pool({ max: 1 })
    const db = createTenantPool(pool)
    const rows = await db.runWithTenant('org_0', async () => {
      const stream = await db.query(new QueryStream(`select org_id from events where kind = 'seed'`))
      const out: Array<{ org_id: string }> = []
      for await (const row of stream) out.push(row as { org_id: string })
      return out
    })
    expect(rows).toHaveLength(10)
    expect(rows.every((r) => r.org_id === 'org_0')).toBe(true)
    await new Promise((r) => setTimeout(r, 20))
    expect(pool.idleCount).toBe(1)
    const after = await stateOf(db)
    expect(after.tenant).toBe('')
  })
})

describe('deferred constraint triggers', () => {
  it('fire while the tenant still applies, in a lone query as in a scope', async () => {
    // A deferred constraint trigger records the tenant and role it runs as.
    await t.admin(`create table trigger_log (tenant text, role text)`)
    await t.admin(`grant insert on trigger_log to ${t.appRole}`)
    await t.admin(`create function log_tenant() returns trigger language plpgsql security definer as $$
      begin insert into trigger_log values (current_setting('app.tenant_id', true), current_user); return null; end $$`)
    await t.admin(`create constraint trigger log_tenant after insert on events deferrable initially deferred
      for each row when (new.kind = 'deferred') execute function log_tenant()`)
    const db = createTenantPool(t.pool({ max: 1 }))
    await db.runWithTenant('org_lone', () => db.query(`insert into events (kind) values ('deferred')`))
    await db.withTenant('org_scope', () => db.query(`insert into events (kind) values ('deferred')`))
    await db.runWithTenant('org_client', async () => {
      const client = await db.pool.connect()
      await client.query(`insert into events (kind) values ('deferred')`)
      client.release()
    })
    const { rows } = await t.admin<{ tenant: string }>('select tenant from trigger_log')
    expect(rows.map((r) => r.tenant).sort()).toEqual(['org_client', 'org_lone', 'org_scope'])
  })
})
