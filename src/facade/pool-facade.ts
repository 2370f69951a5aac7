/**
 * `db.pool`: a pg.Pool look-alike, so that ORMs and query builders that take a pg Pool (Kysely,
 * Drizzle, Prisma's pg adapter, Knex) run tenant-scoped without ORM-specific code.
 *
 * It inherits from the wrapped pool's prototype, so `db.pool instanceof pg.Pool` holds for the `pg`
 * the application installed: Drizzle runs a transaction on one client only for a real Pool, and
 * would otherwise send BEGIN, the statements and COMMIT as separate pool queries, not atomic.
 */
import { EventEmitter } from 'node:events'
import type { PgPoolLike, QueryConfigLike, QueryResultLike } from '../driver/index.js'
import { InvalidQueryError, ScopeClosedError } from '../errors.js'
import { FORWARDED_EVENTS, type Scope, type Submittable } from '../scope/scope.js'
import { analyzeSql } from '../scope/sql-shape.js'

type Callback<T> = (err: Error | undefined, result?: T) => void

/** What the facade needs from its TenantPool, read once per call, at call time. */
export interface PoolFacadeBackend {
  query(textOrConfig: unknown, values?: readonly unknown[]): Promise<unknown>
  /** A client for the tenant bound here (see {@link ScopeClient} and {@link PoolClient}). */
  connect(): Promise<TenantClient>
}

/**
 * A client as `db.pool.connect()` hands it out: `query` in promise and callback forms, and
 * `release`. It never exposes the pooled pg client itself.
 */
export interface TenantClient {
  query(textOrConfig: unknown, values?: unknown, callback?: unknown): Promise<unknown> | undefined
  release(err?: Error | boolean): void
  on(event: string, listener: (...args: any[]) => void): TenantClient
  off(event: string, listener: (...args: any[]) => void): TenantClient
  removeListener(event: string, listener: (...args: any[]) => void): TenantClient
}

const FORWARDED = new Set<string | symbol>(FORWARDED_EVENTS)

// A BEGIN without transaction modes, in any case and spacing, with an optional semicolon.
const BEGIN = /^\s*(?:begin|start\s+transaction)(?:\s+(?:work|transaction))?\s*;?\s*$/i

/** Splits pg's `query(text, values?, callback?)` arguments. */
function splitArgs(values: unknown, callback: unknown): [readonly unknown[] | undefined, Callback<unknown> | undefined] {
  if (typeof values === 'function') return [undefined, values as Callback<unknown>]
  return [values as readonly unknown[] | undefined, callback as Callback<unknown> | undefined]
}

/** Runs a promise-returning call in pg's promise or callback style. */
function settle(promise: Promise<unknown>, callback: Callback<unknown> | undefined): Promise<unknown> | undefined {
  if (!callback) return promise
  promise.then(
    (result) => callback(undefined, result),
    (err: Error) => callback(err),
  )
  return undefined
}

function textOf(textOrConfig: unknown): string | undefined {
  if (typeof textOrConfig === 'string') return textOrConfig
  const text = (textOrConfig as { text?: unknown } | null)?.text
  return typeof text === 'string' ? text : undefined
}

/**
 * What both clients share: pg's `query(text | config | submittable, values?, callback?)` forms,
 * refusal after `release()`, and the pg client's `notice`, `notification`, `error` and `end`
 * events, passed on to listeners attached here while the client is held.
 */
abstract class ClientBase extends EventEmitter implements TenantClient {
  protected readonly scope: Scope
  protected released = false
  #stopForwarding: (() => void) | undefined

