/**
 * The single-trip submittable. In the extended query protocol, every Parse/Bind/Execute before one
 * Sync runs in one implicit transaction, and `set_config(name, value, true)` lasts until that
 * transaction ends. So `TenantQuery` writes the tenant's statements (and `BEGIN` when it opens a
 * scope's transaction) followed by the caller's statement, then the statements that reset any
 * session-level state the caller's statement may have written (the suffix), and exactly one Sync:
 * one round trip, tenant applied, nothing left on the connection after a lone query.
 *
 * Protocol facts it respects:
 * - exactly one Sync per submittable;
 * - every bind value is computed before anything is written (a throw mid-write would wedge the
 *   client), by recording what pg's own Query would write, then replaying it;
 * - nothing is written from `handleError`;
 * - the transaction status of every ReadyForQuery is recorded on the connection by one listener,
 *   prepended once per connection, so a query that completes reads the status it was answered
 *   with (pg itself keeps it only in recent versions);
 * - pg drops the active query on ErrorResponse, so the ReadyForQuery that follows does not reach it:
 *   on a server error this class listens for that ReadyForQuery on the connection itself
 *   (prepended, so it runs before the client's handler starts the next query), learns the
 *   transaction status from it, and only then settles the error;
 * - results are told apart by counting CommandComplete messages.
 */
import {
  BEFORE_SYNC,
  hookSync,
  parseNamed,
  preparedOn,
  STATUS,
  trackStatus,
  writeStatements,
  type ConnectionLike,
  type TransactionStatus,
} from './connection.js'
import { asError, InternalError } from '../errors.js'
import type { PrefixStatement } from './statements.js'
import type { QueryConfigLike, QueryResultLike } from './types.js'

// SQLSTATEs of a prepared prefix the server does not have (26000: "prepared statement does not
// exist", after DISCARD ALL or behind a transaction pooler that switched server connections) or
// already has (42P05: another client prepared it on a pooled server connection).
const PREPARED_REFUSED = new Set(['26000', '42P05'])

/** pg's Query: it parses rows with the query's (or the client's) type parsers. */
interface PgQueryLike {
  name?: string | undefined
  binary?: boolean
  _result?: { _types?: unknown } | undefined
  callback?: ((err: Error | null, result?: unknown) => void) | undefined
  submit(connection: unknown): Error | null | undefined
  handleRowDescription(msg: unknown): void
  handleDataRow(msg: unknown): void
  handleCommandComplete(msg: unknown, connection: unknown): void
  handleEmptyQuery(connection: unknown): void
  handleError(err: unknown, connection: unknown): void
  handleReadyForQuery(connection: unknown): void
  handlePortalSuspended(connection: unknown): void
  handleCopyInResponse(connection: unknown): void
  handleCopyData(msg: unknown, connection: unknown): void
}

/** The constructor of pg's Query, as `pg.Client.Query` exposes it. */
export type QueryClass = new (config: object | string, values?: readonly unknown[]) => PgQueryLike

/** Hooks through which a scope learns, synchronously, what the connection did. */
export interface TenantQueryHooks {
  /** Called at write time: an error refuses the query, and nothing is written. */
  guard?: () => Error | undefined
  /** A prefix statement failed: returns the error the caller sees. */
  prefixFailed?: (err: unknown) => unknown
  /** The first field of each row a prefix statement returns, as text. */
  prefixRow?: (value: unknown) => void
  /** Every ReadyForQuery this query receives, before the client starts its next query. */
  status?: (status: TransactionStatus) => void
  /** Called once when the query settles, before `done` does: the hot path needs no promise. */
  settled?: (err: Error | null, result?: QueryResultLike) => void
}

type Call = [method: string, args: unknown[]]

/**
 * Stands in for pg's Connection while pg's own Query writes its statement: every call is recorded,
 * bind values already mapped, to be replayed onto the real connection once nothing can throw.
 */
class Recorder {
  readonly calls: Call[] = []
  readonly stream = {}
  readonly parsedStatements: Record<string, string>
  readonly submittedNamedStatements: Record<string, string> | undefined
  // After a prefix, a simple-protocol query must become an extended one: one Sync in all.
  readonly #extended: boolean

  constructor(connection: ConnectionLike, extended: boolean) {
    this.parsedStatements = connection.parsedStatements
    this.submittedNamedStatements = connection.submittedNamedStatements
    this.#extended = extended
  }

