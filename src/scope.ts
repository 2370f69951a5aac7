/**
 * One tenant scope: at most one pooled client, taken lazily on the first query, and the security
 * code that decides whether that client may go back to the pool.
 *
 * A client is returned with `release()` only when its state is confirmed clean: no transaction open
 * (`getTransactionStatus() === 'I'`, or, where the driver cannot say, the COMMIT/ROLLBACK/RESET we
 * sent succeeded), no socket error seen, and (scope `session`) RESET ROLE plus a RESET of every
 * setting written. Anything else destroys it with `release(true)`.
 */
import type { PgClientLike, PgPoolLike, QueryConfigLike, QueryResultLike } from './driver.js'
import { RoleSwitchError, ScopeClosedError, TransactionAbortedError } from './errors.js'
import { applyStatement, resetStatement, type ResolvedTenant } from './tenant.js'

/**
 * `'transaction'`: the scope is one transaction and settings are `set_config(..., true)`, gone when
 * it ends. `'session'`: settings and role are set on checkout and reset before release; queries run
 * in autocommit. Needs session pooling behind PgBouncer.
 */
export type ScopeMode = 'transaction' | 'session'

type TransactionStatus = 'I' | 'T' | 'E' | undefined

/** The status of the last ReadyForQuery, or `undefined` where the driver cannot tell. */
export function transactionStatus(client: PgClientLike): TransactionStatus {
  const status = client.getTransactionStatus?.()
  return status === 'I' || status === 'T' || status === 'E' ? status : undefined
}

// SQLSTATEs PostgreSQL raises when `set_config('role', ...)` is refused: no such role (22023,
// "invalid value for parameter role"; 42704 from SET ROLE), not a member (42501).
const ROLE_REFUSED = new Set(['42704', '42501', '22023'])
// "current transaction is aborted, commands ignored until end of transaction block"
const IN_FAILED_TRANSACTION = '25P02'

/** A tenant with nothing to apply: used for the explicit `withoutTenant` opt-out. */
export const NO_TENANT: ResolvedTenant = { input: '', settings: [], role: undefined, key: '[]' }

