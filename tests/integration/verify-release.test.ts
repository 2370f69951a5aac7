/**
 * The reset and the release canary. Session-level state user SQL leaves behind (a set_config or SET
 * ROLE sent as a query) is cleared by the reset pg-tenant pipelines with every COMMIT and lone
 * query. The canary (`verifyRelease`) checks on the server, before a client judged clean goes back
 * to the pool, that it is: to give it real dirt, a wrapped client neuters the reset (fault
 * injection), and each case is first shown to leak without the canary, so the check can fail.
 *
 * This file makes dirt on purpose, so it uses src/index.ts, not tests/setup/pg-tenant.ts.
 */
import diagnostics from 'node:diagnostics_channel'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import {
  createTenantPool,
  diagnosticsChannels,
  InvalidOptionsError,
  type DestroyMessage,
  type PgClientLike,
  type PgPoolLike,
  type ReleaseMessage,
  type TenantPool,
  type TenantPoolOptions,
} from '../../src/index.js'
import { createTestDatabase, STATE_SQL, type TestDatabase } from '../setup/fixtures.js'

let t: TestDatabase
beforeAll(async () => {
  t = await createTestDatabase()
  await t.admin(`insert into events (org_id, kind) values ('org_secret', 'secret'), ('org_secret', 'secret')`)
})
afterAll(() => t.drop())

interface State {
  pid: number
  session_user: string
  current_user: string
  tenant: string
}
const idle = async (db: TenantPool) => (await db.withoutTenant(() => db.query<State>(STATE_SQL))).rows[0]!
const visibleUnscoped = async (db: TenantPool) =>
  Number((await db.withoutTenant(() => db.query<{ n: string }>('select count(*) as n from events'))).rows[0]!.n)

const destroyed: DestroyMessage[] = []
const released: ReleaseMessage[] = []
const onDestroy = (m: unknown) => destroyed.push(m as DestroyMessage)
const onRelease = (m: unknown) => released.push(m as ReleaseMessage)
beforeAll(() => {
  diagnostics.subscribe(diagnosticsChannels.destroy, onDestroy)
  diagnostics.subscribe(diagnosticsChannels.release, onRelease)
})
afterAll(() => {
  diagnostics.unsubscribe(diagnosticsChannels.destroy, onDestroy)
  diagnostics.unsubscribe(diagnosticsChannels.release, onRelease)
})
afterEach(() => {
  destroyed.length = 0
  released.length = 0
})

/** A pool of one, so that the next scope gets the same connection if it was released. */
const poolOfOne = (options: TenantPoolOptions) => createTenantPool(t.pool({ max: 1 }), options)
/** A pool of one whose clients never really run pg-tenant's reset (fault injection). */
const unresetPoolOfOne = (options: TenantPoolOptions) => createTenantPool(skipResets(t.pool({ max: 1 })), options)

// Dirt the scope cannot see: statements sent as queries that change session state.
const leaveSetting = (db: TenantPool) =>
  db.withTenant('org_secret', () => db.query(`select set_config('app.tenant_id', 'org_secret', false)`))
const leaveRole = (db: TenantPool) => db.withTenant('org_1', () => db.query(`set role ${t.roles.sales[0]}`))

describe('the reset clears what user SQL leaves at session level', () => {
  it('a session-level set_config inside a transaction scope does not outlive it', async () => {
    const db = poolOfOne({})
    const before = await idle(db)
    await leaveSetting(db)
    const after = await idle(db)
    expect(after.pid).toBe(before.pid) // released, and clean
    expect(after.tenant).toBe('')
    expect(await visibleUnscoped(db)).toBe(0)
  })

  it('a SET ROLE sent as a query inside a transaction scope does not outlive it', async () => {
    const db = poolOfOne({})
    const before = await idle(db)
    await leaveRole(db)
    const after = await idle(db)
    // The same backend: cleared by the reset, not clean because the client was replaced.
    expect(after.pid).toBe(before.pid)
    expect(after.current_user).toBe(after.session_user)
  })
})

describe('fault injection: with the reset skipped, the dirt is real', () => {
  it('a session-level set_config outlives its scope and leaks rows', async () => {
    const db = unresetPoolOfOne({})
    const before = await idle(db)
    expect(await visibleUnscoped(db)).toBe(0)
    await leaveSetting(db)
    const after = await idle(db)
    expect(after.pid).toBe(before.pid) // released: pg-tenant's own checks saw an idle client
    expect(after.tenant).toBe('org_secret')
    expect(await visibleUnscoped(db)).toBe(2) // another caller now reads org_secret's rows
    expect(db.stats()).toMatchObject({ verified: 0, dirty: 0 })
  })

  it('a SET ROLE outlives its scope', async () => {
    const db = unresetPoolOfOne({})
    await leaveRole(db)
    const after = await idle(db)
    expect(after.current_user).toBe(t.roles.sales[0])
    expect(after.session_user).toBe(t.appRole)
  })
})

