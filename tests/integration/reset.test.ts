/**
 * Guarantee 2: no tenant state outlives its scope. With a pool of one, the next scope gets the same
 * physical connection (same backend pid) after every kind of scope end, and that connection shows
 * `current_user = session_user` and an empty setting. A client whose state cannot be confirmed is
 * destroyed: the next scope gets a new backend.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  createTenantPool,
  InvalidQueryError,
  ScopeClosedError,
  TransactionAbortedError,
  type PgClientLike,
  type PgPoolLike,
  type ScopeMode,
  type Tenant,
} from '../setup/pg-tenant.js'
import { createTestDatabase, STATE_SQL, type State, type TestDatabase } from '../setup/fixtures.js'

let t: TestDatabase
beforeAll(async () => {
  t = await createTestDatabase()
  // The salespeople may write children too, so that a role tenant's deferred-constraint COMMIT
  // really fails on the constraint (without it, their insert failed first, with 42501).
  await t.admin(`grant select, insert on children to ${t.roles.group}; grant usage on sequence children_id_seq to ${t.roles.group}`)
})
afterAll(() => t.drop())


/** The state of the pool's one connection, seen outside any tenant. */
async function idleState(db: ReturnType<typeof createTenantPool>): Promise<State> {
  return (await db.withoutTenant(() => db.query<State>(STATE_SQL))).rows[0]!
}

function expectClean(state: State) {
  expect(state.current_user).toBe(state.session_user)
  expect(state.tenant).toBe('')
}

describe.each<ScopeMode>(['transaction', 'session'])('scope %s, pool of 1', (scope) => {
  const tenants = (): Array<[string, Tenant]> => [
    ['an id', 'org_reset'],
    ['a role with an id', { id: 'org_reset', role: t.roles.sales[0]! }],
  ]

  // Each ending, and how the scope settles with it: checking the outcome shows the ending really
  // happened, e.g. that the COMMIT did fail.
  type Outcome = { status: 'fulfilled' } | { status: 'rejected'; reason: object }
  const endings: Array<[string, (db: ReturnType<typeof createTenantPool>) => Promise<unknown>, Outcome]> = [
    ['returns', (db) => db.query('select 1'), { status: 'fulfilled' }],
    [
      'throws',
      async (db) => {
        await db.query('select 1')
        throw new Error('boom')
      },
      { status: 'rejected', reason: { message: 'boom' } },
    ],
    ['has a SQL error', (db) => db.query('select 1/0'), { status: 'rejected', reason: { code: '22012' } }],
    [
      'catches a SQL error and returns',
      async (db) => {
        await db.query('select 1/0').catch(() => undefined)
      },
      // In a transaction the swallowed error aborted it: the scope says so. In session scope each
      // statement stands alone: the scope returns.
      scope === 'transaction'
        ? { status: 'rejected', reason: expect.any(TransactionAbortedError) }
        : { status: 'fulfilled' },
    ],
    [
      'fails its COMMIT on a deferred constraint',
      (db) => db.transaction(() => db.query('insert into children (parent_id) values (999)')),
      { status: 'rejected', reason: { code: '23503' } },
    ],
  ]

  for (const [tenantName] of [['an id'], ['a role with an id']] as const) {
    for (const [ending, body, expected] of endings) {
      it(`leaves the same connection clean when a scope for ${tenantName} ${ending}`, async () => {
        const tenant = tenants().find(([n]) => n === tenantName)![1]
        const db = createTenantPool(t.pool({ max: 1 }), { scope, roles: t.roles.sales })
        const before = await idleState(db)
        let inside: State | undefined
        const [outcome] = await Promise.allSettled([
          db.withTenant(tenant, async () => {
            inside = (await db.query<State>(STATE_SQL)).rows[0]
            return body(db)
          }),
        ])
        expect(outcome).toMatchObject(expected)
        // The tenant really was applied inside, so "clean after" is not vacuous.
        expect(inside?.tenant).toBe('org_reset')
        if (typeof tenant === 'object') expect(inside?.current_user).toBe(t.roles.sales[0])
        const after = await idleState(db)
        expect(after.pid).toBe(before.pid)
        expectClean(after)
      })
    }
  }

  it('rejects a scope whose callback swallowed an aborted transaction', async () => {
    const db = createTenantPool(t.pool({ max: 1 }), { scope })
    const run = db.withTenant('org_abort', () =>
      db.transaction(async () => {
        await db.query(`insert into events (kind) values ('lost')`)
        await db.query('select 1/0').catch(() => undefined)
        return 'looks fine'
      }),
    )
    await expect(run).rejects.toBeInstanceOf(TransactionAbortedError)
    const { rows } = await t.admin(`select * from events where kind = 'lost'`)
    expect(rows).toEqual([])
    expectClean(await idleState(db))
  })

  it('passes the deferred-constraint COMMIT error through unchanged', async () => {
    const db = createTenantPool(t.pool({ max: 1 }), { scope })
    const err = await db
      .withTenant('org_fk', () =>
        db.transaction(() => db.query('insert into children (parent_id) values (999)')),
      )
      .catch((e: unknown) => e)
    expect((err as { code?: string }).code).toBe('23503')
    const { rows } = await t.admin(`select * from children where parent_id = 999`)
    expect(rows).toEqual([])
  })

  it('destroys the client when the backend is terminated mid-scope', async () => {
    const db = createTenantPool(t.pool({ max: 1 }), { scope })
    const before = await idleState(db)
    const failure = await db
      .withTenant('org_kill', async () => {
        const { rows } = await db.query<{ pid: number }>('select pg_backend_pid() as pid')
        await t.admin('select pg_terminate_backend($1)', [rows[0]!.pid])
        await new Promise((r) => setTimeout(r, 50))
        await db.query('select 1')
      })
      .catch((e: unknown) => e)
    expect(failure).toBeInstanceOf(Error)
    const after = await idleState(db)
    expect(after.pid).not.toBe(before.pid)
    expectClean(after)
  })
})

