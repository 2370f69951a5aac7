/**
 * Guarantee 7: no way out of a scope. Transaction control that would end a scope's transaction (or
 * start one pg-tenant has not applied the tenant to) is refused with InvalidQueryError before it
 * reaches the server; where it cannot be seen (a fault that turns a statement into COMMIT on the
 * wire), the scope notices that its transaction ended and refuses every later statement. A
 * statement never runs without its tenant.
 */
import pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  createTenantPool,
  InvalidQueryError,
  ScopeClosedError,
  type PgClientLike,
  type PgPoolLike,
} from '../setup/pg-tenant.js'
import { createTestDatabase, STATE_SQL, type State, type TestDatabase } from '../setup/fixtures.js'

let t: TestDatabase
beforeAll(async () => {
  t = await createTestDatabase()
})
afterAll(() => t.drop())

const count = async (kind: string) =>
  Number((await t.admin<{ n: string }>('select count(*) n from events where kind = $1', [kind])).rows[0]!.n)

// Every way to end (or end and restart) a transaction in one statement, as written by hand or by
// an ORM: each must be refused inside a transaction scope.
const ENDINGS = [
  'COMMIT',
  'commit work',
  'END',
  'end transaction',
  'ROLLBACK',
  'ABORT',
  'COMMIT AND CHAIN',
  'ROLLBACK AND CHAIN',
  'end and chain',
  'abort work and chain',
  '/* a comment */ commit',
  '-- a comment\ncommit',
  'BEGIN',
  'START TRANSACTION',
  "PREPARE TRANSACTION 'pg_tenant_t'",
  'commit; begin',
  'COMMIT;BEGIN;',
  "select 1; commit; select 'x'",
]

describe('withTenant, scope transaction', () => {
  it.each(ENDINGS)('refuses %j before it reaches the server; the scope keeps its tenant', async (text) => {
    const db = createTenantPool(t.pool({ max: 1 }))
    const kind = `ending-${ENDINGS.indexOf(text)}`
    const seen = await db.withTenant('org_in', async () => {
      await db.query('insert into events (kind) values ($1)', [kind])
      await expect(db.query(text)).rejects.toBeInstanceOf(InvalidQueryError)
      // Nothing ended: the insert is still uncommitted, and the tenant still applies.
      expect(await count(kind)).toBe(0)
      return (await db.query<State>(STATE_SQL)).rows[0]!.tenant
    })
    expect(seen).toBe('org_in')
    expect(await count(kind)).toBe(1)
  })

  it('lets savepoints through', async () => {
    const db = createTenantPool(t.pool({ max: 1 }))
    await db.withTenant('org_sp', async () => {
      await db.query('savepoint a')
      await db.query(`insert into events (kind) values ('sp-undone')`)
      await db.query('rollback to savepoint a')
      await db.query('release savepoint a')
      await db.query(`insert into events (kind) values ('sp-kept')`)
    })
    expect(await count('sp-undone')).toBe(0)
    expect(await count('sp-kept')).toBe(1)
  })

  it('takes SET TRANSACTION as the first statement: the tenant rides with the next one', async () => {
    const db = createTenantPool(t.pool({ max: 1 }))
    const seen = await db.withTenant('org_iso', async () => {
      await db.query('SET TRANSACTION ISOLATION LEVEL REPEATABLE READ')
      return (await db.query<{ level: string; tenant: string }>(
        `select current_setting('transaction_isolation') as level, current_setting('app.tenant_id') as tenant`,
      )).rows[0]
    })
    expect(seen).toEqual({ level: 'repeatable read', tenant: 'org_iso' })
  })

  it('notices a transaction ended where no lexer could see it, and refuses everything after', async () => {
    // Fault injection: the client turns one statement into COMMIT on the wire.
    const pool = t.pool({ max: 1 })
    const db = createTenantPool(rewriting(pool, (text) => (text === 'select 42' ? 'commit' : undefined)))
    let after: unknown
    const outcome = await db
      .withTenant('org_hidden', async () => {
        await db.query(`insert into events (kind) values ('hidden-commit')`)
        await db.query('select 42') // ends the transaction behind the scope's back
        after = await db.query(`insert into events (kind) values ('after-hidden-commit')`).catch((e: unknown) => e)
      })
      .catch((e: unknown) => e)
    expect(after).toBeInstanceOf(ScopeClosedError)
    expect(outcome).toBeUndefined() // what the hidden COMMIT committed is the caller's; nothing ran bare
    expect(await count('after-hidden-commit')).toBe(0)
    const state = (await pool.query<State>(STATE_SQL)).rows[0]!
    expect(state.tenant).toBe('')
  })
})