describe('verifyRelease: true', () => {
  it('releases clean clients after checking them: the next scope gets the same backend', async () => {
    const db = poolOfOne({ verifyRelease: true, roles: t.roles.sales, scope: 'transaction' })
    const before = await idle(db)
    await db.withTenant('org_1', () => db.query('select 1'))
    await db.runWithTenant('org_2', () => db.query('select 1'))
    await db.withTenant({ id: 'org_3', role: t.roles.sales[1]!, settings: { 'app.user_id': 'u_1' } }, () =>
      db.query('select 1'),
    )
    await expect(db.withTenant('org_4', () => db.query('select 1/0'))).rejects.toMatchObject({ code: '22012' })
    const after = await idle(db)
    expect(after.pid).toBe(before.pid)
    // Six scopes took a client (the two idle() calls included); each was checked, none dirty.
    expect(db.stats()).toMatchObject({ released: 6, destroyed: 0, verified: 6, dirty: 0 })
    expect(released.filter((m) => m.verified)).toHaveLength(6)
    expect(released.map((m) => m.pid)).toEqual(Array(6).fill(before.pid))
  })

  it('checks session scopes after their reset', async () => {
    const db = poolOfOne({ verifyRelease: true, scope: 'session', roles: t.roles.sales })
    const before = await idle(db)
    await db.withTenant({ id: 'org_1', role: t.roles.sales[0]! }, () => db.query('select 1'))
    expect((await idle(db)).pid).toBe(before.pid)
    expect(db.stats()).toMatchObject({ released: 3, verified: 3, dirty: 0 })
  })

  it('catches a session-level set_config: destroys the client, reports it, counts it', async () => {
    const db = unresetPoolOfOne({ verifyRelease: true })
    const before = await idle(db)
    await leaveSetting(db)
    const after = await idle(db)
    expect(after.pid).not.toBe(before.pid)
    expect(after.tenant).toBe('')
    expect(await visibleUnscoped(db)).toBe(0)
    expect(db.stats()).toMatchObject({ dirty: 1, destroyed: 1, destroyedBy: { dirty: 1 } })
    expect(destroyed).toHaveLength(1)
    expect(destroyed[0]).toMatchObject({
      reason: 'dirty',
      tenant: 'org_secret',
      kind: 'transaction',
      pid: before.pid,
      dirty: {
        currentUser: t.appRole,
        sessionUser: t.appRole,
        transactionStatus: 'I',
        settings: { 'app.tenant_id': 'org_secret' },
      },
    })
    expect(destroyed[0]!.dirty!.problems).toEqual(['setting app.tenant_id is "org_secret"'])
  })

  it('catches a role left set', async () => {
    const db = unresetPoolOfOne({ verifyRelease: true })
    const before = await idle(db)
    await leaveRole(db)
    const after = await idle(db)
    expect(after.pid).not.toBe(before.pid)
    expect(after.current_user).toBe(after.session_user)
    expect(destroyed[0]).toMatchObject({
      reason: 'dirty',
      dirty: { currentUser: t.roles.sales[0], sessionUser: t.appRole },
    })
  })

  it('checks the pool setting even in a scope that wrote none (withoutTenant)', async () => {
    const db = unresetPoolOfOne({ verifyRelease: true })
    await db.withoutTenant(() => db.query(`select set_config('app.tenant_id', 'org_secret', false)`))
    expect(db.stats().dirty).toBe(1)
    expect(destroyed[0]).toMatchObject({ reason: 'dirty', tenant: undefined, kind: 'single' })
  })

  it('checks every setting the pool wrote, with a custom setting name', async () => {
    const db = unresetPoolOfOne({ verifyRelease: true, setting: 'app.org' })
    await db.withTenant({ id: 'o_1', settings: { 'app.user_id': 'u_1' } }, () => db.query('select 1'))
    // Another tenant, which writes no app.user_id, leaves it set: the canary still reads it.
    await db.withTenant('o_2', () => db.query(`select set_config('app.user_id', 'u_1', false)`))
    expect(destroyed[0]?.dirty?.settings).toEqual({ 'app.user_id': 'u_1' })
  })

  it('catches a session scope whose reset was swallowed by a wrapped client', async () => {
    const pool = t.pool({ max: 1 })
    const plain = createTenantPool(pool)
    const before = await idle(plain)
    // Without the canary the swallowed reset leaks: shown first, so the check below can fail.
    const unchecked = createTenantPool(skipResets(pool), { scope: 'session' })
    await unchecked.withTenant('org_secret', () => unchecked.query('select 1'))
    expect((await idle(plain)).tenant).toBe('org_secret')
    await plain.withoutTenant(() => plain.query('select 1')) // runs the (real) reset

    const checked = createTenantPool(skipResets(pool), { scope: 'session', verifyRelease: true })
    await checked.withTenant('org_secret', () => checked.query('select 1'))
    expect(checked.stats()).toMatchObject({ dirty: 1, destroyed: 1 })
    const after = await idle(plain)
    expect(after.pid).not.toBe(before.pid)
    expect(after.tenant).toBe('')
    expect(destroyed.at(-1)).toMatchObject({ reason: 'dirty', kind: 'session', tenant: 'org_secret' })
  })

  it('destroys the client when the check itself fails, without calling it dirty', async () => {
    const pool = t.pool({ max: 1 })
    const plain = createTenantPool(pool)
    const before = await idle(plain)
    const db = createTenantPool(failingCheck(pool), { verifyRelease: true })
    await db.withTenant('org_1', () => db.query('select 1'))
    expect(db.stats()).toMatchObject({ verified: 1, dirty: 0, destroyed: 1, destroyedBy: { 'check-failed': 1 } })
    expect(destroyed.at(-1)).toMatchObject({ reason: 'check-failed', error: expect.any(Error) })
    expect((await idle(plain)).pid).not.toBe(before.pid)
  })
})

