/**
 * One tenant scope: at most one pooled client, and the I/O that carries out what its state
 * (state.ts) decides: which statements to send with each of the caller's, how to end, whether the
 * client goes back to the pool or is destroyed.
 *
 * A scope runs one statement at a time, in the order they were issued (its own queue, so pg's
 * queue never holds two of them), and plans each statement when its turn comes, from the
 * transaction status the server reported for the one before.
 *
 * Four kinds share this lifecycle:
 * - `'single'`: one `db.query` under `runWithTenant` or `withoutTenant`. The tenant's
 *   `set_config(..., true)`, the statement and the reset go in one round trip (`runAlone`).
 * - `'transaction'`: `withTenant` (default) and `db.transaction`. BEGIN and the tenant ride with the
 *   first statement; COMMIT and the reset share the last round trip. Transaction control that
 *   would end the scope's transaction is refused.
 * - `'session'`: `withTenant` with `scope: 'session'`. The tenant is written at session level on
 *   first use and reset, with a check of the backend, before release.
 * - `'client'`: a `db.pool.connect()` client under `runWithTenant`. It holds no tenant state at
 *   session level, ever: an autocommit statement is a single-trip scoped query, and the tenant is
 *   applied transaction-locally inside the caller's own transactions.
 */
import { AsyncResource } from 'node:async_hooks'
import {
  checkClient,
  checkout,
  checkoutWith,
  guardSubmittable,
  mayRunCallerCode,
  pidOf,
  preparedName,
  queryClassOf,
  statusOf,
  TenantQuery,
  type PgClientLike,
  type PgPoolLike,
  type CheckedOut,
  type PrefixStatement,
  type QueryClass,
  type QueryConfigLike,
  type QueryResultLike,
  type TenantQueryHooks,
} from '../driver/index.js'
import { InvalidOptionsError, ReleaseError, RoleSwitchError, SessionPoolingError, TransactionAbortedError } from '../errors.js'
import { releaseVerdict, type ReleaseVerdict } from '../observe/canary.js'
import { LOGIN_CHECK_SQL, rlsBypassWarning, warnRlsBypass, type LoginRow } from '../observe/login-check.js'
import { ScopeTrace, type PoolMonitor } from '../observe/diagnostics.js'
import { applyStatement, newMemo, type ResolvedTenant } from '../tenant.js'
import type { ScopeKind } from './kinds.js'
import type { ResetPlan } from './reset.js'
import { analyzeSql, type SqlShape } from './sql-shape.js'
import { ScopeState, type Ending, type StatementSource } from './state.js'
import type { GateSlot, TenantGate } from './tenant-gate.js'

export type { ScopeKind, ScopeMode } from './kinds.js'

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
  /** The settings this pool writes, and the statement that resets them with the role. */
  reset?: ResetPlan
  /**
   * Where a failure to confirm a client clean is reported when no caller can receive it (a
   * `db.pool.connect()` client's `release()` returns nothing): the pool's 'error' listeners.
   */
  report?: (error: unknown) => void
  /**
   * `'pending'`: the first checkout asks the server whether the login role bypasses RLS (and warns
   * if so); the scope that takes it sets `'done'`. Undefined: no check (`allowRlsBypass`).
   */
  loginCheck?: 'pending' | 'done'
  /** The per-tenant quota (`maxPerTenant`), passed before every checkout; undefined: none. */
  gate?: TenantGate
}

/** Events of the pg client passed on to `db.pool.connect()` clients. */
export const FORWARDED_EVENTS = ['notice', 'notification', 'error', 'end'] as const
export type ForwardedEvent = (typeof FORWARDED_EVENTS)[number]
type Forwarder = (event: ForwardedEvent, ...args: unknown[]) => void

/** An answer to a statement the scope sent on its own: its result, or its error. */
interface Answer {
  result?: QueryResultLike
  error?: unknown
}

