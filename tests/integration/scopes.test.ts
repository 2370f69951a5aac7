/**
 * Guarantees 3 to 6: fail closed without a tenant, refuse queries from scopes that ended, defined
 * nesting, and AsyncLocalStorage read at call time (never in pool callbacks).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  createTenantPool,
  ScopeClosedError,
  TenantMismatchError,
  TenantRequiredError,
} from '../setup/pg-tenant.js'
import { createTestDatabase, STATE_SQL, type State, type TestDatabase } from '../setup/fixtures.js'

let t: TestDatabase
beforeAll(async () => {
  t = await createTestDatabase()
})
afterAll(() => t.drop())

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))


async function countKind(kind: string): Promise<number> {
  const { rows } = await t.admin<{ n: string }>('select count(*) n from events where kind = $1', [kind])
  return Number(rows[0]!.n)
}

describe('fail closed (guarantee 3)', () => {
  it('rejects db.query with no tenant bound and never touches the pool', async () => {
    const pool = t.countingPool(1)
    const db = createTenantPool(pool)
    await expect(db.query(`insert into events (kind) values ('unbound')`)).rejects.toBeInstanceOf(
      TenantRequiredError,
    )
    await expect(db.query({ text: 'select 1' })).rejects.toMatchObject({ code: 'TENANT_REQUIRED', status: 401 })
    await expect(db.transaction(() => 1)).rejects.toBeInstanceOf(TenantRequiredError)
    expect(pool.checkouts).toBe(0)
    expect(await countKind('unbound')).toBe(0)
  })

  it('takes no client for a withTenant that sends no query', async () => {
    const pool = t.countingPool(1)
    const db = createTenantPool(pool)
    expect(await db.withTenant('org_1', () => 42)).toBe(42)
    expect(pool.checkouts).toBe(0)
  })

  it('lets an explicit withoutTenant opt out, still under RLS as the login role', async () => {
    const db = createTenantPool(t.pool({ max: 1 }))
    const { rows } = await db.withoutTenant(() => db.query<{ current_user: string }>(STATE_SQL))
    expect(rows[0]!.current_user).toBe(t.appRole)
  })
})

describe('a scope that has ended cannot be used (guarantee 4)', () => {
  it('refuses a floating query issued after the scope settled; the write never happens', async () => {
    const db = createTenantPool(t.pool({ max: 1 }))
    let floating!: Promise<unknown>
    await db.withTenant('org_float', async () => {
      await db.query('select 1')
      floating = (async () => {
        await sleep(20)
        return db.query(`insert into events (kind) values ('floating')`)
      })()
    })
    await expect(floating).rejects.toBeInstanceOf(ScopeClosedError)
    expect(await countKind('floating')).toBe(0)
  })

  it('refuses a query from a timer, even when the client now serves another tenant', async () => {
    const db = createTenantPool(t.pool({ max: 1 }))
    const timerResult = new Promise<unknown>((resolve) => {
      void db.withTenant('org_timer_a', async () => {
        await db.query('select 1')
        setTimeout(() => {
          db.query(`insert into events (kind) values ('timer')`).then(resolve, resolve)
        }, 30)
      })
    })
    // Meanwhile another tenant holds the one physical connection.
    const other = db.withTenant('org_timer_b', async () => {
      await db.query('select 1')
      await sleep(60)
    })
    expect(await timerResult).toBeInstanceOf(ScopeClosedError)
    await other
    expect(await countKind('timer')).toBe(0)
  })

  it('refuses a query issued while the scope is closing, before COMMIT', async () => {
    const db = createTenantPool(t.pool({ max: 1 }))
    let late!: Promise<unknown>
    await db.withTenant('org_closing', async () => {
      await db.query('select 1')
      // Runs after the callback has resolved and close() has begun, before its COMMIT returns.
      setImmediate(() => {
        late = db.query(`insert into events (kind) values ('closing')`).catch((e: unknown) => e)
      })
    })
    expect(await late).toBeInstanceOf(ScopeClosedError)
    expect(await countKind('closing')).toBe(0)
  })

  it('refuses a raw COMMIT before it reaches the server; the deferred constraint fails the scope at its end', async () => {
    const db = createTenantPool(t.pool({ max: 1 }))
    let commit: unknown
    let afterCommit: unknown
    const outcome = await db
      .withTenant('org_raw_commit', async () => {
        await db.query('insert into children (parent_id) values (999)')
        commit = await db.query('commit').catch((e: unknown) => e)
        afterCommit = await db.query(`insert into events (kind) values ('after-raw-commit')`)
      })
      .catch((e: unknown) => e)
    expect(commit).toMatchObject({ code: 'INVALID_QUERY' })
    expect(afterCommit).toMatchObject({ command: 'INSERT' })
    // The scope's own COMMIT checks the deferred FK: nothing of the scope is kept.
    expect(outcome).toMatchObject({ code: '23503' })
    expect(await countKind('after-raw-commit')).toBe(0)
  })
})

describe('nesting (guarantee 5)', () => {
  it('joins a nested scope of the same tenant: same backend, same transaction', async () => {
    const db = createTenantPool(t.pool({ max: 1 }))
    const [outer, inner] = await db.withTenant('org_nest', async () => {
      const a = await db.query<{ pid: number; xid: string }>(
        'select pg_backend_pid() pid, txid_current()::text xid',
      )
      const b = await db.withTenant('org_nest', () =>
        db.query<{ pid: number; xid: string }>('select pg_backend_pid() pid, txid_current()::text xid'),
      )
      return [a.rows[0]!, b.rows[0]!]
    })
    expect(inner).toEqual(outer)
  })

  it('throws TenantMismatchError for another tenant without deadlocking a pool of 1', async () => {
    const db = createTenantPool(t.pool({ max: 1 }))
    const result = await db.withTenant('org_a', async () => {
      await db.query('select 1') // holds the only client
      return db.withTenant('org_b', () => db.query('select 1')).catch((e: unknown) => e)
    })
    expect(result).toBeInstanceOf(TenantMismatchError)
    expect(db.runWithTenant('org_b', () => 1)).toBe(1) // outside the scope: org_b is fine
    await db.runWithTenant('org_a', () =>
      expect(db.withTenant('org_b', () => 1)).rejects.toBeInstanceOf(TenantMismatchError),
    )
  })

  it('nests transactions as savepoints: an inner rollback keeps the outer work and tenant', async () => {
    const db = createTenantPool(t.pool({ max: 1 }))
    let innerSaw: unknown
    let innerErr: unknown
    const seen = await db.withTenant('org_sp', async () => {
      await db.query(`insert into events (kind) values ('sp-outer')`)
      innerErr = await db
        .transaction(async () => {
          await db.query(`insert into events (kind) values ('sp-inner')`)
          await db.transaction(() => db.query(`insert into events (kind) values ('sp-inner-inner')`))
          innerSaw = (await db.query<{ kind: string }>(`select kind from events where kind like 'sp-inner%' order by kind`)).rows
          throw new Error('undo the inner transaction')
        })
        .catch((e: unknown) => e)
      await db.transaction(() => db.query(`insert into events (kind) values ('sp-kept')`))
      return (await db.query<{ tenant: string }>(STATE_SQL)).rows[0]!.tenant
    })
    // The inner transactions ran (their rows were there) and the outer one failed with the
    // callback's own error: the zero counts below are a rollback, not inserts that never ran.
    expect(innerSaw).toEqual([{ kind: 'sp-inner' }, { kind: 'sp-inner-inner' }])
    expect((innerErr as Error).message).toBe('undo the inner transaction')
    expect(seen).toBe('org_sp')
    expect(await countKind('sp-outer')).toBe(1)
    expect(await countKind('sp-inner')).toBe(0)
    expect(await countKind('sp-inner-inner')).toBe(0)
    expect(await countKind('sp-kept')).toBe(1)
  })

  it('runs db.transaction under runWithTenant as its own atomic scope', async () => {
    const db = createTenantPool(t.pool({ max: 2 }))
    let inserted: unknown
    let failure: unknown
    await db.runWithTenant('org_rt', async () => {
      failure = await db
        .transaction(async () => {
          inserted = (await db.query(`insert into events (kind) values ('rt-rolled-back') returning org_id`)).rows
          throw new Error('no')
        })
        .catch((e: unknown) => e)
      await db.transaction(() => db.query(`insert into events (kind) values ('rt-committed')`))
    })
    // The insert ran, as the tenant, and the transaction failed with the callback's own error.
    expect(inserted).toEqual([{ org_id: 'org_rt' }])
    expect((failure as Error).message).toBe('no')
    expect(await countKind('rt-rolled-back')).toBe(0)
    expect(await countKind('rt-committed')).toBe(1)
  })
})

describe('lazy thenables returned from a scope (query builders)', () => {
  // Like a Drizzle query: nothing runs until someone calls then().
  const lazy = (db: ReturnType<typeof createTenantPool>): PromiseLike<string> => ({
    then(resolve, reject) {
      return db
        .query<{ t: string }>(`select current_setting('app.tenant_id') t`)
        .then((r) => r.rows[0]!.t)
        .then(resolve, reject)
    },
  })

  it('start inside the binding of withTenant, runWithTenant and transaction', async () => {
    const db = createTenantPool(t.pool({ max: 2 }))
    expect(await db.withTenant('org_lazy1', () => lazy(db))).toBe('org_lazy1')
    expect(await db.runWithTenant('org_lazy2', () => lazy(db))).toBe('org_lazy2')
    expect(await db.runWithTenant('org_lazy3', () => db.transaction(() => lazy(db)))).toBe('org_lazy3')
    expect(await db.withTenant('org_lazy4', () => db.transaction(() => lazy(db)))).toBe('org_lazy4')
  })
})

describe('AsyncLocalStorage is read at call time (guarantee 6)', () => {
  it('a tenant handed the client released by another tenant still runs as itself', async () => {
    const db = createTenantPool(t.pool({ max: 1 }))
    const order: string[] = []
    const a = db.withTenant('org_first', async () => {
      await db.query('select 1') // takes the only client
      order.push('a has client')
      await sleep(50)
      return (await db.query<{ tenant: string; pid: number }>(STATE_SQL)).rows[0]!
    })
    await sleep(10)
    // b's connect() waits; pg-pool resolves it from inside a's release.
    const b = db.withTenant('org_second', async () => {
      const { rows } = await db.query<{ tenant: string; pid: number }>(STATE_SQL)
      order.push('b has client')
      return rows[0]!
    })
    const c = db.runWithTenant('org_third', () =>
      db.query<{ tenant: string; pid: number }>(STATE_SQL),
    )
    const [ra, rb, rc] = await Promise.all([a, b, c])
    expect(order).toEqual(['a has client', 'b has client'])
    expect(ra.tenant).toBe('org_first')
    expect(rb.tenant).toBe('org_second')
    expect(rc.rows[0]!.tenant).toBe('org_third')
    expect(new Set([ra.pid, rb.pid, rc.rows[0]!.pid]).size).toBe(1) // one physical connection
  })

  it('currentTenant reflects the binding, and each pool sees only its own', async () => {
    const db = createTenantPool(t.pool({ max: 1 }))
    const other = createTenantPool(t.pool({ max: 1 }))
    expect(db.currentTenant()).toBeUndefined()
    await db.withTenant({ id: 'org_x' }, async () => {
      expect(db.currentTenant()).toEqual({ id: 'org_x' })
      expect(other.currentTenant()).toBeUndefined()
      await expect(other.query('select 1')).rejects.toBeInstanceOf(TenantRequiredError)
      await sleep(1)
      expect(db.currentTenant()).toEqual({ id: 'org_x' })
    })
    expect(db.runWithTenant('org_y', () => db.currentTenant())).toBe('org_y')
  })
})