describe('withTenant, scope session', () => {
  it('refuses PREPARE TRANSACTION; its own transactions keep the session tenant, even chained', async () => {
    const db = createTenantPool(t.pool({ max: 1 }), { scope: 'session' })
    const seen = await db.withTenant('org_session', async () => {
      await expect(db.query("PREPARE TRANSACTION 'x'")).rejects.toBeInstanceOf(InvalidQueryError)
      await db.query('begin')
      await db.query('commit and chain')
      const tenant = (await db.query<State>(STATE_SQL)).rows[0]!.tenant
      await db.query('commit')
      return tenant
    })
    expect(seen).toBe('org_session')
  })
})

describe('db.pool.connect() inside withTenant', () => {
  it('turns an ORM transaction into a savepoint and refuses AND CHAIN', async () => {
    const db = createTenantPool(t.pool({ max: 1 }))
    await db.withTenant('org_orm', async () => {
      const client = await db.pool.connect()
      await client.query('BEGIN')
      await client.query(`insert into events (kind) values ('orm-inner')`)
      await expect(client.query('COMMIT AND CHAIN')).rejects.toBeInstanceOf(InvalidQueryError)
      await client.query('ROLLBACK')
      await expect(client.query('commit; begin')).rejects.toBeInstanceOf(InvalidQueryError)
      client.release()
      await db.query(`insert into events (kind) values ('orm-outer')`)
    })
    expect(await count('orm-inner')).toBe(0)
    expect(await count('orm-outer')).toBe(1)
  })
})

describe('a lone query under runWithTenant or withoutTenant', () => {
  it.each(['BEGIN', 'start transaction isolation level serializable', 'COMMIT', 'rollback', 'savepoint a', 'SET TRANSACTION READ ONLY', 'end'])(
    'refuses %j without taking a client',
    async (text) => {
      const pool = t.countingPool(1)
      const db = createTenantPool(pool)
      await expect(db.runWithTenant('org_1', () => db.query(text))).rejects.toBeInstanceOf(InvalidQueryError)
      await expect(db.withoutTenant(() => db.query(text))).rejects.toBeInstanceOf(InvalidQueryError)
      await expect(db.runWithTenant('org_1', () => (db.pool as unknown as pg.Pool).query(text))).rejects.toBeInstanceOf(InvalidQueryError)
      expect(pool.checkouts).toBe(0)
    },
  )

  it('refuses transaction control hidden among several statements', async () => {
    const pool = t.countingPool(1)
    const db = createTenantPool(pool)
    await expect(db.runWithTenant('org_1', () => db.query(`insert into events (kind) values ('x'); commit`))).rejects.toBeInstanceOf(
      InvalidQueryError,
    )
    expect(pool.checkouts).toBe(0)
  })

  it('does not mistake a SQL-standard function body for transaction control', async () => {
    const db = createTenantPool(t.pool({ max: 1 }))
    const fn = `create function pg_temp.two() returns int language sql begin atomic select 1; select 2; end`
    // Several statements (a function body and a call) in one text: the lexer must see one END inside.
    const result = (await db.withoutTenant(() => db.query(`${fn}; select pg_temp.two() as n`))) as unknown as pg.QueryResult[]
    expect(result.at(-1)!.rows).toEqual([{ n: 2 }])
  })
})

/** A pool whose clients rewrite the text of the statements pg-tenant sends (fault injection). */
function rewriting(pool: pg.Pool, rewrite: (text: string) => string | undefined): PgPoolLike {
  return {
    async connect() {
      const client = (await pool.connect()) as unknown as PgClientLike
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
                          return (config: { text: string }) => conn.parse({ ...config, text: rewrite(config.text) ?? config.text })
                        }
                        if (key === 'query') return (text: string) => conn.query(rewrite(text) ?? text)
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
      })
    },
    end: () => pool.end(),
  }
}