  parse(c: unknown): void {
    this.calls.push(['parse', [c]])
  }

  bind(c: { values?: unknown[]; valueMapper?: (v: unknown, i: number) => unknown }): void {
    const map = c.valueMapper
    const values = map ? (c.values ?? []).map((v, i) => map(v, i)) : (c.values ?? [])
    this.calls.push(['bind', [{ ...c, values, valueMapper: undefined }]])
  }

  describe(c: unknown): void {
    this.calls.push(['describe', [c]])
  }

  execute(c: unknown): void {
    this.calls.push(['execute', [c]])
  }

  sync(): void {
    this.calls.push(['sync', []])
  }

  flush(): void {
    this.calls.push(['flush', []])
  }

  close(c: unknown): void {
    this.calls.push(['close', [c]])
  }

  query(text: string): void {
    if (!this.#extended) {
      this.calls.push(['query', [text]])
      return
    }
    this.calls.push(['parse', [{ text }]], ['bind', [{}]], ['describe', [{ type: 'P' }]])
    this.calls.push(['execute', [{}]], ['sync', []])
  }
}

/**
 * A pg submittable: the tenant prefix and one statement of the caller (or none), one Sync.
 * Pass it to `client.query()` and await `done`.
 */
export class TenantQuery {
  /** The status of the ReadyForQuery that answered this query; undefined if none came. */
  status: TransactionStatus | undefined
  /**
   * pg calls this when the query ends, and wraps it for `query_timeout`. Settling goes through it,
   * so a timeout pg raised first is not overridden.
   */
  callback: (err: Error | null, result?: unknown) => void
  readonly #prefix: readonly PrefixStatement[]
  readonly #suffix: readonly PrefixStatement[]
  readonly #inner: PgQueryLike | undefined
  // pg's Query may write onto the connection itself, without a recorder (see #writeDirect).
  #direct = false
  readonly #userName: string | undefined
  readonly #userText: string | undefined
  /** Read by pg's `client.query` to arm its read timeout around this submittable. */
  readonly query_timeout: number | undefined
  readonly #hooks: TenantQueryHooks
  #completes = 0
  // The caller's statement has completed (CommandComplete or EmptyQueryResponse): what follows
  // belongs to the suffix.
  #userDone = false
  #settled = false
  #connection: ConnectionLike | undefined
  #pendingError: unknown
  // The inner query marked its named statement as submitted (sent, ParseComplete pending).
  #markedSubmitted = false
  /**
   * True when a prepared prefix statement was refused by the server (it did not have it, or
   * already had it): nothing of this query ran, and it may be sent again with an unnamed prefix.
   */
  preparedRefused = false
  /**
   * True when a statement of the suffix failed: the caller's statement had run, and was rolled back
   * with the implicit transaction (or the transaction it ran in is now aborted).
   */
  suffixFailed = false
  // How the query settled, for a `done` asked for afterwards.
  #outcome: { err: Error | null; result?: QueryResultLike } | undefined
  #done: Promise<QueryResultLike> | undefined
  #resolve: ((result: QueryResultLike) => void) | undefined
  #reject: ((err: Error) => void) | undefined
  readonly #onReady = (msg: { status?: string }) => this.#ready(msg)
  readonly #onEnd = () => this.#ended()