export class Scope {
  readonly tenant: ResolvedTenant
  readonly kind: ScopeKind
  readonly #pool: PgPoolLike
  readonly #shared: PoolState
  readonly #trace: ScopeTrace
  readonly #state: ScopeState
  readonly #statements: StatementSource
  #client: Promise<PgClientLike> | undefined
  #queryClass: QueryClass | undefined
  // Statements run one at a time: each waits for the one before to settle. (None for a lone query.)
  #tail: Promise<unknown> | undefined
  // Kind session: the backend that took the session settings.
  #sessionPid: string | undefined
  #savepoints = 0
  #forwarders: Set<Forwarder> | undefined
  #forwarding: Array<[ForwardedEvent, (...args: unknown[]) => void]> | undefined
  // The slot of the tenant's quota this scope's client holds (`maxPerTenant`), from before the
  // checkout until the client is given back or destroyed.
  #slot: GateSlot | undefined
  readonly #onError = (error: Error) => {
    this.#state.sawBroken(error)
  }

  constructor(pool: PgPoolLike, tenant: ResolvedTenant, kind: ScopeKind, shared: PoolState = {}) {
    this.#pool = pool
    this.#shared = shared
    this.tenant = tenant
    this.kind = kind
    this.#state = new ScopeState(kind)
    this.#statements = this.#source()
    this.#trace = new ScopeTrace(shared.monitor, tenant, kind)
  }

  /** True once the scope began to close: no statement may be sent through it any more. */
  get closed(): boolean {
    return this.#state.closing
  }

  /** Takes the client now (kind client: `db.pool.connect()` resolves with a connected client). */
  async open(): Promise<void> {
    await this.#acquire()
  }

  /**
   * Sends one statement through this scope's client, checking the client out on first use.
   * Refused at once (nothing sent) when the scope has closed, its tenant could not be applied, or
   * the statement is transaction control this kind of scope cannot allow.
   */
  query(config: QueryConfigLike, shape: SqlShape = analyzeSql(config.text)): Promise<QueryResultLike> {
    const refused = this.#state.refusal(true) ?? this.#state.refuseControl(shape)
    if (refused !== undefined) return this.#trace.query(config.text, Promise.reject(refused), false)
    return this.#trace.query(config.text, this.#enqueue(() => this.#run(config, shape)), true)
  }

  /**
   * The whole life of a `'single'` scope whose statement is one statement: check a client out,
   * send the tenant's `set_config`, the statement and the reset with one Sync, give the client back
   * (or destroy it) by the same rules as {@link Scope.close}, then settle. Callbacks rather than
   * awaits, because this is the hot path of `runWithTenant` + `db.query`.
   */
  runAlone(config: QueryConfigLike): Promise<QueryResultLike> {
    const state = this.#state
    const published = this.#trace.queryStarted(config.text, true)
    // pg-pool hands a waiting caller its client from inside another query's release, and pg calls
    // back from its socket's handler: both in someone else's async context. What may run the
    // caller's code (a value's toPostgres, diagnostics subscribers) runs back in the caller's;
    // when nothing can, no async resource is made (the hot path's common case).
    const context =
      this.#trace.listening() || mayRunCallerCode(config.values) ? new AsyncResource('pg-tenant:query') : undefined
    const inCaller = <A extends unknown[]>(fn: (...args: A) => void, ...args: A): void => {
      if (context === undefined) fn(...args)
      else context.runInAsyncScope(fn, undefined, ...args)
    }
    return new Promise<QueryResultLike>((resolve, reject) => {
      let settled = false
      // The statement's outcome is published before its client's release, as in other scopes.
      const answered = (err: unknown, result?: QueryResultLike) => published?.(err !== undefined, err ?? result)
      const ended = (err: unknown, result?: QueryResultLike) => {
        if (settled) return
        settled = true
        state.closing = true
        this.#trace.ended(err !== undefined, err)
        if (err !== undefined) reject(err)
        else resolve(result!)
      }
      // Something threw in pg-tenant or in a listener it called (a pool 'release' listener, a
      // subscriber): the client's state is unknown, so it is destroyed, and nothing escapes into
      // pg's message handling, which would be left half done.
      const failed = (client: PgClientLike, err: unknown) => {
        state.sawBroken(err)
        try {
          this.#giveBack(client, false)
        } catch {
          // already handed to the pool, or the pool refused it: nothing more to do with it. The
          // scope lets go of the client either way, so of its quota's slot too (once: #hand may
          // have left it already).
          this.#leaveSlot()
        }
        answered(err)
        ended(err)
      }
      const answer = (client: PgClientLike, query: TenantQuery, err: Error | null, result?: QueryResultLike) => {
        try {
          this.#saw(query, err)
          if (state.canResend(query)) {
            // The server refused the prepared tenant statement and skipped everything after it:
            // nothing ran. Send the same again, parsed unnamed, and stop preparing on this pool.
            this.#shared.preparePrefix = false
            send(client)
            return
          }
          const error = err ?? undefined
          answered(error, result)
          state.closing = true
          const back = this.#giveBack(client, true)
          if (back === undefined) ended(error, result)
          else void back.then(() => ended(error, result), (e: unknown) => failed(client, e))
        } catch (e) {
          failed(client, e)
        }
      }
      const send = (client: PgClientLike) => {
        const { prefix, suffix } = this.#statements.singleTrip()
        const hooks = this.#hooks(false, false)
        hooks.settled = (err, result) => inCaller(answer, client, query, err, result)
        const query: TenantQuery = new TenantQuery(this.#queryClass, config, prefix, hooks, suffix)
        client.query(query)
      }
      const checkedOut: CheckedOut = (checkoutError, client) =>
        inCaller(() => {
          const unsupported = checkoutError ?? this.#adopt(client!)
          if (unsupported !== undefined) {
            state.to('closed')
            answered(unsupported)
            return ended(unsupported)
          }
          state.to('open')
          try {
            if (this.#shared.loginCheck === 'pending') this.#checkLogin(client!, () => inCaller(send, client!))
            else send(client!)
          } catch (err) {
            failed(client!, err)
          }
        })
      state.to('acquiring')
      const gate = this.#shared.gate
      if (gate === undefined) checkoutWith(this.#pool, this.#onError, checkedOut)
      else this.#gatedCheckout(gate, checkedOut)
    })
  }

  /**
   * Sends a pg submittable (pg-cursor, pg-query-stream) through this scope. It cannot share a
   * round trip, so the tenant goes first in a statement of its own, inside a transaction; the
   * scope's next statement waits until pg is done with it. `finished` is called then.
   */
  submit<S extends Submittable>(submittable: S, finished?: () => void): Promise<S> {
    const refused = this.#state.refusal(true)
    if (refused !== undefined) return Promise.reject(refused)
    let release!: () => void
    const held = new Promise<void>((resolve) => {
      release = resolve
    })
    const started = (this.#tail ?? Promise.resolve()).then(async () => {
      const client = await this.#acquire()
      const head = this.#state.planSubmittable(this.#statements)
      try {
        if (head.length > 0) await this.#sendHead(client, head)
        const stillRefused = this.#state.refusal(false)
        if (stillRefused !== undefined) throw stillRefused
      } catch (err) {
        // A client's cursor transaction that could not start is ended at once.
        if (this.#state.cursorTransactionDone()) await this.#endOwnTransaction(client)
        throw err
      }
      this.#state.streaming = true
      client.query(
        guardSubmittable(submittable, () => this.#state.guard(), () => {
          this.#state.streaming = false
          release()
          finished?.()
        }),
      )
      return submittable
    })
    started.catch(() => release())
    // The turn is held until the submittable is done; a client's autocommit cursor then commits.
    this.#tail = started.then(
      () => held.then(() => this.#afterStream()).catch(() => undefined),
      () => undefined,
    )
    return started
  }

  /**
   * Runs `fn` as a transaction inside this scope: `BEGIN` for the outermost transaction of a
   * session scope, a `SAVEPOINT` otherwise (a transaction scope already is one transaction).
   */
  async transaction<T>(depth: number, fn: () => Promise<T>): Promise<T> {
    if (this.kind !== 'transaction' && depth === 0) return this.#sessionTransaction(fn)
    const savepoint = await this.savepoint()
    let result: T
    try {
      result = await fn()
    } catch (err) {
      // If the undo fails, the connection state is unknown: close() checks it and destroys.
      await this.rollbackToSavepoint(savepoint).catch(() => undefined)
      throw err
    }
    // An error the callback caught left the transaction aborted: RELEASE would fail with 25P02.
    if (this.#state.status === 'E') {
      await this.rollbackToSavepoint(savepoint)
      throw new TransactionAbortedError()
    }
    await this.releaseSavepoint(savepoint)
    return result
  }

  async #sessionTransaction<T>(fn: () => Promise<T>): Promise<T> {
    await this.query({ text: 'BEGIN' })
    let result: T
    try {
      result = await fn()
    } catch (err) {
      await this.query({ text: 'ROLLBACK' }).catch(() => undefined)
      throw err
    }
    const done = await this.query({ text: 'COMMIT' })
    // COMMIT of a transaction aborted by an error the callback caught answers ROLLBACK.
    if (done.command === 'ROLLBACK') throw new TransactionAbortedError()
    return result
  }

  /** Opens a savepoint in this scope's transaction; resolves with its name. */
  async savepoint(): Promise<string> {
    const name = `pg_tenant_${++this.#savepoints}`
    await this.query({ text: `SAVEPOINT ${name}` })
    return name
  }

  /** Keeps what was done since the savepoint. */
  async releaseSavepoint(name: string): Promise<void> {
    await this.query({ text: `RELEASE SAVEPOINT ${name}` })
  }

  /** Undoes what was done since the savepoint, and drops it. */
  async rollbackToSavepoint(name: string): Promise<void> {
    await this.query({ text: `ROLLBACK TO SAVEPOINT ${name}` })
    await this.query({ text: `RELEASE SAVEPOINT ${name}` })
  }

  /**
   * Passes the pg client's `notice`, `notification`, `error` and `end` events to `forward` while
   * this scope holds the client. Returns what stops it.
   */
  forwardEvents(forward: Forwarder): () => void {
    ;(this.#forwarders ??= new Set()).add(forward)
    void this.#client?.then((client) => this.#startForwarding(client), () => undefined)
    return () => {
      this.#forwarders?.delete(forward)
    }
  }

  /**
   * Ends the scope. `failed`: the scope's callback threw (or a client's user released it with an
   * error), so its work is rolled back. Resolves with nothing, or rejects with what the caller must
   * see when the callback itself succeeded: the COMMIT's error (unchanged from PostgreSQL) or a
   * TransactionAbortedError. `reason`: the callback's error, for diagnostics. `destroy`: the
   * client is destroyed whatever its state (a client released with an error, as pg does).
   */
  async close(failed: boolean, reason?: unknown, destroy = false): Promise<void> {
    let error: unknown
    try {
      await this.#close(failed, destroy)
    } catch (err) {
      error = err
      throw err
    } finally {
      this.#trace.ended(failed, failed ? reason : error)
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Statements

  #enqueue<T>(task: () => Promise<T>): Promise<T> {
    const run = this.#tail === undefined ? task() : this.#tail.then(task, task)
    this.#tail = run.then(
      () => undefined,
      () => undefined,
    )
    return run
  }

  async #run(config: QueryConfigLike, shape: SqlShape): Promise<QueryResultLike> {
    const client = await this.#acquire()
    const refused = this.#state.refusal(false)
    if (refused !== undefined) throw refused
    if (this.#state.runsSeveralAlone(shape)) return this.#autocommitSeveral(client, config)
    const plan = this.#state.plan(shape, this.#statements)
    if (plan.head.length > 0) await this.#sendHead(client, plan.head)
    let { prefix, suffix } = plan
    for (;;) {
      const query = this.#send(client, config, prefix, suffix, true)
      try {
        return await this.#answer(query)
      } catch (err) {
        if (!this.#state.canResend(query)) throw err
        this.#shared.preparePrefix = false
        ;({ prefix, suffix } = this.#statements.singleTrip())
      }
    }
  }

  /**
   * Several statements in one text, outside a transaction: they cannot share the tenant's trip
   * (the simple protocol runs them), so they run in a transaction of their own: BEGIN and the
   * tenant, the text, then COMMIT with the reset (or ROLLBACK).
   */
  async #autocommitSeveral(client: PgClientLike, config: QueryConfigLike): Promise<QueryResultLike> {
    let result: QueryResultLike | undefined
    let failure: unknown
    try {
      await this.#sendHead(client, [BEGIN, ...this.#statements.applyLocal()], false)
      result = await this.#answer(this.#send(client, config, [], [], true))
    } catch (err) {
      failure = err
    }
    const ended = await this.#endOwnTransaction(client)
    if (result === undefined) throw failure
    // A COMMIT that failed (a deferred constraint) kept nothing: the caller must not see success.
    if (ended !== undefined) throw ended
    return result
  }

  /**
   * Ends a transaction the scope opened for the caller's autocommit work (several statements, a
   * client's cursor). Resolves with the COMMIT's error, if it failed; the release decision sees
   * the rest.
   */
  async #endOwnTransaction(client: PgClientLike): Promise<unknown> {
    const end = this.#state.ownTransactionEnd()
    if (end === 'nothing') return undefined
    const answer = await this.#exec(client, end === 'commit' ? 'COMMIT' : 'ROLLBACK', end === 'commit' ? [this.#statements.reset()] : [])
    return end === 'commit' ? answer.error : undefined
  }

  /** After a caller's submittable finished: a client ends the transaction opened for it. */
  async #afterStream(): Promise<void> {
    const client = await this.#client!
    const status = statusOf(client)
    if (status !== undefined) this.#state.answered(status)
    if (!this.#state.cursorTransactionDone()) return
    // Nobody awaits a cursor's end: a COMMIT that failed is reported on the pool's 'error'.
    const failed = await this.#endOwnTransaction(client)
    if (failed !== undefined) this.#shared.report?.(failed)
  }

  /** The statements this scope's plans are made of, for its tenant and pool. */
  #source(): StatementSource {
    const tenant = this.tenant
    const shared = this.#shared
    const hasTenant = tenant.settings.length > 0 || tenant.role !== undefined
    const applyLocal = (): readonly PrefixStatement[] => (hasTenant ? [applyStatement(tenant, true)] : [])
    return {
      begin: BEGIN,
      applyLocal,
      applySession: () => (hasTenant ? [applyStatement(tenant, false, true)] : []),
      reset: () => shared.reset!.statement(),
      // The tenant, the statement, the reset, then the tenant again: its transaction-local values
      // last until the implicit commit, where deferred constraint triggers still see the tenant,
      // while the reset's empty session values are what remains after it (reset.ts).
      singleTrip: () => {
        const reset = shared.reset!
        if (!hasTenant) return { prefix: [], suffix: [reset.statement()] }
        if (shared.preparePrefix === false) {
          const apply = applyLocal()
          return { prefix: apply, suffix: [reset.statement(), ...apply] }
        }
        // A lone statement can be sent again if the server refuses the prepared statement.
        const memo = tenant.memo
        if (memo.prepared === undefined) {
          const statement = applyStatement(tenant, true)
          memo.prepared = { ...statement, name: preparedName(statement.text) }
        }
        const prepared = memo.prepared
        return { prefix: [prepared], suffix: [reset.companionOf(prepared), prepared] }
      },
    }
  }

  /** Sends tenant statements alone; with `sticky`, a failure is kept and refuses what follows. */
  async #sendHead(client: PgClientLike, head: readonly PrefixStatement[], sticky = this.#state.stickyApply): Promise<void> {
    const query = new TenantQuery(undefined, undefined, head, this.#hooks(false, sticky))
    client.query(query)
    try {
      await this.#answer(query)
    } catch (err) {
      if (!sticky) throw err
      // The apply error is kept: the statement that follows is refused with it.
    }
  }

  #send(
    client: PgClientLike,
    config: QueryConfigLike,
    prefix: readonly PrefixStatement[],
    suffix: readonly PrefixStatement[],
    guarded: boolean,
  ): TenantQuery {
    const query = new TenantQuery(this.#queryClass, config, prefix, this.#hooks(guarded, this.#state.stickyApply), suffix)
    client.query(query)
    return query
  }

  #hooks(guarded: boolean, sticky: boolean): TenantQueryHooks {
    const state = this.#state
    return {
      guard: guarded ? () => state.guard() : undefined,
      prefixFailed: (err: unknown) => {
        const explained = this.#explainApplyError(err)
        state.applyFailed(explained, sticky)
        return explained
      },
      prefixRow: (value: unknown) => {
        if (this.kind === 'session') this.#sessionPid = String(value)
      },
      status: (status) => state.answered(status),
    }
  }

  #explainApplyError(err: unknown): unknown {
    const role = this.tenant.role
    const code = (err as { code?: unknown } | null)?.code
    return role !== undefined && typeof code === 'string' && ROLE_REFUSED.has(code) ? new RoleSwitchError(role, err) : err
  }

  async #answer(query: TenantQuery): Promise<QueryResultLike> {
    let failure: unknown = null
    try {
      return await query.done
    } catch (err) {
      failure = err
      throw err
    } finally {
      this.#saw(query, failure)
    }
  }

  /** What a settled statement tells about the connection. */
  #saw(query: TenantQuery, err: unknown): void {
    if (query.wrote && query.status === undefined) this.#state.sawUnanswered(err ?? undefined)
    // FATAL: the server ends the session. Known now, before the socket's 'error' event comes.
    const severity = (err as { severity?: unknown } | null)?.severity
    if (severity === 'FATAL' || severity === 'PANIC') this.#state.sawBroken(err)
  }

  // ---------------------------------------------------------------------------------------------
  // The client

  #acquire(): Promise<PgClientLike> {
    return (this.#client ??= this.#connect())
  }

  async #connect(): Promise<PgClientLike> {
    this.#state.to('acquiring')
    // The 'error' listener is attached where the pool hands the client over (see checkout.ts): a
    // checked-out client that loses its socket emits 'error'; unhandled, that would crash the
    // process. Seeing one means the client can never be confirmed clean.
    let client: PgClientLike
    try {
      const gate = this.#shared.gate
      client = await (gate === undefined ? checkout(this.#pool, this.#onError) : this.#gatedCheckoutAsync(gate))
    } catch (err) {
      this.#state.to('closed')
      throw err
    }
    const unsupported = this.#adopt(client)
    if (unsupported !== undefined) {
      this.#state.to('closed')
      throw unsupported
    }
    this.#state.to('open')
    if (this.#forwarders !== undefined) this.#startForwarding(client)
    if (this.#shared.loginCheck === 'pending') await new Promise<void>((resolve) => this.#checkLogin(client, resolve))
    return client
  }

  /**
   * A checkout behind the tenant's quota: a slot first (waiting in the tenant's queue, holding no
   * connection), then the pool's checkout. A refused wait or a failed checkout leaves no slot held.
   */
  #gatedCheckout(gate: TenantGate, done: CheckedOut): void {
    gate.enter(this.tenant, (refused, slot) => {
      if (refused !== undefined) return done(refused)
      this.#slot = slot
      checkoutWith(this.#pool, this.#onError, (err, client) => {
        if (err !== undefined) this.#leaveSlot()
        done(err, client)
      })
    })
  }

  #gatedCheckoutAsync(gate: TenantGate): Promise<PgClientLike> {
    return new Promise((resolve, reject) => {
      this.#gatedCheckout(gate, (err, client) => (err === undefined ? resolve(client!) : reject(err)))
    })
  }

  /** Gives the quota's slot back, if this scope holds one: once, whatever the path. */
  #leaveSlot(): void {
    const slot = this.#slot
    if (slot === undefined) return
    this.#slot = undefined
    slot.leave()
  }

  /**
   * Once per pool, on its first checkout: asks the server whether the login role bypasses RLS, and
   * warns if it does (observe/login-check.ts). `next` runs when the answer came, whatever it was;
   * the check's own failure is no one's concern but the release decision's.
   */
  #checkLogin(client: PgClientLike, next: () => void): void {
    this.#shared.loginCheck = 'done'
    const state = this.#state
    const query = new TenantQuery(this.#queryClass, { text: LOGIN_CHECK_SQL }, [], {
      status: (status) => (state.status = status),
      settled: (err, result) => {
        this.#saw(query, err)
        const warning = err === null ? rlsBypassWarning(result?.rows[0] as LoginRow | undefined) : undefined
        if (warning !== undefined) warnRlsBypass(warning)
        next()
      },
    })
    client.query(query)
  }

  /** Takes a checked-out client on: an error (the client released) when pg-tenant cannot drive it. */
  #adopt(client: PgClientLike): Error | undefined {
    this.#trace.pid = pidOf(client)
    this.#queryClass = queryClassOf(client)
    const unsupported = this.#queryClass === undefined ? "the client has no pg Query class" : checkClient(client)
    if (unsupported === undefined) return undefined
    client.removeListener('error', this.#onError)
    client.release()
    this.#leaveSlot()
    return new InvalidOptionsError(`pg-tenant cannot drive this client: ${unsupported}`)
  }

  #startForwarding(client: PgClientLike): void {
    if (this.#forwarding !== undefined || this.#state.phase !== 'open') return
    const emitter = client as unknown as { on(event: string, listener: (...args: unknown[]) => void): unknown }
    this.#forwarding = FORWARDED_EVENTS.map((event) => {
      const listener = (...args: unknown[]) => {
        for (const forward of this.#forwarders ?? []) forward(event, ...args)
      }
      emitter.on(event, listener)
      return [event, listener]
    })
  }

  #stopForwarding(client: PgClientLike): void {
    const emitter = client as unknown as { removeListener(event: string, listener: (...args: unknown[]) => void): unknown }
    for (const [event, listener] of this.#forwarding ?? []) emitter.removeListener(event, listener)
    this.#forwarding = undefined
  }

  // ---------------------------------------------------------------------------------------------
  // The end

  async #close(failed: boolean, destroy: boolean): Promise<void> {
    const state = this.#state
    state.closing = true
    if (destroy) state.destroyRequested = true
    if (this.#client === undefined) {
      if (state.phase === 'idle') state.to('closed')
      return
    }
    let client: PgClientLike
    try {
      client = await this.#client
    } catch {
      return // the checkout failed: there is no client to give back
    }
    if (state.phase !== 'open') return // already ended
    // Statements issued before the scope closed run first (unless the client is to be destroyed,
    // or a caller's cursor holds it: it cannot be waited for).
    if (!state.destroyRequested && !state.streaming) await this.#tail
    state.to('ending')
    const { error, confirmed } = await this.#end(client, state.ending(failed))
    const back = this.#giveBack(client, confirmed)
    if (back !== undefined) await back
    if (error !== undefined && !failed) throw error
  }

  /**
   * Carries out the scope's ending. `confirmed`: the statements that restore a clean state
   * succeeded (the status still has the last word). `error`: what the caller must see if its
   * callback succeeded. Never rejects.
   */
  async #end(client: PgClientLike, ending: Ending): Promise<{ error?: unknown; confirmed: boolean }> {
    switch (ending.send) {
      case 'nothing':
        return { confirmed: true }
      case 'abandon':
        return { error: ending.error, confirmed: false }
      case 'rollback': {
        const end = await this.#exec(client, 'ROLLBACK')
        return { error: ending.error, confirmed: end.error === undefined }
      }
      case 'commit': {
        // COMMIT, then the reset of whatever the transaction wrote at session level: one trip.
        const end = await this.#exec(client, 'COMMIT', [this.#statements.reset()])
        // A COMMIT that fails (a deferred constraint) rolled back, and what the transaction set went
        // with it; the status of the answer decides reuse. The caller sees the error unchanged.
        return { error: end.error, confirmed: true }
      }
      case 'session-reset':
        return this.#endSession(client)
    }
  }

  async #endSession(client: PgClientLike): Promise<{ error?: unknown; confirmed: boolean }> {
    const state = this.#state
    // A transaction the caller opened and left open cannot be confirmed clean: the client is
    // destroyed, which discards it. Checked when the reset is about to be written.
    const leftOpen = () =>
      state.status === 'I'
        ? undefined
        : new TransactionAbortedError('a transaction was left open in a session scope; it was discarded with its connection')
    // One trip: the reset, then the backend's pid, which must be the one that took the settings.
    const reset = await this.#exec(client, 'select pg_backend_pid()::text as pid', [], leftOpen, [this.#statements.reset()])
    if (reset.error instanceof TransactionAbortedError) return { error: reset.error, confirmed: false }
    if (reset.error !== undefined) return { confirmed: false }
    const pid = reset.result?.rows[0]?.pid
    if (state.applied && state.applyError === undefined && pid !== this.#sessionPid) {
      // A transaction-mode pooler moved this session between backends: the settings may still sit
      // on a server connection that now serves someone else. Say so loudly, and refuse from now on.
      const error = new SessionPoolingError(
        `scope "session" was answered by backend ${pid} after backend ${this.#sessionPid} took its settings: ` +
          "a pooler in transaction mode is in between. Use scope 'transaction' (safe behind PgBouncer's transaction " +
          'pooling) or session pooling.',
      )
      this.#shared.sessionPoolingError ??= error
      return { error, confirmed: false }
    }
    return { confirmed: true }
  }

  /**
   * Gives the client back to the pool if the state says it is clean (ScopeState.verdict), or
   * destroys it. A client checked by the release canary goes back only if the server agrees.
   * Returns a promise only when the canary runs.
   */
  #giveBack(client: PgClientLike, confirmed: boolean): Promise<void> | undefined {
    const verdict = this.#state.verdict(confirmed)
    if (verdict.release && this.#trace.shouldVerify()) {
      return this.#verify(client).then((checked) => this.#hand(client, checked, true))
    }
    this.#hand(client, verdict, false)
    return undefined
  }

  #hand(client: PgClientLike, verdict: ReleaseVerdict, checked: boolean): void {
    const state = this.#state
    if (state.phase === 'released' || state.phase === 'destroyed') return // a client goes back once
    try {
      if (state.phase !== 'ending') state.to('ending')
      state.to(verdict.release ? 'released' : 'destroyed')
      client.removeListener('error', this.#onError)
      this.#stopForwarding(client)
      this.#trace.returned(verdict, checked)
      client.release(verdict.release ? undefined : true)
    } finally {
      // The quota's slot follows the client: given back (or destroyed), it frees the slot, once.
      if (this.#slot !== undefined) this.#leaveSlot()
    }
    // A client whose release nobody awaits (db.pool.connect()) reports what it could not confirm.
    if (!verdict.release && this.kind === 'client' && verdict.reason !== 'broken' && verdict.reason !== 'requested') {
      this.#shared.report?.(new ReleaseError(verdict.reason, verdict.error))
    }
  }

  /**
   * The release canary: one statement through the same pipeline, so the status stays tracked.
   * Only a clean answer, on a connection that neither failed nor went unanswered, releases.
   */
  async #verify(client: PgClientLike): Promise<ReleaseVerdict> {
    const names = this.#trace.checkedSettings(this.#shared.reset?.names)
    const answer = await this.#exec(client, this.#trace.releaseCheck(names))
    return releaseVerdict(names, answer, this.#state.status, this.#state.broken || this.#state.unanswered)
  }

  /** A statement of the scope's own (an ending, the canary), answered but never thrown. */
  async #exec(
    client: PgClientLike,
    statement: string | QueryConfigLike,
    suffix: readonly PrefixStatement[] = [],
    guard?: () => Error | undefined,
    prefix: readonly PrefixStatement[] = [],
  ): Promise<Answer> {
    const config = typeof statement === 'string' ? { text: statement } : statement
    const state = this.#state
    const query = new TenantQuery(this.#queryClass, config, prefix, { guard, status: (s) => (state.status = s) }, suffix)
    client.query(query)
    try {
      return { result: await this.#answer(query) }
    } catch (error) {
      return { error }
    }
  }
}
