/**
 * The single-trip submittable. In the extended query protocol, every Parse/Bind/Execute before one
 * Sync runs in one implicit transaction, and `set_config(name, value, true)` lasts until that
 * transaction ends. So `TenantQuery` writes the tenant's statements (and `BEGIN` when it opens a
 * scope's transaction) followed by the caller's statement and exactly one Sync: one round trip,
 * tenant applied, nothing left on the connection after a lone query.
 *
 * Protocol facts it respects:
 * - exactly one Sync per submittable;
 * - every bind value is computed before anything is written (a throw mid-write would wedge the
 *   client), by recording what pg's own Query would write, then replaying it;
 * - nothing is written from `handleError`;
 * - pg drops the active query on ErrorResponse, so the ReadyForQuery that follows does not reach it:
 *   this class listens for that ReadyForQuery on the connection itself (prepended, so it runs
 *   before the client's handler starts the next query), learns the transaction status from it,
 *   and only then settles an error;
 * - results are told apart by counting CommandComplete messages.
 */
import type { QueryConfigLike, QueryResultLike } from './driver.js'

/** The transaction status a ReadyForQuery carries. */
export type TransactionStatus = 'I' | 'T' | 'E'

/** A statement of the prefix: parsed unnamed, bound with text values, executed, no Describe. */
export interface PrefixStatement {
  readonly text: string
  readonly values: readonly string[]
}

/** What pg's Connection offers a submittable; structural, so no import of pg. */
interface ConnectionLike {
  parse(config: { text: string; name?: string; types?: unknown }): void
  bind(config: Record<string, unknown>): void
  describe(config: { type: string; name?: string }): void
  execute(config: { portal?: string; rows?: number }): void
  sync(): void
  flush(): void
  close(config: { type: string; name?: string }): void
  query(text: string): void
  stream: { cork?: () => void; uncork?: () => void }
  parsedStatements: Record<string, string>
  submittedNamedStatements?: Record<string, string>
  prependOnceListener(event: string, listener: (...args: any[]) => void): unknown
  removeListener(event: string, listener: (...args: any[]) => void): unknown
}

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
export type QueryClass = new (config: object) => PgQueryLike

/** pg's Query class for this client, or undefined when the client is not node-postgres' own. */
export function queryClassOf(client: object): QueryClass | undefined {
  const candidate = (client as { constructor?: { Query?: unknown } }).constructor?.Query
  const pipelineMode = (client as { pipeline?: unknown }).pipeline === true
  return typeof candidate === 'function' && !pipelineMode ? (candidate as QueryClass) : undefined
}

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
}

type Call = [method: string, args: unknown[]]

/**
 * A pg submittable: the tenant prefix and one statement of the caller (or none), one Sync.
 * Pass it to `client.query()` and await `done`.
 */
export class TenantQuery {
  /** Settles with the caller's result, or rejects with its error (after ReadyForQuery). */
  readonly done: Promise<QueryResultLike>
  /** The status of the ReadyForQuery that answered this query; undefined if none came. */
  status: TransactionStatus | undefined
  /**
   * pg calls this when the query ends, and wraps it for `query_timeout`. Settling goes through it,
   * so a timeout pg raised first is not overridden.
   */
  callback: (err: Error | null, result?: unknown) => void
  readonly #prefix: readonly PrefixStatement[]
  readonly #inner: PgQueryLike | undefined
  readonly #userName: string | undefined
  readonly #userText: string | undefined
  /** Read by pg's `client.query` to arm its read timeout around this submittable. */
  readonly query_timeout: number | undefined
  readonly #hooks: TenantQueryHooks
  #completes = 0
  #settled = false
  #connection: ConnectionLike | undefined
  #pendingError: unknown
  // The inner query marked its named statement as submitted (sent, ParseComplete pending).
  #markedSubmitted = false
  readonly #onReady = (msg: { status?: string }) => this.#ready(msg)
  readonly #onEnd = () => this.#ended()