  constructor(scope: Scope) {
    super()
    this.scope = scope
    // The pg client's events are passed on from the first listener attached here: most ORMs attach
    // none, and then nothing is added to the pg client's listeners at all.
    const forward = (event: string | symbol) => {
      if (this.#stopForwarding !== undefined || this.released || !FORWARDED.has(event)) return
      this.#stopForwarding = scope.forwardEvents((name, ...args) => {
        // An 'error' nobody listens for here is not thrown: pg-tenant sees it, and so do the pg
        // client's own listeners (the pool's).
        if (name === 'error' && this.listenerCount('error') === 0) return
        this.emit(name, ...args)
      })
      this.removeListener('newListener', forward)
    }
    this.on('newListener', forward)
  }

  query(textOrConfig: unknown, values?: unknown, callback?: unknown): Promise<unknown> | undefined {
    if (typeof (textOrConfig as Submittable | null)?.submit === 'function') {
      return this.#submit(textOrConfig as Submittable) as never
    }
    const [vals, cb] = splitArgs(values, callback)
    return settle(this.#query(textOrConfig, vals), cb)
  }

  /**
   * A submittable (pg-cursor, pg-query-stream) is returned at once, as pg's client returns it; a
   * refusal reaches it through its `handleError`, as pg reports a client that cannot query.
   */
  #submit<S extends Submittable>(submittable: S): S {
    const fail = (err: unknown) => {
      const handleError = (submittable as { handleError?: (err: unknown) => void }).handleError
      if (typeof handleError === 'function') handleError.call(submittable, err)
    }
    if (this.released) process.nextTick(fail, new ScopeClosedError('this client was released'))
    else this.scope.submit(submittable).catch(fail)
    return submittable
  }

  async #query(textOrConfig: unknown, values: readonly unknown[] | undefined): Promise<unknown> {
    if (this.released) throw new ScopeClosedError('this client was released')
    const text = textOf(textOrConfig)
    if (text === undefined) throw new InvalidQueryError('query needs SQL text or a { text } config object')
    return this.statement(text, configOf(textOrConfig, text, values))
  }

  /** Sends one statement of the caller's; `text` is its SQL, for transaction control. */
  protected statement(_text: string, config: QueryConfigLike): Promise<unknown> {
    return this.scope.query(config)
  }

  /** Marks the client released: no more queries, no more events. */
  protected markReleased(): void {
    if (this.released) throw new Error('Release called on client which has already been released to the pool.')
    this.released = true
    this.#stopForwarding?.()
  }

  abstract release(err?: Error | boolean): void
}

/**
 * Inside `withTenant`: the scope's own client. `release()` does not return it to the pool (the
 * scope does, when it ends), and an ORM's BEGIN / COMMIT / ROLLBACK become SAVEPOINT / RELEASE
 * SAVEPOINT / ROLLBACK TO SAVEPOINT, so an ORM transaction nests inside the scope's transaction and
 * the scope keeps its tenant after it.
 */
export class ScopeClient extends ClientBase {
  readonly #savepoints: string[] = []

  protected override async statement(text: string, config: QueryConfigLike): Promise<unknown> {
    // A session scope's statements autocommit: an ORM's own transaction there is a real one.
    if (this.scope.kind !== 'transaction') return this.scope.query(config)
    const shape = analyzeSql(text)
    const control = shape.several ? undefined : shape.controls[0]
    if (control === 'begin') {
      if (!BEGIN.test(text)) {
        // An isolation level or access mode cannot be honoured inside the scope's transaction, and
        // silently dropping it would be worse than refusing.
        throw new InvalidQueryError(
          `inside withTenant an ORM transaction is a SAVEPOINT of the scope's transaction, which ` +
            `cannot take transaction modes (${text.trim()}); start it under runWithTenant instead`,
        )
      }
      this.#savepoints.push(await this.scope.savepoint())
      return emptyResult('BEGIN')
    }
    if (control === 'set-transaction' && this.#savepoints.length > 0) {
      throw new InvalidQueryError(
        `inside withTenant an ORM transaction is a SAVEPOINT of the scope's transaction, which ` +
          `cannot take transaction modes (${text.trim()}); start it under runWithTenant instead`,
      )
    }
    const savepoint = this.#savepoints.at(-1)
    if (savepoint !== undefined && control === 'commit') {
      await this.scope.releaseSavepoint(savepoint)
      this.#savepoints.pop()
      return emptyResult('COMMIT')
    }
    if (savepoint !== undefined && control === 'rollback') {
      await this.scope.rollbackToSavepoint(savepoint)
      this.#savepoints.pop()
      return emptyResult('ROLLBACK')
    }
    return this.scope.query(config, shape)
  }

  release(): void {
    this.markReleased()
  }
}

/**
 * Under `runWithTenant` (or `withoutTenant`): a client of its own, checked out for the caller
 * (kind `client` of {@link Scope}). It holds no tenant state at session level: each autocommit
 * statement runs as a single-trip scoped query, and the caller's own transactions get the tenant
 * applied transaction-locally with their first statement. `release(err)` with an error destroys
 * the connection, as pg does; a failure to confirm it clean is reported on the pool's 'error'.
 */
export class PoolClient extends ClientBase {
  readonly #report: (error: unknown) => void

  constructor(scope: Scope, report: (error: unknown) => void) {
    super(scope)
    this.#report = report
  }

  release(err?: Error | boolean): void {
    this.markReleased()
    const destroy = err !== undefined && err !== false && err !== null
    this.scope.close(destroy, err, destroy).catch(this.#report)
  }
}

function configOf(textOrConfig: unknown, text: string, values: readonly unknown[] | undefined): QueryConfigLike {
  if (typeof textOrConfig === 'string') return values === undefined ? { text } : { text, values }
  return values === undefined ? (textOrConfig as QueryConfigLike) : { ...(textOrConfig as QueryConfigLike), values }
}

function emptyResult(command: string): QueryResultLike {
  return { command, rowCount: null, rows: [], fields: [] }
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