describe('sample rate', () => {
  it('0 checks nothing, 0.5 checks some, 1 checks all', async () => {
    const run = async (verifyRelease: number) => {
      const db = createTenantPool(t.pool({ max: 2 }), { verifyRelease })
      for (let i = 0; i < 100; i++) await db.runWithTenant('org_1', () => db.query('select 1'))
      return db.stats()
    }
    expect((await run(0)).verified).toBe(0)
    const half = await run(0.5)
    expect(half.verified).toBeGreaterThan(0)
    expect(half.verified).toBeLessThan(100)
    expect(half.released).toBe(100)
    expect((await run(1)).verified).toBe(100)
  })

  it('refuses anything but a boolean or a number from 0 to 1', () => {
    for (const bad of [2, -0.1, Number.NaN, 'yes', null]) {
      expect(() => createTenantPool(t.pool(), { verifyRelease: bad as never })).toThrow(InvalidOptionsError)
    }
  })
})

/** A pool whose clients pass every statement through, after `rewrite` had its say on Parse. */
function rewritingPool(pool: PgPoolLike, rewrite: (text: string) => string | undefined): PgPoolLike {
  return {
    async connect() {
      const client = await pool.connect()
      return new Proxy(client, {
        get(target, prop, receiver) {
          if (prop === 'query') {
            return (query: any, values?: unknown[]) => {
              if (typeof query?.submit === 'function') {
                const submit = query.submit
                query.submit = (connection: any) =>
                  submit.call(
                    query,
                    new Proxy(connection, {
                      get(conn, key) {
                        if (key === 'parse') {
                          return (config: { text: string }) =>
                            conn.parse({ ...config, text: rewrite(config.text) ?? config.text })
                        }
                        const value = Reflect.get(conn, key, conn)
                        return typeof value === 'function' ? value.bind(conn) : value
                      },
                    }),
                  )
              }
              return target.query(query, values as never)
            }
          }
          const value = Reflect.get(target, prop, receiver)
          return typeof value === 'function' && prop !== 'constructor' ? value.bind(target) : value
        },
      }) as PgClientLike
    },
    end: () => pool.end(),
  }
}

/**
 * Fault injection: pg-tenant's reset (`select set_config('role', 'none', false), ...`) becomes a
 * statement that does nothing, with the same parameters.
 */
function skipResets(pool: PgPoolLike): PgPoolLike {
  return rewritingPool(pool, (text) => {
    if (!text.startsWith("select set_config('role', 'none', false)")) return undefined
    const params = text.match(/\$\d+/g) ?? []
    return `select ${['1', ...params.map((p) => `${p}::text`)].join(', ')} where false`
  })
}

/** Fault injection: the canary's statement fails on the server (it reads a missing relation). */
function failingCheck(pool: PgPoolLike): PgPoolLike {
  return rewritingPool(pool, (text) =>
    text.startsWith('select current_user::text, session_user::text') ? 'select * from no_such_table' : undefined,
  )
}
