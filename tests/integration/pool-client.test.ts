/**
 * `db.pool.connect()` under `runWithTenant`: the client every ORM uses. It holds no tenant state at
 * session level, ever: each autocommit statement runs as a single-trip scoped query, the caller's
 * own BEGIN opens a transaction whose tenant rides with its first statement (after any SET
 * TRANSACTION), and COMMIT carries the reset. Directly and behind PgBouncer in transaction mode.
 */
import diagnostics from 'node:diagnostics_channel'
import pg from 'pg'
import Cursor from 'pg-cursor'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  createTenantPool,
  diagnosticsChannels,
  InvalidQueryError,
  ReleaseError,
  ScopeClosedError,
  TenantMismatchError,
  type DestroyMessage,
  type TenantPool,
} from '../setup/pg-tenant.js'
import {
  createTestDatabase,
  NEEDS_PGBOUNCER,
  pgBouncerAvailable,
  STATE_SQL,
  type State,
  type TestDatabase,
} from '../setup/fixtures.js'

let t: TestDatabase
beforeAll(async () => {
  t = await createTestDatabase()
  await t.admin(`insert into events (org_id, kind) values ('org_a', 'seed'), ('org_a', 'seed'), ('org_b', 'seed')`)
  // A function that writes a setting at session level, out of any lexer's sight.
  await t.admin(`create function leave_tenant(v text) returns text language sql as $$ select set_config('app.tenant_id', v, false) $$`)
  await t.admin(`grant execute on function leave_tenant(text) to ${t.appRole}`)
})
afterAll(() => t.drop())

type Client = pg.PoolClient
const state = async (client: Client) => (await client.query<State>(STATE_SQL)).rows[0]!
/** The state of the pool's one connection, seen outside any tenant, with the pg pool directly. */
const idle = async (pool: pg.Pool) => (await pool.query<State>(STATE_SQL)).rows[0]!
const count = async (kind: string) =>
  Number((await t.admin<{ n: string }>('select count(*) n from events where kind = $1', [kind])).rows[0]!.n)

/** Runs `fn` with a db.pool client for `tenant`, releasing it after. */
async function withClient<T>(db: TenantPool<pg.Pool>, tenant: string, fn: (client: Client) => Promise<T>): Promise<T> {
  return db.runWithTenant(tenant, async () => {
    const client = await db.pool.connect()
    try {
      return await fn(client)
    } finally {
      client.release()
    }
  })
}