  constructor(
    QueryClass: QueryClass | undefined,
    config: QueryConfigLike | undefined,
    prefix: readonly PrefixStatement[],
    hooks: TenantQueryHooks = {},
  ) {
    if (config !== undefined && QueryClass === undefined) {
      throw new TypeError('pg-tenant: this client cannot run a statement in a pipeline')
    }
    this.#prefix = prefix
    this.#hooks = hooks
    this.#userName = config?.name
    this.#userText = config?.text
    this.query_timeout = config?.query_timeout
    let resolve!: (r: QueryResultLike) => void
    let reject!: (e: unknown) => void
    this.done = new Promise((res, rej) => {
      resolve = res
      reject = rej
    })
    this.callback = (err, result) => {
      this.#settled = true
      if (err) reject(err)
      else resolve(result as QueryResultLike)
    }
    if (config !== undefined && QueryClass !== undefined) {
      const inner = new QueryClass({ ...config })
      // The inner query reports to us; we report to pg (through `callback`, which pg may wrap).
      inner.callback = (err, result) => this.#innerDone(err, result)
      this.#inner = inner
    }
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
    const recorded = this.#record(connection)
    if (recorded instanceof Error) return recorded
    connection.prependOnceListener('readyForQuery', this.#onReady)
    connection.prependOnceListener('end', this.#onEnd)
    this.#connection = connection
    connection.stream.cork?.()
    try {
      for (const statement of this.#prefix) {
        connection.parse({ text: statement.text })
        connection.bind({ values: statement.values })
        connection.execute({})
      }
      if (recorded.length === 0) {
        connection.sync()
      } else {
        for (const [method, args] of recorded) {
          ;(connection as unknown as Record<string, (...a: unknown[]) => void>)[method]!(...args)
        }
      }
    } finally {
      connection.stream.uncork?.()
    }
    return null
  }

  /**
   * Runs the inner query's `submit` against a recorder, so that preparing bind values (where a
   * value's `toPostgres` may throw) happens before anything reaches the socket. A simple-protocol
   * query (no parameters) becomes an extended one when a prefix precedes it.
   */
  #record(connection: ConnectionLike): Call[] | Error {
    const inner = this.#inner
    if (inner === undefined) return []
    const calls: Call[] = []
    const submitted = connection.submittedNamedStatements
    const name = this.#userName
    const hadSubmitted = name !== undefined && submitted !== undefined && name in submitted
    let failure: unknown
    const recorder = {
      parsedStatements: connection.parsedStatements,
      submittedNamedStatements: submitted,
      stream: {},
      parse: (c: unknown) => calls.push(['parse', [c]]),
      bind: (c: { values?: unknown[]; valueMapper?: (v: unknown, i: number) => unknown }) => {
        const map = c.valueMapper
        const values = (c.values ?? []).map((v, i) => (map ? map(v, i) : v))
        calls.push(['bind', [{ ...c, values, valueMapper: undefined }]])
      },
      describe: (c: unknown) => calls.push(['describe', [c]]),
      execute: (c: unknown) => calls.push(['execute', [c]]),
      sync: () => calls.push(['sync', []]),
      flush: () => calls.push(['flush', []]),
      close: (c: unknown) => calls.push(['close', [c]]),
      query: (text: string) => {
        if (this.#prefix.length === 0) calls.push(['query', [text]])
        else {
          calls.push(['parse', [{ text }]], ['bind', [{}]], ['describe', [{ type: 'P' }]])
          calls.push(['execute', [{}]], ['sync', []])
        }
      },
    }
    const callback = inner.callback
    inner.callback = (err) => {
      failure = err ?? new Error('pg-tenant: the query ended while it was being prepared')
    }
    let returned: Error | null | undefined
    try {
      returned = inner.submit(recorder)
    } catch (err) {
      failure = err
    } finally {
      inner.callback = callback
    }
    const error = returned ?? failure
    if (error !== undefined && error !== null) {
      // Nothing was written: forget a statement name the inner query marked as submitted.
      if (name !== undefined && submitted !== undefined && !hadSubmitted) delete submitted[name]
      return error instanceof Error ? error : new Error(String(error))
    }
    this.#markedSubmitted = name !== undefined && submitted !== undefined && !hadSubmitted && name in submitted
    return calls
  }

  handleRowDescription(msg: unknown): void {
    this.#inner?.handleRowDescription(msg)
  }

  handleDataRow(msg: unknown): void {
    // The prefix is executed without Describe; its rows (set_config's) are not the caller's.
    if (this.#completes >= this.#prefix.length) this.#inner?.handleDataRow(msg)
    else this.#hooks.prefixRow?.((msg as { fields?: unknown[] }).fields?.at(-1))
  }

  handleCommandComplete(msg: unknown, connection: unknown): void {
    const inPrefix = this.#completes < this.#prefix.length
    this.#completes += 1
    if (!inPrefix) this.#inner?.handleCommandComplete(msg, connection)
  }

  handleEmptyQuery(connection: unknown): void {
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
      error = this.#hooks.prefixFailed?.(err) ?? err
      // The server skipped our Parse of a named statement: pg, which sees no name yet, would
      // otherwise believe it submitted and never send its Parse again.
      const submitted = this.#connection.submittedNamedStatements
      if (this.#markedSubmitted && submitted !== undefined) delete submitted[this.#userName!]
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
    this.#pendingError = error
  }

  handleReadyForQuery(connection: unknown): void {
    if (this.#inner !== undefined) this.#inner.handleReadyForQuery(connection)
    else this.#finish(null, emptyResult())
  }

  #innerDone(err: Error | null, result: unknown): void {
    this.#finish(err, result)
  }

  #ready(msg: { status?: string }): void {
    const status = msg?.status
    if (status === 'I' || status === 'T' || status === 'E') {
      this.status = status
      this.#hooks.status?.(status)
    }
    this.#detach()
    if (this.#pendingError !== undefined) this.#finish(this.#pendingError)
  }

  #ended(): void {
    this.#detach()
    this.status = undefined
    if (this.#pendingError !== undefined) this.#finish(this.#pendingError)
  }

  #detach(): void {
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

/** An ErrorResponse from the server (pg's DatabaseError), after which ReadyForQuery follows. */
function isServerError(err: unknown): boolean {
  const e = err as { severity?: unknown; code?: unknown } | null
  // FATAL errors end the session: no ReadyForQuery follows them.
  return typeof e?.code === 'string' && typeof e.severity === 'string' && e.severity !== 'FATAL' && e.severity !== 'PANIC'
}

function emptyResult(): QueryResultLike {
  return { command: '', rowCount: null, rows: [], fields: [] }
}