  constructor(
    QueryClass: QueryClass | undefined,
    config: QueryConfigLike | undefined,
    prefix: readonly PrefixStatement[],
    hooks: TenantQueryHooks = {},
    suffix: readonly PrefixStatement[] = [],
  ) {
    if (config !== undefined && QueryClass === undefined) {
      throw new InternalError('this client cannot run a statement in a pipeline (no pg Query class)')
    }
    this.#prefix = prefix
    this.#suffix = suffix
    this.#hooks = hooks
    this.#userName = config?.name
    this.#userText = config?.text
    this.query_timeout = config?.query_timeout
    this.callback = (err, result) => {
      this.#settled = true
      if (this.#outcome !== undefined) return
      this.#outcome = { err: err ?? null, result: result as QueryResultLike }
      this.#hooks.settled?.(err ?? null, result as QueryResultLike)
      if (err) this.#reject?.(err)
      else this.#resolve?.(result as QueryResultLike)
    }
    if (config !== undefined && QueryClass !== undefined) {
      // Text and values alone take pg's cheap form (no copy of a config object); pg copies a config.
      const plain = isPlain(config)
      const inner = plain ? new QueryClass(config.text, config.values) : new QueryClass(config)
      this.#direct = plain && (prefix.length > 0 || suffix.length > 0) && canWriteDirectly(config.values)
      // The inner query reports to us; we report to pg (through `callback`, which pg may wrap).
      inner.callback = (err, result) => this.#innerDone(err, result)
      this.#inner = inner
    }
  }

  /** Settles with the caller's result, or rejects with its error (after ReadyForQuery). */
  get done(): Promise<QueryResultLike> {
    this.#done ??= new Promise<QueryResultLike>((resolve, reject) => {
      const outcome = this.#outcome
      if (outcome === undefined) {
        this.#resolve = resolve
        this.#reject = reject
      } else if (outcome.err !== null) reject(outcome.err)
      else resolve(outcome.result!)
    })
    return this.#done
  }

  /** Whether anything was written to the connection (false when refused or failed to prepare). */
  get wrote(): boolean {
    return this.#connection !== undefined
  }

  /** The statement's name, shown to pg only once the prefix has completed (see ParseComplete). */
  get name(): string | undefined {
    return this.#completes >= this.#prefix.length ? this.#userName : undefined
  }

  /** The caller's statement: pg records it, with `name`, as parsed on ParseComplete. */
  get text(): string | undefined {
    return this.#userText
  }

  /** pg sets the client's type parsers here when the query has none of its own. */
  get _result(): { _types?: unknown } | undefined {
    return this.#inner?._result
  }

  set binary(value: boolean) {
    if (this.#inner) this.#inner.binary = value
  }

  get binary(): boolean {
    return this.#inner?.binary ?? false
  }

  /** Called by pg when this query's turn comes. Returns an error to refuse without writing. */
  submit(connection: ConnectionLike): Error | null {
    const refused = this.#hooks.guard?.()
    if (refused) return refused
    const recorded = this.#direct ? DIRECT : this.#record(connection)
    if (recorded instanceof Error) return recorded
    trackStatus(connection)
    this.#connection = connection
    connection.stream.cork?.()
    try {
      // Named statements are parsed first, before anything runs: a refusal there (42P05) skips the
      // whole pipeline, and a companion is never left unparsed behind a failing statement.
      const parsed = parseNamed(connection, this.#suffix, parseNamed(connection, this.#prefix, undefined))
      writeStatements(connection, this.#prefix)
      if (recorded === DIRECT) {
        this.#writeDirect(connection)
      } else {
        // An extended-protocol statement ends with its Sync: the suffix goes just before it. A
        // simple-protocol one (only ever sent with no prefix or suffix) ends with its Query.
        const last = recorded.length - 1
        const extended = last < 0 || recorded[last]![0] === 'sync'
        const body = extended ? recorded.slice(0, Math.max(last, 0)) : recorded
        for (const [method, args] of body) {
          ;(connection as unknown as Record<string, (...a: unknown[]) => void>)[method]!(...args)
        }
        if (extended) {
          writeStatements(connection, this.#suffix)
          connection.sync()
        }
      }
    } finally {
      connection.stream.uncork?.()
    }
    return null
  }

  /**
   * Lets pg's Query write its statement straight onto the connection, after the prefix. Only for
   * text and primitive values (see `canWriteDirectly`), where pg's submit cannot fail; if it did
   * anyway, the prefix is on the wire without its Sync, so the socket is destroyed: the client
   * then fails as broken and is never reused.
   */
  #writeDirect(connection: ConnectionLike): void {
    // pg's Query writes its own Sync: the suffix is written just before it, by the connection's
    // `sync` (see beforeSync) during this synchronous call.
    const hooked = connection as ConnectionLike & { [BEFORE_SYNC]?: readonly PrefixStatement[] | undefined }
    if (this.#suffix.length > 0) {
      hookSync(connection)
      hooked[BEFORE_SYNC] = this.#suffix
    }
    let error: Error | undefined
    try {
      error = this.#submitInner(connection)
    } finally {
      if (this.#suffix.length > 0) hooked[BEFORE_SYNC] = undefined
    }
    if (error === undefined) return
    ;(connection.stream as { destroy?: (err?: Error) => void }).destroy?.()
    this.#finish(error)
  }

  /**
   * Runs pg's Query `submit` against `target` (the connection, or a recorder) and returns what it
   * failed with: pg returns some failures, throws others, and reports bind errors through the
   * query's callback, which is swapped for the duration.
   */
  #submitInner(target: unknown): Error | undefined {
    const inner = this.#inner!
    let failure: unknown
    const callback = inner.callback
    inner.callback = (err) => {
      failure = err ?? new InternalError('the query ended while it was being written')
    }
    let returned: Error | null | undefined
    try {
      returned = inner.submit(target)
    } catch (err) {
      failure = err
    } finally {
      inner.callback = callback
    }
    const error = returned ?? failure
    if (error === undefined || error === null) return undefined
    return asError(error, 'writing the query failed with a non-Error value')
  }

  /**
   * Runs the inner query's `submit` against a recorder, so that preparing bind values (where a
   * value's `toPostgres` may throw) happens before anything reaches the socket. A simple-protocol
   * query (no parameters) becomes an extended one when a prefix precedes it.
   */
  #record(connection: ConnectionLike): Call[] | Error {
    if (this.#inner === undefined) return []
    const submitted = connection.submittedNamedStatements
    const name = this.#userName
    const hadSubmitted = name !== undefined && submitted !== undefined && name in submitted
    const recorder = new Recorder(connection, this.#prefix.length > 0 || this.#suffix.length > 0)
    const error = this.#submitInner(recorder)
    if (error !== undefined) {
      // Nothing was written: forget a statement name the inner query marked as submitted.
      if (name !== undefined && submitted !== undefined && !hadSubmitted) delete submitted[name]
      return error
    }
    this.#markedSubmitted = name !== undefined && submitted !== undefined && !hadSubmitted && name in submitted
    return recorder.calls
  }

  handleRowDescription(msg: unknown): void {
    this.#inner?.handleRowDescription(msg)
  }

  handleDataRow(msg: unknown): void {
    // Prefix and suffix are executed without Describe; their rows (set_config's) are not the caller's.
    if (this.#completes < this.#prefix.length) this.#hooks.prefixRow?.((msg as { fields?: unknown[] }).fields?.at(-1))
    else if (!this.#userDone) this.#inner?.handleDataRow(msg)
  }

  handleCommandComplete(msg: unknown, connection: unknown): void {
    const inPrefix = this.#completes < this.#prefix.length
    this.#completes += 1
    if (inPrefix || this.#userDone) return
    // With a suffix, the caller's statement is one Execute: one CommandComplete, then the suffix's.
    // Without one it may be several statements on the simple protocol, each with its own.
    if (this.#suffix.length > 0) this.#userDone = true
    this.#inner?.handleCommandComplete(msg, connection)
  }

  handleEmptyQuery(connection: unknown): void {
    if (this.#completes < this.#prefix.length || this.#userDone) return
    if (this.#suffix.length > 0) this.#userDone = true
    this.#inner?.handleEmptyQuery(connection)
  }

  handlePortalSuspended(connection: unknown): void {
    this.#inner?.handlePortalSuspended(connection)
  }

  handleCopyInResponse(connection: unknown): void {
    this.#inner?.handleCopyInResponse(connection)
  }

  handleCopyData(msg: unknown, connection: unknown): void {
    this.#inner?.handleCopyData(msg, connection)
  }

  /**
   * An ErrorResponse (the ReadyForQuery after it will come to our connection listener), a
   * connection error, a query_timeout, or a refusal returned from `submit`.
   */
  handleError(err: unknown, connection: unknown): void {
    if (this.#settled || this.#pendingError !== undefined) return
    let error = err
    if (this.#completes < this.#prefix.length && this.#connection !== undefined) {
      const code = (err as { code?: unknown } | null)?.code
      const named = [...this.#prefix, ...this.#suffix].filter((statement) => statement.name !== undefined)
      if (named.length > 0 && typeof code === 'string' && PREPARED_REFUSED.has(code)) {
        // Our own optimisation failed, not the tenant (a named statement's Parse or the prefix's
        // Bind was refused): the server skipped everything up to Sync. Parse them all next time.
        const prepared = preparedOn(this.#connection)
        for (const statement of named) prepared.delete(statement.name!)
        this.preparedRefused = true
      } else {
        error = this.#hooks.prefixFailed?.(err) ?? err
      }
      // The server skipped our Parse of a named statement: pg, which sees no name yet, would
      // otherwise believe it submitted and never send its Parse again.
      const submitted = this.#connection.submittedNamedStatements
      if (this.#markedSubmitted && submitted !== undefined) delete submitted[this.#userName!]
    } else if (this.#userDone && this.#connection !== undefined) {
      // A suffix statement failed after the caller's statement had run: that statement was rolled
      // back with its (implicit) transaction. The caller sees this error, never its result.
      this.suffixFailed = true
      const statement = this.#suffix[this.#completes - this.#prefix.length - 1]
      const code = (err as { code?: unknown } | null)?.code
      if (statement?.name !== undefined && typeof code === 'string' && PREPARED_REFUSED.has(code)) {
        preparedOn(this.#connection).delete(statement.name)
        this.preparedRefused = true
      }
    } else if (this.#inner !== undefined && this.#connection !== undefined) {
      // The inner query may substitute a row-parsing error it met earlier.
      const inner = this.#inner
      inner.callback = (e) => {
        error = e ?? err
      }
      inner.handleError(err, connection)
    }
    if (this.#connection === undefined || !isServerError(err)) {
      this.#finish(error) // refused before writing, a dead socket, or a timeout: no ReadyForQuery
      return
    }
    // The ReadyForQuery that follows will not reach this query: listen for it (or for the socket's
    // end) on the connection, ahead of the client, which would start its next query on it.
    this.#pendingError = error
    this.#connection.prependOnceListener('readyForQuery', this.#onReady)
    this.#connection.prependOnceListener('end', this.#onEnd)
  }

  handleReadyForQuery(connection: unknown): void {
    this.#statusIs((connection as { [STATUS]?: string })[STATUS])
    if (this.#inner !== undefined) this.#inner.handleReadyForQuery(connection)
    else this.#finish(null, emptyResult())
  }

  #innerDone(err: Error | null, result: unknown): void {
    this.#finish(err, result)
  }

  #ready(msg: { status?: string }): void {
    this.#statusIs(msg?.status)
    this.#detach()
    if (this.#pendingError !== undefined) this.#finish(this.#pendingError)
  }

  #statusIs(status: string | undefined): void {
    if (status === 'I' || status === 'T' || status === 'E') {
      this.status = status
      this.#hooks.status?.(status)
    }
  }

  #ended(): void {
    this.#detach()
    this.status = undefined
    if (this.#pendingError !== undefined) this.#finish(this.#pendingError)
  }

  #detach(): void {
    if (this.#pendingError === undefined) return // nothing was attached
    this.#connection?.removeListener('readyForQuery', this.#onReady)
    this.#connection?.removeListener('end', this.#onEnd)
  }

  #finish(err: unknown, result?: unknown): void {
    if (this.#settled) return
    this.#settled = true
    if (err !== null && err !== undefined) this.#detach()
    this.callback(err === null || err === undefined ? null : (err as Error), result)
  }
}

/** Replaces the recorded calls when pg's Query writes directly. */
const DIRECT: Call[] = []

/**
 * Whether pg's Query, given these values, takes the extended protocol (some values) and cannot
 * fail while writing: its only preparation step, mapping values, cannot throw for primitives.
 */
function canWriteDirectly(values: readonly unknown[] | undefined): boolean {
  // Not an array: pg refuses it in submit, which the recorder turns into an error before writing.
  if (!Array.isArray(values) || values.length === 0) return false // none: the simple protocol
  for (const value of values) {
    const type = typeof value
    if (value !== null && type !== 'string' && type !== 'number' && type !== 'boolean' && type !== 'bigint') return false
  }
  return true
}

/**
 * Whether preparing these values can run code of the caller's (an object's `toPostgres`): only
 * objects can. Primitive values, or none, run nothing but pg's own conversions.
 */
export function mayRunCallerCode(values: readonly unknown[] | undefined): boolean {
  if (values === undefined) return false
  if (!Array.isArray(values)) return true
  for (const value of values) if (value !== null && (typeof value === 'object' || typeof value === 'function')) return true
  return false
}

/** A config that holds nothing but `text` and `values`. */
function isPlain(config: QueryConfigLike): boolean {
  for (const key in config) if (key !== 'text' && key !== 'values') return false
  return true
}

/** An ErrorResponse from the server (pg's DatabaseError), after which ReadyForQuery follows. */
function isServerError(err: unknown): boolean {
  const e = err as { severity?: unknown; code?: unknown } | null
  // FATAL errors end the session: no ReadyForQuery follows them.
  return typeof e?.code === 'string' && typeof e.severity === 'string' && e.severity !== 'FATAL' && e.severity !== 'PANIC'
}

function emptyResult(): QueryResultLike {
  return { command: '', rowCount: null, rows: [], fields: [] }
}