export class Scope {
  readonly tenant: ResolvedTenant
  readonly mode: ScopeMode
  readonly #pool: PgPoolLike
  #client: Promise<PgClientLike> | undefined
  #closed = false
  #broken = false
  // Scope 'transaction': a statement sent as a query (COMMIT, ROLLBACK) ended the scope's own
  // transaction. Later statements would run with no tenant applied, so they are refused.
  #transactionEnded = false
  #statusStale = false
  readonly #onError = () => {
    this.#broken = true
  }

  constructor(pool: PgPoolLike, tenant: ResolvedTenant, mode: ScopeMode) {
    this.#pool = pool
    this.tenant = tenant
    this.mode = mode
  }

  /** True once the scope began to close: no statement may be sent through it any more. */
  get closed(): boolean {
    return this.#closed
  }

  /** Sends one statement through this scope's client, checking the client out on first use. */
  query(config: QueryConfigLike): Promise<QueryResultLike> {
    if (this.#closed) return Promise.reject(new ScopeClosedError())
    if (this.#transactionEnded) return Promise.reject(endedError())
    return this.#send(config)
  }

  async #send(config: QueryConfigLike): Promise<QueryResultLike> {
    const client = await (this.#client ??= this.#checkout())
    if (this.#statusStale) await this.#refreshStatus(client)
    // Checked again after the wait: a COMMIT queued before this statement may have completed.
    if (this.#transactionEnded) throw endedError()
    let result: QueryResultLike
    try {
      result = await client.query(config)
    } catch (err) {
      // pg rejects on ErrorResponse, before the ReadyForQuery that carries the new transaction
      // status: until a later statement completes, getTransactionStatus() may be stale.
      this.#statusStale = true
      throw err
    }
    this.#noteStatus(client)
    return result
  }

  /** After a successful statement the status is fresh: learn whether the transaction ended. */
  #noteStatus(client: PgClientLike): void {
    this.#statusStale = false
    if (this.mode === 'transaction' && transactionStatus(client) === 'I') this.#transactionEnded = true
  }

  /**
   * An empty query never fails, not even in an aborted transaction, and resolves only after its
   * ReadyForQuery: afterwards the driver's status is current. Costs a round trip, after errors only.
   */
  async #refreshStatus(client: PgClientLike): Promise<void> {
    await client.query('')
    this.#noteStatus(client)
  }

  /**
   * Runs `fn` as a transaction inside this scope: `BEGIN` for the outermost transaction of a
   * session scope, a `SAVEPOINT` otherwise (a transaction scope already is one transaction).
   */
  async transaction<T>(depth: number, fn: () => Promise<T>): Promise<T> {
    const nested = this.mode === 'transaction' || depth > 0
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
    // closing statement, not from a status that may be stale after that error.
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

  async #checkout(): Promise<PgClientLike> {
    const client = await this.#pool.connect()
    // A checked-out client that loses its socket emits 'error'; unhandled, that would crash the
    // process. Seeing one means the client can never be confirmed clean.
    client.on('error', this.#onError)
    const transactional = this.mode === 'transaction'
    try {
      if (transactional) await client.query('BEGIN')
      if (this.tenant.settings.length > 0 || this.tenant.role !== undefined) {
        const apply = applyStatement(this.tenant, transactional)
        await client.query({ text: apply.text, values: apply.values })
      }
    } catch (err) {
      // A failed set_config changed nothing (GUC changes are transactional); a transaction scope
      // still has its BEGIN to roll back.
      let clean = !this.#broken
      if (clean && transactional) clean = await succeeds(client, 'ROLLBACK')
      this.#giveBack(client, clean)
      throw this.#explain(err)
    }
    return client
  }

  #explain(err: unknown): unknown {
    const role = this.tenant.role
    const code = (err as { code?: unknown } | null)?.code
    if (role !== undefined && typeof code === 'string' && ROLE_REFUSED.has(code)) {
      return new RoleSwitchError(role, err)
    }
    return err
  }

  /**
   * Ends the scope. `failed`: the scope's callback threw, so its work is rolled back. Resolves with
   * nothing, or rejects with what the caller must see when the callback itself succeeded: the
   * COMMIT's error (unchanged from PostgreSQL) or a TransactionAbortedError.
   */
  async close(failed: boolean): Promise<void> {
    this.#closed = true
    if (this.#client === undefined) return
    let client: PgClientLike
    try {
      client = await this.#client
    } catch {
      return // the checkout failed and already gave its client back
    }
    const { error, confirmed } = this.#broken ? { error: undefined, confirmed: false } : await this.#end(client, failed)
    const status = transactionStatus(client)
    // Both must hold: our restoring statements succeeded, and the driver (where it can tell) saw
    // the connection leave every transaction.
    const clean = !this.#broken && confirmed && (status === undefined || status === 'I')
    this.#giveBack(client, clean)
    if (error !== undefined && !failed) throw error
  }

  /**
   * Ends the transaction (scope 'transaction') or undoes the session state (scope 'session').
   * `confirmed`: the state is clean once the connection is idle. `error`: what the caller
   * must see if its callback succeeded. Never rejects.
   */
  async #end(client: PgClientLike, failed: boolean): Promise<{ error?: unknown; confirmed: boolean }> {
    if (this.mode === 'transaction') {
      if (this.#transactionEnded) return { confirmed: true }
      if (failed) return { confirmed: await succeeds(client, 'ROLLBACK') }
      try {
        const done = await client.query('COMMIT')
        // COMMIT of a transaction aborted by an error the callback caught answers ROLLBACK.
        return done.command === 'ROLLBACK'
          ? { error: new TransactionAbortedError(), confirmed: true }
          : { confirmed: true }
      } catch (err) {
        // A deferred constraint, say: PostgreSQL has rolled back, and SET LOCAL state went with
        // the transaction. The error reached us before the status did, so a ROLLBACK (a no-op
        // warning when idle) makes the status current before it decides reuse. Where the driver
        // cannot report a status, nothing confirms the client. The caller sees the error unchanged.
        const confirmed = (await succeeds(client, 'ROLLBACK')) && transactionStatus(client) !== undefined
        return { error: err, confirmed }
      }
    }
    if (this.#statusStale && !(await succeeds(client, ''))) return { confirmed: false }
    const status = transactionStatus(client)
    if (status === 'T' || status === 'E') {
      // A transaction the caller opened and left open: its state cannot be confirmed, so the
      // client is destroyed, which discards the transaction.
      const error = new TransactionAbortedError(
        'a transaction was left open in a session scope; it was discarded with its connection',
      )
      return { error, confirmed: false }
    }
    if (this.tenant.settings.length === 0 && this.tenant.role === undefined) return { confirmed: true }
    const reset = resetStatement(this.tenant)
    // Without a status from the driver, end any transaction the caller left open first.
    return { confirmed: await succeeds(client, status === undefined ? `ROLLBACK; ${reset}` : reset) }
  }

  #giveBack(client: PgClientLike, clean: boolean): void {
    client.removeListener('error', this.#onError)
    client.release(clean ? undefined : true)
  }
}

function endedError(): ScopeClosedError {
  return new ScopeClosedError(
    "this scope's transaction was ended by a COMMIT or ROLLBACK sent as a query; " +
      'use db.transaction() for nested transactions',
  )
}

async function succeeds(client: PgClientLike, text: string): Promise<boolean> {
  try {
    await client.query(text)
    return true
  } catch {
    return false
  }
}