describe.each([
  ['direct', () => t.appUrl, true],
  ['through PgBouncer (transaction pooling)', () => t.bouncerUrl, pgBouncerAvailable()],
] as const)('%s', (target, url, available) => {
  if (!available) return it.skip(NEEDS_PGBOUNCER)
  const direct = target === 'direct'
  // Rows of the two targets live in one database: each names its own kinds.
  const kind = (name: string) => `${name}-${direct ? 'direct' : 'bouncer'}`
  const poolOf = (max: number) => t.pool({ connectionString: url()!, max })

  it('runs autocommit statements as the tenant, and leaves the connection clean', async () => {
    const pool = poolOf(1)
    const db = createTenantPool(pool)
    const before = await idle(pool)
    const seen = await withClient(db, 'org_a', async (client) => {
      const first = await state(client)
      const rows = (await client.query<{ org_id: string }>('select org_id from events where kind = $1', ['seed'])).rows
      return { first, rows }
    })
    expect(seen.first.tenant).toBe('org_a')
    expect(seen.rows).toEqual([{ org_id: 'org_a' }, { org_id: 'org_a' }])
    const after = await idle(pool)
    if (direct) expect(after.pid).toBe(before.pid)
    expect(after.tenant).toBe('')
    expect(after.current_user).toBe(after.session_user)
  })

  it('applies the tenant inside the caller transaction after SET TRANSACTION, and commits', async () => {
    const db = createTenantPool(poolOf(2))
    const inside = await withClient(db, 'org_tx', async (client) => {
      await client.query('BEGIN')
      await client.query('SET TRANSACTION ISOLATION LEVEL SERIALIZABLE')
      const { rows } = await client.query<{ level: string; tenant: string }>(
        `select current_setting('transaction_isolation') as level, current_setting('app.tenant_id') as tenant`,
      )
      await client.query(`insert into events (kind) values ('${kind('client-tx')}')`)
      await client.query('COMMIT')
      return rows[0]
    })
    expect(inside).toEqual({ level: 'serializable', tenant: 'org_tx' })
    expect((await t.admin(`select org_id from events where kind = '${kind('client-tx')}'`)).rows).toEqual([{ org_id: 'org_tx' }])
  })

  it.each([
    'BEGIN ISOLATION LEVEL REPEATABLE READ',
    'START TRANSACTION ISOLATION LEVEL SERIALIZABLE, READ ONLY, DEFERRABLE',
    'begin transaction read write',
  ])('takes %s as it is', async (begin) => {
    const db = createTenantPool(poolOf(2))
    const level = await withClient(db, 'org_modes', async (client) => {
      await client.query(begin)
      const { rows } = await client.query<{ level: string; tenant: string }>(
        `select current_setting('transaction_isolation') as level, current_setting('app.tenant_id') as tenant`,
      )
      await client.query('COMMIT')
      return rows[0]
    })
    expect(level!.tenant).toBe('org_modes')
    expect(level!.level).toBe(/serializable/i.test(begin) ? 'serializable' : /repeatable/i.test(begin) ? 'repeatable read' : 'read committed')
  })

  it('ROLLBACK leaves no row; a SQL error inside the transaction is the caller to handle', async () => {
    const db = createTenantPool(poolOf(2))
    await withClient(db, 'org_rb', async (client) => {
      await client.query('BEGIN')
      await client.query(`insert into events (kind) values ('${kind('client-rollback')}')`)
      await expect(client.query('select 1/0')).rejects.toMatchObject({ code: '22012' })
      await expect(client.query('select 1')).rejects.toMatchObject({ code: '25P02' })
      await client.query('ROLLBACK')
      // The transaction is over: the next statement is a scoped autocommit statement again.
      expect((await state(client)).tenant).toBe('org_rb')
    })
    expect(await count(kind('client-rollback'))).toBe(0)
  })

  it('keeps no session state that user SQL wrote, in autocommit or in a transaction', async () => {
    const pool = poolOf(1)
    const db = createTenantPool(pool, { roles: t.roles.sales })
    const sales = t.roles.sales[0]!
    const before = await idle(pool)
    const { during, inTransaction } = await withClient(db, 'org_a', async (client) => {
      const seen: State[] = []
      await client.query(`set role ${sales}`)
      seen.push(await state(client))
      await client.query(`select set_config('app.tenant_id', 'org_evil', false)`)
      seen.push(await state(client))
      await client.query(`do $$ begin perform set_config('app.tenant_id', 'org_evil', false); end $$`)
      seen.push(await state(client))
      await client.query('BEGIN')
      await client.query(`set role ${sales}`)
      await client.query(`select leave_tenant('org_evil')`)
      const dirty = await state(client)
      await client.query('COMMIT')
      seen.push(await state(client))
      return { during: seen, inTransaction: dirty }
    })
    // The dirt is real: inside the caller's transaction it is there, until COMMIT.
    expect(inTransaction).toMatchObject({ tenant: 'org_evil', current_user: sales })
    // Each autocommit statement ran with the tenant and nothing else: what the one before left is gone.
    for (const s of during) expect(s).toMatchObject({ tenant: 'org_a', current_user: t.appRole })
    const after = await idle(pool)
    // Directly, the same backend: cleared, not replaced (behind PgBouncer any server connection).
    if (direct) expect(after.pid).toBe(before.pid)
    expect(after.tenant).toBe('')
    expect(after.current_user).toBe(t.appRole)
  })

  it('refuses COMMIT AND CHAIN, ROLLBACK AND CHAIN, PREPARE TRANSACTION and control inside several statements', async () => {
    const db = createTenantPool(poolOf(2))
    await withClient(db, 'org_chain', async (client) => {
      await client.query('BEGIN')
      await client.query(`insert into events (kind) values ('${kind('client-chain')}')`)
      for (const text of ['COMMIT AND CHAIN', 'rollback work and chain', "PREPARE TRANSACTION 'x'", 'commit; begin', 'select 1; rollback']) {
        await expect(client.query(text)).rejects.toBeInstanceOf(InvalidQueryError)
      }
      // Nothing reached the server: the transaction is intact, with its tenant.
      expect((await state(client)).tenant).toBe('org_chain')
      await client.query('COMMIT')
    })
    expect(await count(kind('client-chain'))).toBe(1)
  })

  it('runs several statements in one text as the tenant, in a transaction of their own', async () => {
    const db = createTenantPool(poolOf(2))
    const results = await withClient(db, 'org_several', async (client) => {
      const r = (await client.query(`insert into events (kind) values ('${kind('several')}'); select current_setting('app.tenant_id') as t`)) as unknown as pg.QueryResult[]
      return r.map((x) => x.rows)
    })
    expect(results).toEqual([[], [{ t: 'org_several' }]])
    expect((await t.admin(`select org_id from events where kind = '${kind('several')}'`)).rows).toEqual([{ org_id: 'org_several' }])
  })

  it('reads a cursor as the tenant, and commits the transaction opened for it', async () => {
    const pool = poolOf(1)
    const db = createTenantPool(pool)
    const rows = await withClient(db, 'org_a', async (client) => {
      const cursor = client.query(new Cursor('select org_id from events where kind = $1', ['seed']))
      const read = await cursor.read(10)
      await cursor.close()
      expect((await state(client)).tenant).toBe('org_a')
      return read
    })
    expect(rows).toEqual([{ org_id: 'org_a' }, { org_id: 'org_a' }])
    expect((await idle(pool)).tenant).toBe('')
  })

  it('keeps 20 tenants apart over 400 concurrent ORM-style operations', async () => {
    const db = createTenantPool(poolOf(4))
    const tenants = Array.from({ length: 20 }, (_, i) => `org_load_${i}`)
    let foreign = 0
    let seen = 0
    await Promise.all(
      Array.from({ length: 400 }, (_, i) => {
        const tenant = tenants[i % tenants.length]!
        return withClient(db, tenant, async (client) => {
          if (i % 3 === 0) {
            await client.query('BEGIN')
            await client.query(`insert into events (kind, payload) values ('${kind('client-load')}', $1)`, [tenant])
            await client.query('COMMIT')
          } else {
            await client.query(`insert into events (kind, payload) values ('${kind('client-load')}', $1)`, [tenant])
          }
          const { rows } = await client.query<{ org_id: string; payload: string }>(
            `select org_id, payload from events where kind = '${kind('client-load')}'`,
          )
          seen += rows.length
          foreign += rows.filter((r) => r.org_id !== tenant || r.payload !== tenant).length
        })
      }),
    )
    expect(seen).toBeGreaterThan(400)
    expect(foreign).toBe(0)
    const { rows } = await t.admin<{ n: string }>(`select count(*) n from events where kind = '${kind('client-load')}' and org_id <> payload`)
    expect(rows[0]!.n).toBe('0')
    expect(await count(kind('client-load'))).toBe(400)
  })
})