describe('clients whose state cannot be confirmed are destroyed', () => {
  it('session scope: a transaction left open destroys the client and discards its work', async () => {
    const db = createTenantPool(t.pool({ max: 1 }), { scope: 'session' })
    const before = await idleState(db)
    const run = db.withTenant('org_open', async () => {
      await db.query('begin')
      await db.query(`insert into events (kind) values ('left-open')`)
    })
    await expect(run).rejects.toBeInstanceOf(TransactionAbortedError)
    const after = await idleState(db)
    expect(after.pid).not.toBe(before.pid)
    expectClean(after)
    expect((await t.admin(`select * from events where kind = 'left-open'`)).rows).toEqual([])
  })

  it('transaction scope: a COMMIT sent as a query is refused; the scope keeps its tenant and commits at the end', async () => {
    const db = createTenantPool(t.pool({ max: 1 }), { roles: t.roles.sales })
    const before = await idleState(db)
    let refused: unknown
    let later: unknown
    await db.withTenant({ id: 'org_c', role: t.roles.sales[0]! }, async () => {
      await db.query(`insert into events (kind) values ('committed-at-end')`)
      refused = await db.query('commit').catch((e: unknown) => e)
      later = (await db.query<State>(STATE_SQL)).rows[0]
    })
    expect(refused).toBeInstanceOf(InvalidQueryError)
    expect(later).toMatchObject({ tenant: 'org_c', current_user: t.roles.sales[0] })
    expect((await t.admin(`select org_id from events where kind = 'committed-at-end'`)).rows).toEqual([{ org_id: 'org_c' }])
    const after = await idleState(db)
    expect(after.pid).toBe(before.pid)
    expectClean(after)
  })

  it('session scope: a failing RESET destroys the client', async () => {
    const pool = t.pool({ max: 1 })
    // Fault injection on the driver side: the real client, but RESET statements fail once.
    let released: unknown[] = []
    const faulty: PgPoolLike = {
      async connect() {
        const client = (await pool.connect()) as unknown as PgClientLike
        return new Proxy(client, {
          get(target, prop, receiver) {
            if (prop === 'query') {
              return (query: { text?: string; handleError?: (e: Error) => void }, values?: unknown[]) => {
                // The session scope's RESETs travel as the prefix of this statement.
                const reset = query?.text === 'select pg_backend_pid()::text as pid'
                if (reset && typeof query.handleError === 'function') {
                  // Fails the RESET as pg fails a query it cannot send: nothing is written.
                  process.nextTick(() => query.handleError!(new Error('injected RESET failure')))
                  return query
                }
                return target.query(query as never, values)
              }
            }
            if (prop === 'release') {
              return (destroy?: boolean | Error) => {
                released.push(destroy)
                target.release(destroy)
              }
            }
            const value = Reflect.get(target, prop, receiver)
            return typeof value === 'function' && prop !== 'constructor' ? value.bind(target) : value
          },
        })
      },
      end: () => pool.end(),
    }
    const db = createTenantPool(faulty, { scope: 'session' })
    const plain = createTenantPool(pool)
    const before = await idleState(plain)
    await db.withTenant('org_reset_fails', () => db.query('select 1'))
    expect(released).toEqual([true])
    const after = await idleState(plain)
    expect(after.pid).not.toBe(before.pid)
    expectClean(after)
    released = []
  })
})
