/**
 * One tenant scope: at most one pooled client, taken lazily on the first query, and the security
 * code that decides whether that client may go back to the pool.
 *
 * Every statement a scope sends is a `TenantQuery` (pipeline.ts), so the scope always knows the
 * transaction status from the ReadyForQuery that answered it, and a guard checked when pg is about
 * to write a statement refuses it if the tenant could not be applied or the scope's transaction
 * has ended. A client is returned with `release()` only when its state is confirmed clean: the
 * last ReadyForQuery said idle, no socket error or unanswered statement was seen, and (scope
 * `session`) RESET ROLE plus a RESET of every setting written succeeded. Anything else destroys it
 * with `release(true)`.
 */
import { AsyncResource } from 'node:async_hooks'
import { releaseVerdict, type ReleaseVerdict } from './canary.js'
import { checkout, checkoutWith } from './checkout.js'
import { ScopeTrace, uncleanVerdict, type PoolMonitor } from './diagnostics.js'
import type { PgClientLike, PgPoolLike, QueryConfigLike, QueryResultLike } from './driver.js'
import {
  InvalidOptionsError,
  RoleSwitchError,
  ScopeClosedError,
  SessionPoolingError,
  TransactionAbortedError,
} from './errors.js'
import {
  queryClassOf,
  TenantQuery,
  preparedName,
  type PrefixStatement,
  type QueryClass,
  type TenantQueryHooks,
  type TransactionStatus,
} from './pipeline.js'
import { hasSeveralStatements } from './statements.js'
import { applyStatement, newMemo, resetStatements, type ResolvedTenant } from './tenant.js'

/**
 * `'transaction'`: the scope is one transaction and settings are `set_config(..., true)`, gone when
 * it ends. `'session'`: settings and role are set on checkout and reset before release; queries run
 * in autocommit. Needs session pooling behind PgBouncer.
 */
export type ScopeMode = 'transaction' | 'session'

/** How a scope runs: a public mode, or `'single'`: one statement in its own implicit transaction. */
export type ScopeKind = ScopeMode | 'single'

/** A pg submittable (pg-cursor, pg-query-stream): an object pg hands the connection to. */
export interface Submittable {
  submit(connection: unknown): unknown
}

export function isSubmittable(value: unknown): value is Submittable {
  return typeof (value as { submit?: unknown } | null)?.submit === 'function'
}

// SQLSTATEs PostgreSQL raises when `set_config('role', ...)` is refused: no such role (22023,
// "invalid value for parameter role"; 42704 from SET ROLE), not a member (42501).
const ROLE_REFUSED = new Set(['42704', '42501', '22023'])
// "current transaction is aborted, commands ignored until end of transaction block"
const IN_FAILED_TRANSACTION = '25P02'
const BEGIN: PrefixStatement = { text: 'BEGIN', values: [] }

/** A tenant with nothing to apply: used for the explicit `withoutTenant` opt-out. */
export const NO_TENANT: ResolvedTenant = { input: '', settings: [], role: undefined, key: '[]', memo: newMemo() }

/** What the scopes of one TenantPool learn about the connection path and share. */
export interface PoolState {
  /** Set when a session scope was answered by two backends: a transaction pooler is in between. */
  sessionPoolingError?: SessionPoolingError
  /** Counters, diagnostics channels and the release canary (`verifyRelease`). */
  monitor?: PoolMonitor
  /**
   * Whether a lone query's tenant statement is prepared once per connection (named) rather than
   * parsed every time. Turned off for good the first time the server refuses the prepared
   * statement (a transaction pooler that switched server connections, DISCARD ALL).
   */
  preparePrefix?: boolean
}

