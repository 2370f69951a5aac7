/**
 * `db.pool`: a pg.Pool look-alike, so that ORMs and query builders that take a pg Pool (Kysely,
 * Drizzle, Prisma's pg adapter, Knex) run tenant-scoped without ORM-specific code.
 *
 * It inherits from the wrapped pool's prototype, so `db.pool instanceof pg.Pool` holds for the `pg`
 * the application installed: Drizzle runs a transaction on one client only for a real Pool, and
 * would otherwise send BEGIN, the statements and COMMIT as separate pool queries, not atomic.
 */
import type { PgPoolLike } from '../driver/index.js'
import type { Submittable } from '../scope/scope.js'
import type { TenantClient } from './clients.js'
import { settle, splitArgs, type Callback } from './pg-style.js'

/** What the facade needs from its TenantPool, read once per call, at call time. */
export interface PoolFacadeBackend {
  query(textOrConfig: unknown, values?: readonly unknown[]): Promise<unknown>
  /** A client for the tenant bound here (a ScopeClient or a PoolClient, see clients.ts). */
  connect(): Promise<TenantClient>
}

const PASSED_THROUGH = ['totalCount', 'idleCount', 'waitingCount', 'expiredCount', 'ending', 'ended', 'options']

/**
 * Builds `db.pool`. Its prototype is the wrapped pool's, so `instanceof pg.Pool` holds; every
 * method that matters is an own property that goes through pg-tenant.
 */
export function createPoolFacade(pool: PgPoolLike, backend: PoolFacadeBackend): PgPoolLike {
  const target = pool as unknown as Record<string, unknown> & {
    on?: (event: string, listener: (...a: any[]) => void) => unknown
    off?: (event: string, listener: (...a: any[]) => void) => unknown
    once?: (event: string, listener: (...a: any[]) => void) => unknown
    removeListener?: (event: string, listener: (...a: any[]) => void) => unknown
  }
  const facade = Object.create(Object.getPrototypeOf(pool) ?? Object.prototype) as Record<string, unknown>
  const events = (method: 'on' | 'off' | 'once' | 'removeListener' | 'addListener') =>
    function (this: unknown, event: string, listener: (...a: any[]) => void) {
      const fn = (target[method] ?? target.on) as ((e: string, l: (...a: any[]) => void) => unknown) | undefined
      fn?.call(pool, event, listener)
      return facade
    }
  Object.defineProperties(facade, {
    query: {
      value(textOrConfig: unknown, values?: unknown, callback?: unknown) {
        const [vals, cb] = splitArgs(values, callback)
        const run = typeof (textOrConfig as Submittable | null)?.submit === 'function'
          ? backend.query(textOrConfig)
          : backend.query(textOrConfig, vals)
        return settle(run, cb)
      },
    },
    connect: {
      value(callback?: (err: Error | undefined, client?: TenantClient, done?: (err?: Error) => void) => void) {
        const connecting = backend.connect()
        if (!callback) return connecting
        connecting.then(
          (client) => callback(undefined, client, (err?: Error) => client.release(err)),
          (err: Error) => callback(err),
        )
        return undefined
      },
    },
    end: { value: (callback?: () => void) => settle(pool.end(), callback as Callback<unknown> | undefined) },
    on: { value: events('on') },
    addListener: { value: events('addListener') },
    once: { value: events('once') },
    off: { value: events('off') },
    removeListener: { value: events('removeListener') },
  })
  for (const name of PASSED_THROUGH) {
    Object.defineProperty(facade, name, { get: () => target[name], enumerable: true })
  }
  return facade as unknown as PgPoolLike
}
