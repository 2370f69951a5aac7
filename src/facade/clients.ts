/**
 * The clients `db.pool.connect()` hands out. Neither ever exposes the pooled pg client itself.
 * - {@link ScopeClient}, inside `withTenant`: the scope's own client; an ORM's transaction there
 *   becomes a savepoint of the scope's.
 * - {@link PoolClient}, under `runWithTenant` or `withoutTenant`: one pg client checked out for
 *   the caller, holding no tenant state at session level (a Scope of kind `client`).
 */
import { EventEmitter } from 'node:events'
import type { QueryConfigLike, QueryResultLike } from '../driver/index.js'
import { InvalidQueryError, ScopeClosedError } from '../errors.js'
import { FORWARDED_EVENTS, type Scope, type Submittable } from '../scope/scope.js'
import { analyzeSql } from '../scope/sql-shape.js'
import { configOf, settle, splitArgs, textOf } from './pg-style.js'

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
    if (this.released) throw new ScopeClosedError('Release called on client which has already been released to the pool.')
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

function emptyResult(command: string): QueryResultLike {
  return { command, rowCount: null, rows: [], fields: [] }
}