export class Scope {
  readonly tenant: ResolvedTenant
  readonly kind: ScopeKind
  readonly #pool: PgPoolLike
  readonly #shared: PoolState
  // Scope 'session': the backend that took the session settings.
  #sessionPid: string | undefined
  #client: Promise<PgClientLike> | undefined
  #queryClass: QueryClass | undefined
  #closed = false
  #broken = false
  #prefixSent = false
  // This scope sent BEGIN: it ends with COMMIT or ROLLBACK.
  #inTransaction = false
  // The tenant could not be applied: nothing more may run through this scope.
  #applyError: unknown
  // The scope's own transaction was ended by a statement sent as a query (COMMIT, ROLLBACK).
  #transactionEnded = false
  // The status of the last ReadyForQuery; 'I' for a fresh checkout (pg-pool hands out idle
  // clients, and pg-tenant returns only those).
  #status: TransactionStatus = 'I'
  // A statement was written but never answered (query_timeout, lost socket): state unknown.
  #unanswered = false
  // The client went back to the pool (released or destroyed).
  #handed = false
  readonly #onError = () => {
    this.#broken = true
  }
  readonly #trace: ScopeTrace

  constructor(pool: PgPoolLike, tenant: ResolvedTenant, kind: ScopeKind, shared: PoolState = {}) {
    this.#pool = pool
    this.#shared = shared
    this.tenant = tenant
    this.kind = kind
    this.#trace = new ScopeTrace(shared.monitor, tenant, kind)
  }

  /** True once the scope began to close: no statement may be sent through it any more. */
  get closed(): boolean {
    return this.#closed
  }

  /**
   * Sends one statement through this scope's client, checking the client out on first use. The
   * first statement carries the tenant (and `BEGIN`) in the same round trip where it can.
   */
  query(config: QueryConfigLike): Promise<QueryResultLike> {
    const refused = this.#refusal()
    return this.#trace.query(config.text, refused ? Promise.reject(refused) : this.#send(config), !refused)
  }

  /**
   * The whole life of a `'single'` scope whose statement can share the tenant's trip: check a
   * client out, send the tenant's `set_config` and the statement with one Sync, give the client
   * back (or destroy it) by the same rules as {@link Scope.close}, then settle. Callbacks rather
   * than awaits, because this is the hot path of `runWithTenant` + `db.query`.
   */
  runAlone(config: QueryConfigLike): Promise<QueryResultLike> {
    const published = this.#trace.queryStarted(config.text, true)
    // pg-pool hands a waiting caller its client from inside another query's release, and pg calls
    // back from its socket's handler: both in someone else's async context. What may run the
    // caller's code (a value's toPostgres, diagnostics subscribers) runs back in the caller's.
    const context = new AsyncResource('pg-tenant:query')
    return new Promise<QueryResultLike>((resolve, reject) => {
      let settled = false
      // The statement's outcome is published before its client's release, as in other scopes.
      const answered = (err: unknown, result?: QueryResultLike) => published?.(err !== undefined, err ?? result)
      const ended = (err: unknown, result?: QueryResultLike) => {
        if (settled) return
        settled = true
        this.#closed = true
        this.#trace.ended(err !== undefined, err)
        if (err !== undefined) reject(err)
        else resolve(result!)
      }
      // Something threw in pg-tenant or in a listener it called (a pool 'release' listener, a
      // subscriber): the client's state is unknown, so it is destroyed, and nothing escapes into
      // pg's message handling, which would be left half done.
      const failed = (client: PgClientLike, err: unknown) => {
        this.#broken = true
        try {
          this.#giveBack(client, false)
        } catch {
          // already handed to the pool, or the pool refused it: nothing more to do with it
        }
        answered(err)
        ended(err)
      }
      const answer = (client: PgClientLike, query: TenantQuery, err: Error | null, result?: QueryResultLike) => {
        try {
          this.#saw(query, err)
          if (query.preparedRefused && !this.#broken && !this.#unanswered && this.#status === 'I') {
            // The server refused the prepared tenant statement and skipped everything after it:
            // nothing ran. Send the same again, parsed unnamed, and stop preparing on this pool.
            this.#shared.preparePrefix = false
            this.#prefixSent = false
            send(client)
            return
          }
          const error = err ?? undefined
          answered(error, result)
          const back = this.#giveBack(client, true)
          if (back === undefined) ended(error, result)
          else void back.then(() => ended(error, result), (e: unknown) => failed(client, e))
        } catch (e) {
          failed(client, e)
        }
      }
      const send = (client: PgClientLike) => {
        const query: TenantQuery = this.#tenantQuery(config, this.#takePrefix(true, true), (err, result) =>
          context.runInAsyncScope(answer, undefined, client, query, err, result),
        )
        client.query(query)
      }
      checkoutWith(this.#pool, this.#onError, (checkoutError, client) =>
        context.runInAsyncScope(() => {
          const unsupported = checkoutError ?? this.#adopt(client!)
          if (unsupported !== undefined) {
            answered(unsupported)
            return ended(unsupported)
          }
          try {
            send(client!)
          } catch (err) {
            failed(client!, err)
          }
        }),
      )
    })
  }

  /**
   * Sends a pg submittable (pg-cursor, pg-query-stream) through this scope. It cannot share a
   * round trip, so the tenant goes first in a statement of its own, inside a transaction.
   * `finished` resolves when pg is done with it.
   */
  async submit<S extends Submittable>(submittable: S, finished?: () => void): Promise<S> {
    const refused = this.#refusal()
    if (refused) throw refused
    const client = await this.#acquire()
    this.#sendHead(client, this.#takePrefix(false))
    const scope = this
    const guarded = new Proxy(submittable, {
      get(target, prop, receiver) {
        const value = Reflect.get(target, prop, receiver)
        if (prop === 'submit') {
          return (connection: unknown) => scope.#guard() ?? target.submit.call(receiver, connection)
        }
        if ((prop === 'handleReadyForQuery' || prop === 'handleError') && typeof value === 'function') {
          return (...args: unknown[]) => {
            try {
              return value.apply(receiver, args)
            } finally {
              finished?.()
            }
          }
        }
        return value
      },
    })
    client.query(guarded)
    return submittable
  }

  #refusal(): unknown {
    if (this.#closed) return new ScopeClosedError()
    if (this.#applyError !== undefined) return this.#applyError
    if (this.#transactionEnded) return endedError()
    return undefined
  }

  async #send(config: QueryConfigLike): Promise<QueryResultLike> {
    const client = await this.#acquire()
    // A statement that is several statements in one text cannot be Parsed with others: it goes
    // after the tenant, in a transaction, on the simple protocol.
    const pipelinable = !hasSeveralStatements(config.text)
    const prefix = this.#takePrefix(pipelinable)
    const pipelined = pipelinable && this.kind !== 'session'
    if (!pipelined) this.#sendHead(client, prefix)
    const query = this.#tenantQuery(config, pipelined ? prefix : [])
    client.query(query)
    return this.#answer(query)
  }

  /** The prefix the next statement must carry, or none once it has been sent. */
  #takePrefix(pipelinable: boolean, prepare = false): PrefixStatement[] {
    if (this.#prefixSent) return []
    this.#prefixSent = true
    const hasTenant = this.tenant.settings.length > 0 || this.tenant.role !== undefined
    // A session scope writes session-level settings in a statement of its own: piggybacked on a
    // statement that fails, they would be rolled back with it and later statements would run bare.
    const session = this.kind === 'session'
    // The session apply also reports its backend, compared with the one that answers the RESET.
    if (this.kind === 'single' && pipelinable && hasTenant && prepare && this.#shared.preparePrefix !== false) {
      // A lone query can be sent again if the server refuses the prepared statement (runAlone).
      const memo = this.tenant.memo
      if (memo.prepared === undefined) {
        const statement = applyStatement(this.tenant, true)
        memo.prepared = { ...statement, name: preparedName(statement.text) }
      }
      return [memo.prepared]
    }
    const apply = hasTenant ? [applyStatement(this.tenant, !session, session)] : []
    if (this.kind === 'session' || (this.kind === 'single' && pipelinable)) return apply
    this.#inTransaction = true
    return [BEGIN, ...apply]
  }

  /** Sends the prefix alone; a failure is seen by the next statement's guard. */
  #sendHead(client: PgClientLike, prefix: PrefixStatement[]): void {
    if (prefix.length === 0) return
    const head = new TenantQuery(undefined, undefined, prefix, this.#hooks(false))
    client.query(head)
    this.#answer(head).catch(() => undefined)
  }

  #tenantQuery(config: QueryConfigLike, prefix: PrefixStatement[], settled?: TenantQueryHooks['settled']): TenantQuery {
    const hooks: TenantQueryHooks = this.#hooks(prefix.length === 0)
    if (settled !== undefined) hooks.settled = settled
    return new TenantQuery(this.#queryClass, config, prefix, hooks)
  }

  #hooks(guarded: boolean): TenantQueryHooks {
    return {
      guard: guarded ? () => this.#guard() : undefined,
      prefixFailed: (err: unknown) => this.#applyFailed(err),
      prefixRow: (value: unknown) => {
        if (this.kind === 'session') this.#sessionPid = String(value)
      },
      status: (status: TransactionStatus) => {
        this.#status = status
      },
    }
  }

  /** Checked when pg is about to write a statement: the status is current then. */
  #guard(): Error | undefined {
    if (this.#applyError !== undefined) return asError(this.#applyError)
    if (this.#inTransaction && this.#status === 'I') {
      this.#transactionEnded = true
      return endedError()
    }
    return undefined
  }

  #applyFailed(err: unknown): unknown {
    const role = this.tenant.role
    const code = (err as { code?: unknown } | null)?.code
    const explained =
      role !== undefined && typeof code === 'string' && ROLE_REFUSED.has(code)
        ? new RoleSwitchError(role, err)
        : err
    this.#applyError = explained
    return explained
  }

  async #answer(query: TenantQuery): Promise<QueryResultLike> {
    try {
      return await query.done
    } catch (err) {
      this.#saw(query, err)
      throw err
    } finally {
      this.#saw(query, null)
    }
  }

  /** What a settled statement tells about the connection. */
  #saw(query: TenantQuery, err: unknown): void {
    if (query.wrote && query.status === undefined) this.#unanswered = true
    // FATAL: the server ends the session. Known now, before the socket's 'error' event comes.
    const severity = (err as { severity?: unknown } | null)?.severity
    if (severity === 'FATAL' || severity === 'PANIC') this.#broken = true
  }

  #acquire(): Promise<PgClientLike> {
    return (this.#client ??= this.#connect())
  }

  async #connect(): Promise<PgClientLike> {
    // The 'error' listener is attached where the pool hands the client over (see checkout.ts): a
    // checked-out client that loses its socket emits 'error'; unhandled, that would crash the
    // process. Seeing one means the client can never be confirmed clean.
    const client = await checkout(this.#pool, this.#onError)
    const unsupported = this.#adopt(client)
    if (unsupported !== undefined) throw unsupported
    return client
  }

  /** Takes a checked-out client on: an error (the client released) when pg-tenant cannot drive it. */
  #adopt(client: PgClientLike): Error | undefined {
    this.#trace.pid = client.processID ?? undefined
    this.#queryClass = queryClassOf(client)
    if (this.#queryClass !== undefined) return undefined
    client.removeListener('error', this.#onError)
    client.release()
    return new InvalidOptionsError(
      "pg-tenant needs node-postgres' JavaScript client (pg 8.x, not pg-native or pipeline mode)",
    )
  }

  /**
   * Runs `fn` as a transaction inside this scope: `BEGIN` for the outermost transaction of a
   * session scope, a `SAVEPOINT` otherwise (a transaction scope already is one transaction).
   */
  async transaction<T>(depth: number, fn: () => Promise<T>): Promise<T> {
    const nested = this.kind === 'transaction' || depth > 0
    const savepoint = `pg_tenant_${depth + 1}`
    await this.query({ text: nested ? `SAVEPOINT ${savepoint}` : 'BEGIN' })
    let result: T
    try {
      result = await fn()
    } catch (err) {
      // If the undo fails, the connection state is unknown: close() checks it and destroys.
      await this.#undo(nested, savepoint).catch(() => undefined)
      throw err
    }
    // Whether an error the callback caught aborted the transaction is read from the answer to the
    // closing statement.
    let aborted: boolean
    try {
      const done = await this.query({ text: nested ? `RELEASE SAVEPOINT ${savepoint}` : 'COMMIT' })
      aborted = done.command === 'ROLLBACK' // COMMIT of an aborted transaction answers ROLLBACK
    } catch (err) {
      if ((err as { code?: unknown }).code !== IN_FAILED_TRANSACTION) throw err
      await this.#undo(nested, savepoint)
      aborted = true
    }
    if (aborted) throw new TransactionAbortedError()
    return result
  }

  async #undo(nested: boolean, savepoint: string): Promise<void> {
    if (!nested) {
      await this.query({ text: 'ROLLBACK' })
      return
    }
    await this.query({ text: `ROLLBACK TO SAVEPOINT ${savepoint}` })
    await this.query({ text: `RELEASE SAVEPOINT ${savepoint}` })
  }

  /**
   * Ends the scope. `failed`: the scope's callback threw, so its work is rolled back. Resolves with
   * nothing, or rejects with what the caller must see when the callback itself succeeded: the
   * COMMIT's error (unchanged from PostgreSQL) or a TransactionAbortedError. `reason`: the
   * callback's error, for diagnostics.
   */
  async close(failed: boolean, reason?: unknown): Promise<void> {
    let error: unknown
    try {
      await this.#close(failed)
    } catch (err) {
      error = err
      throw err
    } finally {
      this.#trace.ended(failed, failed ? reason : error)
    }
  }

  async #close(failed: boolean): Promise<void> {
    this.#closed = true
    if (this.#client === undefined) return
    let client: PgClientLike
    try {
      client = await this.#client
    } catch {
      return // the checkout failed: there is no client to give back
    }
    const known = !this.#broken && !this.#unanswered
    // A transaction whose connection was lost never committed: a callback that swallowed the
    // error and returned must not be told it did.
    const { error, confirmed } = known
      ? await this.#end(client, failed)
      : { error: this.#inTransaction && !this.#transactionEnded ? lostError() : undefined, confirmed: false }
    await this.#giveBack(client, confirmed)
    if (error !== undefined && !failed) throw error
  }

  /**
   * Gives the client back to the pool if it is confirmed clean, or destroys it. Clean means: the
   * statements that restore a clean state succeeded (`confirmed`), no socket error was seen, no
   * statement went unanswered, and the last ReadyForQuery said idle. A client checked by the release
   * canary goes back only if the server agrees. Returns a promise only when the canary runs.
   */
  #giveBack(client: PgClientLike, confirmed: boolean): Promise<void> | undefined {
    const clean = confirmed && !this.#broken && !this.#unanswered && this.#status === 'I'
    if (clean && this.#trace.shouldVerify()) {
      return this.#verify(client).then((verdict) => this.#hand(client, verdict, true))
    }
    const verdict: ReleaseVerdict = clean
      ? { release: true, verified: false }
      : uncleanVerdict({ broken: this.#broken, unanswered: this.#unanswered, idle: this.#status === 'I' })
    this.#hand(client, verdict, false)
    return undefined
  }

  #hand(client: PgClientLike, verdict: ReleaseVerdict, checked: boolean): void {
    if (this.#handed) return // a client goes back once, whatever called twice
    this.#handed = true
    client.removeListener('error', this.#onError)
    this.#trace.returned(verdict, checked)
    client.release(verdict.release ? undefined : true)
  }

  /**
   * Ends the transaction this scope opened, or undoes the session state. `confirmed`: the
   * statements that restore a clean state succeeded (the status still has the last word).
   * `error`: what the caller must see if its callback succeeded. Never rejects.
   */
  async #end(client: PgClientLike, failed: boolean): Promise<{ error?: unknown; confirmed: boolean }> {
    if (this.#inTransaction) {
      if (this.#transactionEnded) return { confirmed: true }
      if (this.#applyError !== undefined) {
        // The tenant was never applied: nothing in this transaction may be kept.
        const end = await this.#exec(client, 'ROLLBACK')
        return { error: this.#applyError, confirmed: end.error === undefined }
      }
      const end = await this.#exec(client, failed ? 'ROLLBACK' : 'COMMIT')
      if (end.error !== undefined) {
        // e.g. a deferred constraint: PostgreSQL rolled back, and SET LOCAL state went with the
        // transaction; the status of the answer decides reuse. The caller sees the error unchanged.
        return { error: failed ? undefined : end.error, confirmed: true }
      }
      // COMMIT of a transaction aborted by an error the callback caught answers ROLLBACK.
      const aborted = !failed && end.result?.command === 'ROLLBACK'
      return { error: aborted ? new TransactionAbortedError() : undefined, confirmed: true }
    }
    if (this.kind !== 'session') return { confirmed: true } // the implicit transaction has ended
    const hasState = this.tenant.settings.length > 0 || this.tenant.role !== undefined
    // A transaction the caller opened and left open cannot be confirmed clean: the client is
    // destroyed, which discards it. Checked when the RESET is about to be written.
    const leftOpen = () =>
      this.#status === 'I'
        ? undefined
        : new TransactionAbortedError(
            'a transaction was left open in a session scope; it was discarded with its connection',
          )
    // A failed apply changed nothing (set_config failed with its statement's implicit transaction).
    if (!hasState || this.#applyError !== undefined) {
      const error = leftOpen()
      return { error, confirmed: error === undefined }
    }
    // One trip: the RESETs, then the backend's pid, which must be the one that took the settings.
    const resets = resetStatements(this.tenant).map((text) => ({ text, values: [] }))
    const reset = await this.#exec(client, 'select pg_backend_pid()::text as pid', leftOpen, resets)
    if (reset.error instanceof TransactionAbortedError) return { error: reset.error, confirmed: false }
    if (reset.error !== undefined) return { confirmed: false }
    if (reset.result?.rows[0]?.pid !== this.#sessionPid) {
      // A transaction-mode pooler moved this session between backends: the settings may still sit
      // on a server connection that now serves someone else. Say so loudly, and refuse from now on.
      const error = new SessionPoolingError(
        `scope "session" was answered by backend ${reset.result?.rows[0]?.pid} after backend ` +
          `${this.#sessionPid} took its settings: a pooler in transaction mode is in between. ` +
          "Use scope 'transaction' (safe behind PgBouncer's transaction pooling) or session pooling.",
      )
      this.#shared.sessionPoolingError ??= error
      return { error, confirmed: false }
    }
    return { confirmed: true }
  }

  /**
   * The release canary: one statement through the same pipeline, so the status stays tracked.
   * Only a clean answer, on a connection that neither failed nor went unanswered, releases.
   */
  async #verify(client: PgClientLike): Promise<ReleaseVerdict> {
    const names = this.#trace.checkedSettings()
    const answer = await this.#exec(client, this.#trace.releaseCheck(names))
    return releaseVerdict(names, answer, this.#status, this.#broken || this.#unanswered)
  }

  async #exec(
    client: PgClientLike,
    statement: string | QueryConfigLike,
    guard?: () => Error | undefined,
    prefix: PrefixStatement[] = [],
  ): Promise<{ result?: QueryResultLike; error?: unknown }> {
    const config = typeof statement === 'string' ? { text: statement } : statement
    const query = new TenantQuery(this.#queryClass, config, prefix, {
      guard,
      status: (status) => {
        this.#status = status
      },
    })
    client.query(query)
    try {
      return { result: await this.#answer(query) }
    } catch (error) {
      return { error }
    }
  }
}

function endedError(): ScopeClosedError {
  return new ScopeClosedError(
    "this scope's transaction was ended by a COMMIT or ROLLBACK sent as a query; " +
      'use db.transaction() for nested transactions',
  )
}

function lostError(): TransactionAbortedError {
  return new TransactionAbortedError(
    'the connection was lost (or a statement went unanswered) before COMMIT: the transaction was not committed',
  )
}

function asError(value: unknown): Error {
  return value instanceof Error ? value : new Error(String(value))
}
