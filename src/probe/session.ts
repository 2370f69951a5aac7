/**
 * The sessions the probe acts in, and the one rule they share: every transaction and savepoint the
 * probe opens ends in ROLLBACK, so nothing it does is ever kept. A tenant's session goes through
 * pg-tenant (`withTenant`, savepoints with `db.transaction`); the no-tenant session is a plain
 * client of the same pool, in a transaction with `SET LOCAL ROLE NONE`.
 */
import type { PgClientLike, PgPoolLike } from '../driver/index.js'
import type { TenantPool } from '../pool.js'
import type { Tenant } from '../tenant.js'
import type { Query } from './catalog.js'

/** One session as one role: its queries, and a savepoint that is always rolled back. */
export interface ProbeSession {
  readonly query: Query
  /** The row count of a statement (UPDATE, DELETE). */
  readonly count: (text: string, values?: readonly unknown[]) => Promise<number>
  /** Runs `fn` in a savepoint, rolls it back, and returns what `fn` returned. */
  readonly undone: <T>(fn: () => Promise<T>) => Promise<T>
}

/** Bounds each statement: a probe must not hang on a lock the application holds. */
const TIMEOUTS_SQL = `select set_config('statement_timeout', '60s', true), set_config('lock_timeout', '5s', true)`

/** Thrown to roll back what a callback did, carrying its result out. */
class Undo {
  constructor(readonly value: unknown) {}
}

async function rolledBack<T>(run: (fn: () => Promise<never>) => Promise<unknown>, fn: () => Promise<T>): Promise<T> {
  try {
    await run(async () => {
      throw new Undo(await fn())
    })
  } catch (err) {
    if (err instanceof Undo) return err.value as T
    throw err
  }
  throw new Undo(undefined) // run() returned without calling back: cannot happen with pg-tenant
}

/** Runs `fn` as `tenant`, through `db.withTenant`, in a transaction that is rolled back. */
export function asTenant<T>(db: TenantPool, tenant: Tenant, fn: (session: ProbeSession) => Promise<T>): Promise<T> {
  const session: ProbeSession = {
    query: async (text, values) => (await db.query(text, values ?? [])).rows as never[],
    count: async (text, values) => (await db.query(text, values ?? [])).rowCount ?? 0,
    undone: (inner) => rolledBack((f) => db.transaction(f), inner),
  }
  return rolledBack(
    (f) => db.withTenant(tenant, f),
    async () => {
      await db.query(TIMEOUTS_SQL)
      return fn(session)
    },
  )
}

/**
 * Runs `fn` on a plain client of `pool` with no tenant: no pg-tenant scope, `SET LOCAL ROLE NONE`
 * (the login role itself), in a transaction that is rolled back. The client is destroyed rather
 * than returned when anything failed.
 */
export async function asNoTenant<T>(pool: PgPoolLike, fn: (session: ProbeSession, client: PgClientLike) => Promise<T>): Promise<T> {
  const client = await pool.connect()
  let savepoints = 0
  const run = async (text: string, values?: readonly unknown[]) => client.query(text, values === undefined ? undefined : [...values])
  const session: ProbeSession = {
    query: async (text, values) => (await run(text, values ?? [])).rows as never[],
    count: async (text, values) => (await run(text, values ?? [])).rowCount ?? 0,
    async undone(inner) {
      const name = `pg_tenant_probe_${++savepoints}`
      await run(`savepoint ${name}`)
      try {
        return await inner()
      } finally {
        await run(`rollback to savepoint ${name}`)
      }
    },
  }
  try {
    await run('begin')
    await run('set local role none')
    await run(TIMEOUTS_SQL)
    const result = await fn(session, client)
    await run('rollback')
    client.release()
    return result
  } catch (err) {
    client.release(err instanceof Error ? err : true)
    throw err
  }
}
