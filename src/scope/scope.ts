/**
 * One tenant scope: at most one pooled client, and the security code that decides what each
 * statement carries and whether that client may go back to the pool.
 *
 * A scope runs one statement at a time, in the order they were issued (its own queue, so pg's
 * queue never holds two of them), and plans each statement when its turn comes, from the
 * transaction status the server reported for the one before: which tenant statements ride in front
 * of it (the prefix) and which reset rides behind it (the suffix), all before one Sync.
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
 *
 * A client is returned with `release()` only when its state is confirmed clean: the last
 * ReadyForQuery said idle, no socket error or unanswered statement was seen, and the statements
 * that end the scope succeeded. Anything else destroys it with `release(true)`.
 */
import { AsyncResource } from 'node:async_hooks'
import { releaseVerdict, type ReleaseVerdict } from '../observe/canary.js'
import { checkout, checkoutWith } from '../driver/checkout.js'
import { ScopeTrace, uncleanVerdict, type PoolMonitor } from '../observe/diagnostics.js'
import type { PgClientLike, PgPoolLike, QueryConfigLike, QueryResultLike } from '../driver/types.js'
import {
  InvalidOptionsError,
  InvalidQueryError,
  ReleaseError,
  RoleSwitchError,
  ScopeClosedError,
  SessionPoolingError,
  TransactionAbortedError,
} from '../errors.js'
import {
  lastStatus,
  mayRunCallerCode,
  preparedName,
  queryClassOf,
  TenantQuery,
  watchStatus,
  type PrefixStatement,
  type QueryClass,
  type TenantQueryHooks,
  type TransactionStatus,
} from '../driver/pipeline.js'
import type { ResetPlan } from './reset.js'
import { analyzeSql, findControl, type SqlShape, type TransactionControl } from './sql-shape.js'
import { applyStatement, newMemo, type ResolvedTenant } from '../tenant.js'

/**
 * `'transaction'`: the scope is one transaction and settings are `set_config(..., true)`, gone when
 * it ends. `'session'`: settings and role are set on checkout and reset before release; queries run
 * in autocommit. Needs session pooling behind PgBouncer.
 */
export type ScopeMode = 'transaction' | 'session'

/**
 * How a scope runs: a public mode; `'single'`, one statement in its own implicit transaction; or
 * `'client'`, a `db.pool.connect()` client under `runWithTenant`.
 */
export type ScopeKind = ScopeMode | 'single' | 'client'

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

// Transaction control each kind refuses before anything is sent (see statements.ts).
const ALL_CONTROL = new Set<TransactionControl>(['begin', 'commit', 'rollback', 'chain', 'prepare', 'set-transaction', 'savepoint'])
const ENDS_OR_STARTS = new Set<TransactionControl>(['begin', 'commit', 'rollback', 'chain', 'prepare'])
const REFUSED: Record<ScopeKind, ReadonlySet<TransactionControl>> = {
  single: ALL_CONTROL,
  transaction: ENDS_OR_STARTS,
  session: new Set(['prepare']),
  client: new Set(['chain', 'prepare']),
}

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
}

/** What a statement carries: sent alone first (`head`), then `prefix` + statement + `suffix`. */
interface Plan {
  head: PrefixStatement[]
  prefix: PrefixStatement[]
  suffix: PrefixStatement[]
}

const NOTHING: Plan = { head: [], prefix: [], suffix: [] }

/** Events of the pg client passed on to `db.pool.connect()` clients. */
export const FORWARDED_EVENTS = ['notice', 'notification', 'error', 'end'] as const
export type ForwardedEvent = (typeof FORWARDED_EVENTS)[number]
type Forwarder = (event: ForwardedEvent, ...args: unknown[]) => void