describe('the client', () => {
  it('passes on notice and notification events while it is held', async () => {
    const db = createTenantPool(t.pool({ max: 2 }))
    const got = await withClient(db, 'org_ev', async (client) => {
      const notices: string[] = []
      const notifications: string[] = []
      client.on('notice', (n: { message?: string }) => notices.push(String(n.message)))
      client.on('notification', (n: { channel: string; payload?: string }) => notifications.push(`${n.channel}:${n.payload}`))
      await client.query(`do $$ begin raise notice 'hello %', current_setting('app.tenant_id'); end $$`)
      await client.query('listen pg_tenant_events')
      await t.admin(`notify pg_tenant_events, 'ping'`)
      await new Promise((r) => setTimeout(r, 100))
      await client.query('unlisten pg_tenant_events')
      return { notices, notifications }
    })
    expect(got).toEqual({ notices: ['hello org_ev'], notifications: ['pg_tenant_events:ping'] })
  })

  it('refuses queries after release', async () => {
    const db = createTenantPool(t.pool({ max: 1 }))
    const client = await db.runWithTenant('org_a', () => db.pool.connect())
    client.release()
    await expect(client.query('select 1')).rejects.toBeInstanceOf(ScopeClosedError)
    expect(() => client.release()).toThrow(/already been released/)
  })

  it('release(err) destroys the connection, as pg does; release() mid-transaction rolls back and keeps it', async () => {
    const pool = t.pool({ max: 1 })
    const db = createTenantPool(pool)
    const first = await idle(pool)
    await db.runWithTenant('org_rel', async () => {
      const client = await db.pool.connect()
      await client.query('BEGIN')
      await client.query(`insert into events (kind) values ('released-open')`)
      client.release()
    })
    await new Promise((r) => setTimeout(r, 50))
    const second = await idle(pool)
    expect(second.pid).toBe(first.pid)
    expect(second.tenant).toBe('')
    expect(await count('released-open')).toBe(0)
    await db.runWithTenant('org_rel', async () => {
      const client = await db.pool.connect()
      await client.query('select 1')
      client.release(new Error('the caller does not trust this connection'))
    })
    await new Promise((r) => setTimeout(r, 50))
    expect((await idle(pool)).pid).not.toBe(first.pid)
    expect(db.stats().destroyedBy.requested).toBe(1)
  })

  it('reports a release it cannot confirm clean on the pool error event and the destroy channel', async () => {
    const pool = t.pool({ max: 1 })
    const db = createTenantPool(pool)
    const errors: unknown[] = []
    db.pool.on('error', (err: unknown) => errors.push(err))
    const destroyed: DestroyMessage[] = []
    const onDestroy = (m: unknown) => destroyed.push(m as DestroyMessage)
    diagnostics.subscribe(diagnosticsChannels.destroy, onDestroy)
    try {
      await db.runWithTenant('org_lost', async () => {
        const client = await db.pool.connect()
        // A statement left unanswered: the connection's state cannot be known.
        await expect(client.query({ text: 'select pg_sleep(1)', query_timeout: 50 } as never)).rejects.toThrow(/timeout/i)
        client.release()
      })
      await new Promise((r) => setTimeout(r, 100))
    } finally {
      diagnostics.unsubscribe(diagnosticsChannels.destroy, onDestroy)
    }
    expect(errors).toEqual([expect.any(ReleaseError)])
    expect(errors[0]).toMatchObject({ code: 'RELEASE_FAILED', reason: 'unanswered' })
    expect(destroyed).toEqual([expect.objectContaining({ kind: 'client', reason: 'unanswered', tenant: 'org_lost' })])
  })

  it('refuses a client inside a scope of another tenant, and fails closed with none bound', async () => {
    const pool = t.countingPool(1)
    const db = createTenantPool(pool)
    const inOther = await db
      .withTenant('org_a', () => db.runWithTenant('org_b', () => db.pool.connect()))
      .catch((e: unknown) => e)
    expect(inOther).toBeInstanceOf(TenantMismatchError)
    await expect(db.pool.connect()).rejects.toMatchObject({ code: 'TENANT_REQUIRED' })
    expect(pool.checkouts).toBe(0)
  })
})