export class Scope {
  readonly tenant: ResolvedTenant
  readonly kind: ScopeKind
  readonly #pool: PgPoolLike
  readonly #shared: PoolState
  readonly #trace: ScopeTrace
  #client: Promise<PgClientLike> | undefined
  #queryClass: QueryClass | undefined
  // Statements run one at a time: each waits for the one before to settle. (None for a lone query.)
  #tail: Promise<unknown> | undefined
  // True once the scope began to close: no statement may be issued through it any more.
  #closed = false
  // --- what the server said about the connection
  // The status of the last ReadyForQuery; 'I' for a fresh checkout (pg-pool hands out idle
  // clients, and pg-tenant returns only those).
  #status: TransactionStatus = 'I'
  // The socket reported an error, or the server ended the session.
  #broken = false
  // A statement was written but never answered (query_timeout, lost socket): state unknown.
  #unanswered = false
  // --- what this scope did on it
  // The tenant could not be applied: nothing more may run through this scope (transaction and
  // session kinds; a client's next statement simply tries again).
  #applyError: unknown
  // Kinds transaction and single: this scope sent BEGIN and must end the transaction.
  #began = false
  // The tenant is in force: in the current transaction (transaction, client) or session (session).
  #applied = false
  // Kind transaction: the transaction ended without this scope ending it. Everything is refused.
  #ended = false
  // Kind session: the backend that took the session settings.
  #sessionPid: string | undefined
  // A caller's submittable (a cursor) holds the connection.
  #streaming = false
  // The client went back to the pool (released or destroyed).
  #handed = false
  // The caller released the client with an error: pg destroys it then, and so does pg-tenant.
  #destroyRequested = false
  #savepoints = 0
  #forwarders: Set<Forwarder> | undefined
  #forwarding: Array<[ForwardedEvent, (...args: unknown[]) => void]> | undefined
  readonly #onError = () => {
    this.#broken = true
  }

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
    const refused = this.#refusal() ?? this.#refuseControl(shape)
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
          if (this.#canResend(query)) {
            // The server refused the prepared tenant statement and skipped everything after it:
            // nothing ran. Send the same again, parsed unnamed, and stop preparing on this pool.
            this.#shared.preparePrefix = false
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
        const { prefix, suffix } = this.#singleTrip()
        const hooks = this.#hooks(false, false)
        hooks.settled = (err, result) => inCaller(answer, client, query, err, result)
        const query: TenantQuery = new TenantQuery(this.#queryClass, config, prefix, hooks, suffix)
        client.query(query)
      }
      checkoutWith(this.#pool, this.#onError, (checkoutError, client) =>
        inCaller(() => {
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
   * round trip, so the tenant goes first in a statement of its own, inside a transaction; the
   * scope's next statement waits until pg is done with it. `finished` is called then.
   */
  submit<S extends Submittable>(submittable: S, finished?: () => void): Promise<S> {
    const refused = this.#refusal()
    if (refused !== undefined) return Promise.reject(refused)
    let release!: () => void
    const held = new Promise<void>((resolve) => {
      release = resolve
    })
    const started = (this.#tail ?? Promise.resolve()).then(async () => {
      const client = await this.#acquire()
      const head = this.#planSubmittable()
      try {
        if (head.length > 0) await this.#sendHead(client, head)
        const stillRefused = this.#refusal(false)
        if (stillRefused !== undefined) throw stillRefused
      } catch (err) {
        if (this.kind === 'client' && this.#began) {
          this.#began = false
          await this.#endOwnTransaction(client)
        }
        throw err
      }
      this.#streaming = true
      client.query(this.#guarded(submittable, () => {
        this.#streaming = false
        release()
        finished?.()
      }))
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
    if (this.#status === 'E') {
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

  /** Why nothing may be sent through this scope now, if anything. */
  #refusal(checkClosed = true): unknown {
    if (checkClosed && this.#closed) return new ScopeClosedError()
    if (this.#applyError !== undefined) return this.#applyError
    if (this.#ended) return endedError()
    return undefined
  }

  /** Transaction control this kind of scope cannot let through, refused before anything is sent. */
  #refuseControl(shape: SqlShape): InvalidQueryError | undefined {
    const refused = REFUSED[this.kind]
    let control = findControl(shape, refused)
    if (control === undefined && shape.several && this.kind === 'client') control = findControl(shape, ENDS_OR_STARTS)
    if (control === undefined) return undefined
    return new InvalidQueryError(refusalMessage(this.kind, control, shape.several))
  }

  async #run(config: QueryConfigLike, shape: SqlShape): Promise<QueryResultLike> {
    const client = await this.#acquire()
    const refused = this.#refusal(false)
    if (refused !== undefined) throw refused
    if (shape.several && (this.kind === 'single' || (this.kind === 'client' && this.#status === 'I'))) {
      return this.#autocommitSeveral(client, config)
    }
    const plan = this.#plan(shape)
    if (plan.head.length > 0) await this.#sendHead(client, plan.head)
    let { prefix, suffix } = plan
    for (;;) {
      const query = new TenantQuery(this.#queryClass, config, prefix, this.#hooks(true, this.#stickyApply()), suffix)
      client.query(query)
      try {
        return await this.#answer(query)
      } catch (err) {
        if (!this.#canResend(query)) throw err
        this.#shared.preparePrefix = false
        ;({ prefix, suffix } = this.#singleTrip())
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
      await this.#sendHead(client, [BEGIN, ...this.#apply(true)], false)
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
   * Ends a transaction the scope opened for the caller's autocommit work: COMMIT with the reset
   * when it is intact, ROLLBACK when it is aborted. Resolves with the COMMIT's error, if it failed;
   * the release decision (the status, a broken connection) sees the rest.
   */
  async #endOwnTransaction(client: PgClientLike): Promise<unknown> {
    if (this.#broken || this.#unanswered || this.#status === 'I') return undefined
    const commit = this.#status === 'T'
    const end = this.#send(client, { text: commit ? 'COMMIT' : 'ROLLBACK' }, [], commit ? [this.#reset()] : [], false)
    return this.#answer(end).then(
      () => undefined,
      (err: unknown) => (commit ? err : undefined),
    )
  }

  /** What the next statement carries, from the kind of scope and the current transaction status. */
  #plan(shape: SqlShape): Plan {
    const control = shape.several ? undefined : shape.controls[0]
    let plan: Plan
    switch (this.kind) {
      case 'transaction':
        plan = this.#planTransaction(control)
        break
      case 'session':
        plan = this.#applied || !this.#hasTenant() ? NOTHING : { head: [applyStatement(this.tenant, false, true)], prefix: [], suffix: [] }
        this.#applied = true
        return plan
      case 'client':
        plan = this.#planClient(control)
        break
      default:
        plan = this.#planTransaction(control) // 'single' with a statement that is not alone: a cursor
    }
    // Several statements cannot be parsed with others: whatever goes in front goes alone first.
    if (shape.several && plan.prefix.length > 0) return { head: plan.prefix, prefix: [], suffix: plan.suffix }
    return plan
  }

  #planTransaction(control: TransactionControl | undefined): Plan {
    const prefix: PrefixStatement[] = []
    if (!this.#began) {
      this.#began = true
      prefix.push(BEGIN)
    }
    // SET TRANSACTION must come before the transaction's first query, and set_config is one.
    if (!this.#applied && control !== 'set-transaction') {
      prefix.push(...this.#apply(true))
      this.#applied = true
    }
    return { head: [], prefix, suffix: [] }
  }

  #planClient(control: TransactionControl | undefined): Plan {
    if (this.#status === 'I') {
      // Transaction control goes as it is: BEGIN opens the caller's transaction, and the tenant
      // rides with its first statement.
      if (control !== undefined) return NOTHING
      return { head: [], ...this.#singleTrip() }
    }
    // In a transaction: COMMIT carries the reset (what the transaction wrote at session level
    // persists past it); ROLLBACK undoes everything by itself.
    if (control === 'commit') return { head: [], prefix: [], suffix: [this.#reset()] }
    if (this.#status === 'E' || this.#applied) return NOTHING
    if (control === 'begin' || control === 'set-transaction' || control === 'rollback') return NOTHING
    this.#applied = true
    return { head: [], prefix: this.#apply(true), suffix: [] }
  }

  /** A submittable's head: it needs the tenant applied in a transaction, before it starts. */
  #planSubmittable(): PrefixStatement[] {
    switch (this.kind) {
      case 'session':
        return this.#plan({ several: false, controls: [undefined] }).head
      case 'client':
        if (this.#status === 'I') {
          this.#began = true // the client's own cursor transaction, committed by #afterStream
          this.#applied = true
          return [BEGIN, ...this.#apply(true)]
        }
        return this.#planClient(undefined).prefix
      default:
        return this.#planTransaction(undefined).prefix
    }
  }

  /** After a caller's submittable finished: a client ends the transaction opened for it. */
  async #afterStream(): Promise<void> {
    const client = await this.#client!
    this.#status = lastStatus(this.#connectionOf(client)) ?? this.#status
    if (this.kind !== 'client' || !this.#began) return
    this.#began = false
    // Nobody awaits a cursor's end: a COMMIT that failed is reported on the pool's 'error'.
    const failed = await this.#endOwnTransaction(client)
    if (failed !== undefined) this.#shared.report?.(failed)
  }

  /** The prefix and suffix of a single-trip autocommit statement. */
  #singleTrip(): { prefix: PrefixStatement[]; suffix: PrefixStatement[] } {
    const after = this.#shared.reset!
    if (!this.#hasTenant()) return { prefix: [], suffix: [...after.afterStatement()] }
    if (this.#shared.preparePrefix === false) return { prefix: this.#apply(true), suffix: [...after.afterStatement()] }
    // A lone statement can be sent again if the server refuses the prepared statement (runAlone).
    const memo = this.tenant.memo
    if (memo.prepared === undefined) {
      const statement = applyStatement(this.tenant, true)
      memo.prepared = { ...statement, name: preparedName(statement.text) }
    }
    const prefix = memo.prepared
    return { prefix: [prefix], suffix: [...after.afterStatementWith(prefix)] }
  }

  #apply(local: boolean): PrefixStatement[] {
    return this.#hasTenant() ? [applyStatement(this.tenant, local)] : []
  }

  #reset(): PrefixStatement {
    return this.#shared.reset!.statement()
  }

  #hasTenant(): boolean {
    return this.tenant.settings.length > 0 || this.tenant.role !== undefined
  }

  /** Whether a failed tenant statement stops the whole scope (it does, but for a client). */
  #stickyApply(): boolean {
    return this.kind !== 'client'
  }

  /**
   * A refused prepared statement (26000, 42P05) with nothing run: the same may be sent again,
   * unnamed. Only for an autocommit statement whose connection is known clean and idle.
   */
  #canResend(query: TenantQuery): boolean {
    return query.preparedRefused && !query.suffixFailed && !this.#broken && !this.#unanswered && this.#status === 'I'
  }

  /** Sends tenant statements alone; a failure is seen by the next statement's guard. */
  async #sendHead(client: PgClientLike, head: PrefixStatement[], sticky = this.#stickyApply()): Promise<void> {
    const query = new TenantQuery(undefined, undefined, head, this.#hooks(false, sticky))
    client.query(query)
    try {
      await this.#answer(query)
    } catch (err) {
      if (!sticky) throw err
      // The apply error is kept: the statement that follows is refused with it.
    }
  }

  #send(client: PgClientLike, config: QueryConfigLike, prefix: PrefixStatement[], suffix: PrefixStatement[], guarded: boolean): TenantQuery {
    const query = new TenantQuery(this.#queryClass, config, prefix, this.#hooks(guarded, this.#stickyApply()), suffix)
    client.query(query)
    return query
  }

  #hooks(guarded: boolean, sticky: boolean): TenantQueryHooks {
    return {
      guard: guarded ? () => this.#guard() : undefined,
      prefixFailed: (err: unknown) => this.#applyFailed(err, sticky),
      prefixRow: (value: unknown) => {
        if (this.kind === 'session') this.#sessionPid = String(value)
      },
      status: (status: TransactionStatus) => {
        this.#statusIs(status)
      },
    }
  }

  #statusIs(status: TransactionStatus): void {
    this.#status = status
    if (status !== 'I') return
    // The transaction ended: so did the tenant applied in it.
    if (this.kind === 'client') this.#applied = false
    else if (this.kind === 'transaction' && this.#began && !this.#closed) this.#ended = true
  }

  /** Checked when pg is about to write a statement: the status is current then. */
  #guard(): Error | undefined {
    if (this.#applyError !== undefined) return asError(this.#applyError)
    if (this.#ended) return endedError()
    return undefined
  }

  #applyFailed(err: unknown, sticky: boolean): unknown {
    const role = this.tenant.role
    const code = (err as { code?: unknown } | null)?.code
    const explained =
      role !== undefined && typeof code === 'string' && ROLE_REFUSED.has(code) ? new RoleSwitchError(role, err) : err
    if (sticky) this.#applyError = explained
    else if (this.kind === 'client') this.#applied = false
    return explained
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
    if (query.wrote && query.status === undefined) this.#unanswered = true
    // FATAL: the server ends the session. Known now, before the socket's 'error' event comes.
    const severity = (err as { severity?: unknown } | null)?.severity
    if (severity === 'FATAL' || severity === 'PANIC') this.#broken = true
  }

  /** A caller's submittable, refused if the scope can no longer send, reporting when pg is done. */
  #guarded<S extends Submittable>(submittable: S, finished: () => void): S {
    const scope = this
    let done = false
    const finish = () => {
      if (done) return
      done = true
      finished()
    }
    return new Proxy(submittable, {
      get(target, prop, receiver) {
        const value = Reflect.get(target, prop, receiver)
        if (prop === 'submit') {
          return (connection: unknown) => {
            watchStatus(connection)
            return scope.#guard() ?? target.submit.call(receiver, connection)
          }
        }
        if ((prop === 'handleReadyForQuery' || prop === 'handleError') && typeof value === 'function') {
          return (...args: unknown[]) => {
            try {
              return value.apply(receiver, args)
            } finally {
              finish()
            }
          }
        }
        return value
      },
    })
  }

  // ---------------------------------------------------------------------------------------------
  // The client

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
    if (this.#forwarders !== undefined) this.#startForwarding(client)
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

  #connectionOf(client: PgClientLike): unknown {
    return (client as unknown as { connection?: unknown }).connection
  }

  #startForwarding(client: PgClientLike): void {
    if (this.#forwarding !== undefined || this.#handed) return
    const emitter = client as unknown as {
      on(event: string, listener: (...args: unknown[]) => void): unknown
    }
    this.#forwarding = FORWARDED_EVENTS.map((event) => {
      const listener = (...args: unknown[]) => {
        for (const forward of this.#forwarders ?? []) forward(event, ...args)
      }
      emitter.on(event, listener)
      return [event, listener]
    })
  }

  #stopForwarding(client: PgClientLike): void {
    const emitter = client as unknown as {
      removeListener(event: string, listener: (...args: unknown[]) => void): unknown
    }
    for (const [event, listener] of this.#forwarding ?? []) emitter.removeListener(event, listener)
    this.#forwarding = undefined
  }

  // ---------------------------------------------------------------------------------------------
  // The end

  async #close(failed: boolean, destroy: boolean): Promise<void> {
    this.#closed = true
    if (this.#client === undefined) return
    let client: PgClientLike
    try {
      client = await this.#client
    } catch {
      return // the checkout failed: there is no client to give back
    }
    if (destroy) this.#destroyRequested = true
    // A caller's cursor still holding the connection cannot be waited for: destroy.
    if (this.#streaming) destroy = true
    // Statements issued before the scope closed run first.
    if (!destroy) await this.#tail
    const known = !destroy && !this.#broken && !this.#unanswered
    // A transaction whose connection was lost never committed: a callback that swallowed the
    // error and returned must not be told it did.
    const { error, confirmed } = known
      ? await this.#end(client, failed)
      : { error: this.#began && !this.#ended && this.kind === 'transaction' ? lostError() : undefined, confirmed: false }
    const back = this.#giveBack(client, confirmed && !destroy)
    if (back !== undefined) await back
    if (error !== undefined && !failed) throw error
  }

  /**
   * Ends the transaction this scope opened, or undoes the session state. `confirmed`: the
   * statements that restore a clean state succeeded (the status still has the last word).
   * `error`: what the caller must see if its callback succeeded. Never rejects.
   */
  async #end(client: PgClientLike, failed: boolean): Promise<{ error?: unknown; confirmed: boolean }> {
    switch (this.kind) {
      case 'session':
        return this.#endSession(client)
      case 'client':
        // Autocommit statements carried their reset, and COMMIT its own. A transaction the caller
        // left open is rolled back, which undoes everything it wrote.
        if (this.#status === 'I') return { confirmed: true }
        return this.#confirm(await this.#exec(client, 'ROLLBACK'))
      default:
        return this.#endTransaction(client, failed)
    }
  }

  async #endTransaction(client: PgClientLike, failed: boolean): Promise<{ error?: unknown; confirmed: boolean }> {
    if (!this.#began || this.#ended) return { confirmed: true }
    if (this.#applyError !== undefined) {
      // The tenant was never applied: nothing in this transaction may be kept.
      return { error: this.#applyError, confirmed: (await this.#exec(client, 'ROLLBACK')).error === undefined }
    }
    if (failed || this.#status === 'E') {
      const end = await this.#exec(client, 'ROLLBACK')
      // The callback returned, but an error it caught had aborted the transaction: nothing was saved.
      const error = !failed ? new TransactionAbortedError() : undefined
      return { error, confirmed: end.error === undefined }
    }
    // COMMIT, then the reset of whatever the transaction wrote at session level: one round trip.
    const end = await this.#exec(client, 'COMMIT', [this.#reset()])
    if (end.error !== undefined) {
      // e.g. a deferred constraint: PostgreSQL rolled back, and what the transaction set went with
      // it; the status of the answer decides reuse. The caller sees the error unchanged.
      return { error: end.error, confirmed: true }
    }
    return { confirmed: true }
  }

  async #endSession(client: PgClientLike): Promise<{ error?: unknown; confirmed: boolean }> {
    // A transaction the caller opened and left open cannot be confirmed clean: the client is
    // destroyed, which discards it. Checked when the reset is about to be written.
    const leftOpen = () =>
      this.#status === 'I'
        ? undefined
        : new TransactionAbortedError('a transaction was left open in a session scope; it was discarded with its connection')
    // One trip: the reset, then the backend's pid, which must be the one that took the settings.
    const reset = await this.#exec(client, 'select pg_backend_pid()::text as pid', [], leftOpen, [this.#reset()])
    if (reset.error instanceof TransactionAbortedError) return { error: reset.error, confirmed: false }
    if (reset.error !== undefined) return { confirmed: false }
    if (this.#applied && this.#applyError === undefined && reset.result?.rows[0]?.pid !== this.#sessionPid) {
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

  #confirm(answer: { error?: unknown }): { error?: unknown; confirmed: boolean } {
    return { confirmed: answer.error === undefined }
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
      : uncleanVerdict({
          broken: this.#broken,
          unanswered: this.#unanswered,
          idle: this.#status === 'I',
          requested: this.#destroyRequested,
        })
    this.#hand(client, verdict, false)
    return undefined
  }

  #hand(client: PgClientLike, verdict: ReleaseVerdict, checked: boolean): void {
    if (this.#handed) return // a client goes back once, whatever called twice
    this.#handed = true
    client.removeListener('error', this.#onError)
    this.#stopForwarding(client)
    this.#trace.returned(verdict, checked)
    client.release(verdict.release ? undefined : true)
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
    return releaseVerdict(names, answer, this.#status, this.#broken || this.#unanswered)
  }

  async #exec(
    client: PgClientLike,
    statement: string | QueryConfigLike,
    suffix: PrefixStatement[] = [],
    guard?: () => Error | undefined,
    prefix: PrefixStatement[] = [],
  ): Promise<{ result?: QueryResultLike; error?: unknown }> {
    const config = typeof statement === 'string' ? { text: statement } : statement
    const query = new TenantQuery(
      this.#queryClass,
      config,
      prefix,
      {
        guard,
        status: (status) => {
          this.#status = status
        },
      },
      suffix,
    )
    client.query(query)
    try {
      return { result: await this.#answer(query) }
    } catch (error) {
      return { error }
    }
  }
}

function refusalMessage(kind: ScopeKind, control: TransactionControl, several: boolean): string {
  if (control === 'prepare') return 'PREPARE TRANSACTION is refused in a tenant scope: it would park the transaction and its tenant'
  if (several) {
    return 'transaction control inside a text of several statements is refused: send BEGIN, COMMIT and ROLLBACK as statements of their own'
  }
  switch (kind) {
    case 'single':
      return (
        'a lone query runs in a transaction of its own, so BEGIN, COMMIT, ROLLBACK and SAVEPOINT cannot mean anything ' +
        'there: use db.transaction() or withTenant(), or db.pool.connect() for a client that keeps its transaction'
      )
    case 'transaction':
      return (
        "inside withTenant the scope is one transaction, and this statement would end it and run what follows without the tenant: " +
        'use db.transaction() for a nested transaction (a SAVEPOINT)'
      )
    default:
      return 'COMMIT AND CHAIN / ROLLBACK AND CHAIN are refused: send COMMIT (or ROLLBACK), then BEGIN'
  }
}

function endedError(): ScopeClosedError {
  return new ScopeClosedError(
    "this scope's transaction was ended by a statement the scope did not send, so nothing more runs through it; " +
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
