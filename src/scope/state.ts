/**
 * The state of one scope, written down in one place, and every decision that depends only on it:
 * which statements may be sent, what rides in front of and behind each one, how the scope ends,
 * and whether its client may go back to the pool. Nothing here talks to a database: scope.ts does
 * the I/O and reports what the server said (`answered`, `sawFatal`, ...).
 *
 * A scope's life (its `phase`):
 *
 * ```
 * idle ──► acquiring ──► open ──► ending ──► released
 *   │          │                     └─────► destroyed
 *   └──────────┴──► closed   (ended without ever holding a client)
 * ```
 *
 * Beside the phase, what the server reported (the transaction status of the last ReadyForQuery, a
 * broken socket, a statement left unanswered) and what the scope did in the current transaction
 * (sent BEGIN, applied the tenant) decide each statement's plan and the release.
 */
import { asError, InternalError, InvalidQueryError, ScopeClosedError, TransactionAbortedError } from '../errors.js'
import type { DestroyReason, ReleaseVerdict } from '../observe/canary.js'
import type { PrefixStatement, TransactionStatus } from '../driver/index.js'
import { findControl, type SqlShape, type TransactionControl } from './sql-shape.js'
import type { ScopeKind } from './kinds.js'

export type { ScopeKind } from './kinds.js'

/** Where a scope is in its life; see the diagram above. */
export type Phase = 'idle' | 'acquiring' | 'open' | 'ending' | 'released' | 'destroyed' | 'closed'

/** The phases each phase may move to. Anything else is a bug, and throws. */
export const TRANSITIONS: Readonly<Record<Phase, readonly Phase[]>> = {
  idle: ['acquiring', 'closed'],
  acquiring: ['open', 'closed'],
  open: ['ending'],
  ending: ['released', 'destroyed'],
  released: [],
  destroyed: [],
  closed: [],
}

/** What a statement carries: `head` is sent alone first, then `prefix` + statement + `suffix`. */
export interface Plan {
  readonly head: readonly PrefixStatement[]
  readonly prefix: readonly PrefixStatement[]
  readonly suffix: readonly PrefixStatement[]
}

/** The statements a scope's plans are made of, built by scope.ts for its tenant and pool. */
export interface StatementSource {
  /** `BEGIN`. */
  readonly begin: PrefixStatement
  /** The tenant's `set_config(..., true)` (none for a tenant with nothing to apply). */
  applyLocal(): readonly PrefixStatement[]
  /** The tenant's `set_config(..., false)` with `pg_backend_pid()` last, for scope `session`. */
  applySession(): readonly PrefixStatement[]
  /** Prefix and suffix of a single-trip autocommit statement: tenant, statement, reset. */
  singleTrip(): { prefix: readonly PrefixStatement[]; suffix: readonly PrefixStatement[] }
  /** The reset of the role and every setting the pool writes, sent after a COMMIT. */
  reset(): PrefixStatement
}

/** How a scope ends, decided from its state (see {@link ScopeState.ending}). */
export type Ending =
  /** Nothing to send: the connection is idle (the release decision still checks). */
  | { readonly send: 'nothing' }
  /** ROLLBACK. `error`: what the caller must see, if its callback had succeeded. */
  | { readonly send: 'rollback'; readonly error?: unknown }
  /** COMMIT with the reset behind it, in one round trip. */
  | { readonly send: 'commit' }
  /** The session reset, with a check that the backend is the one that took the settings. */
  | { readonly send: 'session-reset' }
  /** The connection's state is unknown (broken, unanswered, or the caller asked): destroy it. */
  | { readonly send: 'abandon'; readonly error?: unknown }

const NOTHING: Plan = { head: [], prefix: [], suffix: [] }

// Transaction control each kind refuses before anything is sent (see sql-shape.ts).
const ALL_CONTROL = new Set<TransactionControl>(['begin', 'commit', 'rollback', 'chain', 'prepare', 'set-transaction', 'savepoint'])
const ENDS_OR_STARTS = new Set<TransactionControl>(['begin', 'commit', 'rollback', 'chain', 'prepare'])
const REFUSED: Readonly<Record<ScopeKind, ReadonlySet<TransactionControl>>> = {
  single: ALL_CONTROL,
  transaction: ENDS_OR_STARTS,
  session: new Set(['prepare']),
  client: new Set(['chain', 'prepare']),
}

export class ScopeState {
  readonly kind: ScopeKind
  #phase: Phase = 'idle'
  /** No statement may be issued any more (the scope began to close, or the caller released it). */
  closing = false
  // --- what the server said
  /** The status of the last ReadyForQuery; 'I' for a fresh checkout (pg-pool hands out idle clients). */
  status: TransactionStatus = 'I'
  /** The socket reported an error, or the server ended the session (FATAL). */
  broken = false
  /** A statement was written but never answered (query_timeout, lost socket): state unknown. */
  unanswered = false
  /** What showed the connection lost (the socket's error, a FATAL, a query_timeout), for `cause`. */
  lossCause: unknown
  // --- what the scope did
  /** The tenant could not be applied: the scope refuses everything (all kinds but client). */
  applyError: unknown
  /** This scope sent BEGIN: its transaction is its to end (transaction and single kinds, a client's cursor). */
  began = false
  /** The tenant is in force: in the current transaction, or (kind session) in the session. */
  applied = false
  /** Kind transaction: its transaction ended without this scope ending it. Everything is refused. */
  ended = false
  /** A caller's submittable (a cursor) holds the connection. */
  streaming = false
  /** The caller released its client with an error: destroy it, as pg does. */
  destroyRequested = false

  constructor(kind: ScopeKind) {
    this.kind = kind
  }

  get phase(): Phase {
    return this.#phase
  }

  /** Moves to `next`; a move the diagram does not allow is a bug in pg-tenant, and throws. */
  to(next: Phase): void {
    if (!TRANSITIONS[this.#phase].includes(next)) {
      throw new InternalError(`a scope cannot go from ${this.#phase} to ${next}`)
    }
    this.#phase = next
  }

  /** Whether a failed tenant statement stops the whole scope (it does, but for a client). */
  get stickyApply(): boolean {
    return this.kind !== 'client'
  }

  // -------------------------------------------------------------------------------------------
  // What the server said

  /** A ReadyForQuery arrived with `status`. */
  answered(status: TransactionStatus): void {
    this.status = status
    if (status !== 'I') return
    // The transaction ended: so did the tenant applied in it.
    if (this.kind === 'client') this.applied = false
    else if (this.kind === 'transaction' && this.began && !this.closing) this.ended = true
  }

  /** A statement was written and no answer came (query_timeout, a dropped socket): `error` says how. */
  sawUnanswered(error?: unknown): void {
    this.unanswered = true
    this.lossCause ??= error
  }

  /** The socket failed (`error`), or the server ended the session. */
  sawBroken(error?: unknown): void {
    this.broken = true
    this.lossCause ??= error
  }

  /** The tenant's statements failed with `error` (already explained, e.g. as a RoleSwitchError). */
  applyFailed(error: unknown, sticky: boolean): void {
    if (sticky) this.applyError = error
    else if (this.kind === 'client') this.applied = false
  }

  // -------------------------------------------------------------------------------------------
  // Statements

  /**
   * Why nothing may be sent through this scope now, if anything. `issued`: the statement is being
   * issued (a statement issued before the scope began to close still runs).
   */
  refusal(issued: boolean): unknown {
    if (issued && this.closing) return new ScopeClosedError()
    if (this.applyError !== undefined) return this.applyError
    if (this.ended) return endedError()
    return undefined
  }

  /** Transaction control this kind of scope cannot let through, refused before anything is sent. */
  refuseControl(shape: SqlShape): InvalidQueryError | undefined {
    let control = findControl(shape, REFUSED[this.kind])
    if (control === undefined && shape.several && this.kind === 'client') control = findControl(shape, ENDS_OR_STARTS)
    if (control === undefined) return undefined
    return new InvalidQueryError(refusalMessage(this.kind, control, shape.several))
  }

  /** Checked when a statement is about to be written: the status is current then. */
  guard(): Error | undefined {
    if (this.applyError !== undefined) return asError(this.applyError)
    if (this.ended) return endedError()
    return undefined
  }

  /**
   * Several statements in one text, outside a transaction (a lone query, or a client in
   * autocommit): they run in a transaction of their own, opened and ended by the scope.
   */
  runsSeveralAlone(shape: SqlShape): boolean {
    return shape.several && (this.kind === 'single' || (this.kind === 'client' && this.status === 'I'))
  }

  /** What the next statement carries, from the kind of scope and the current transaction status. */
  plan(shape: SqlShape, statements: StatementSource): Plan {
    const control = shape.several ? undefined : shape.controls[0]
    let plan: Plan
    switch (this.kind) {
      case 'session':
        if (this.applied) return NOTHING
        this.applied = true
        return { head: statements.applySession(), prefix: [], suffix: [] }
      case 'client':
        plan = this.#planClient(control, statements)
        break
      default:
        plan = this.#planTransaction(control, statements) // 'single' here: a cursor, in a transaction
    }
    // Several statements cannot be parsed with others: whatever goes in front goes alone first.
    if (shape.several && plan.prefix.length > 0) return { head: plan.prefix, prefix: [], suffix: plan.suffix }
    return plan
  }

  #planTransaction(control: TransactionControl | undefined, statements: StatementSource): Plan {
    const prefix: PrefixStatement[] = []
    if (!this.began) {
      this.began = true
      prefix.push(statements.begin)
    }
    // SET TRANSACTION must come before the transaction's first query, and set_config is one.
    if (!this.applied && control !== 'set-transaction') {
      prefix.push(...statements.applyLocal())
      this.applied = true
    }
    return { head: [], prefix, suffix: [] }
  }

  #planClient(control: TransactionControl | undefined, statements: StatementSource): Plan {
    if (this.status === 'I') {
      // Transaction control goes as it is: BEGIN opens the caller's transaction, and the tenant
      // rides with its first statement.
      if (control !== undefined) return NOTHING
      return { head: [], ...statements.singleTrip() }
    }
    // In a transaction: COMMIT carries the reset (what the transaction wrote at session level
    // persists past it); ROLLBACK undoes everything by itself.
    if (control === 'commit') return { head: [], prefix: [], suffix: [statements.reset()] }
    if (this.status === 'E' || this.applied) return NOTHING
    if (control === 'begin' || control === 'set-transaction' || control === 'rollback') return NOTHING
    this.applied = true
    return { head: [], prefix: statements.applyLocal(), suffix: [] }
  }

  /** A caller's submittable needs the tenant applied in a transaction before it starts: its head. */
  planSubmittable(statements: StatementSource): readonly PrefixStatement[] {
    switch (this.kind) {
      case 'session':
        return this.plan({ several: false, controls: [undefined] }, statements).head
      case 'client':
        if (this.status === 'I') {
          // The client's own cursor transaction, ended when the cursor is done (streamEnded).
          this.began = true
          this.applied = true
          return [statements.begin, ...statements.applyLocal()]
        }
        return this.#planClient(undefined, statements).prefix
      default:
        return this.#planTransaction(undefined, statements).prefix
    }
  }

  /**
   * A client's cursor is done (or could not start): whether the transaction opened for it must be
   * ended now (by {@link ScopeState.ownTransactionEnd}).
   */
  cursorTransactionDone(): boolean {
    if (this.kind !== 'client' || !this.began) return false
    this.began = false
    return true
  }

  /**
   * How to end a transaction the scope opened for the caller's autocommit work (several
   * statements, a client's cursor): COMMIT with the reset when intact, ROLLBACK when aborted,
   * nothing when it is over or the connection cannot be trusted.
   */
  ownTransactionEnd(): 'commit' | 'rollback' | 'nothing' {
    if (this.broken || this.unanswered || this.status === 'I') return 'nothing'
    return this.status === 'T' ? 'commit' : 'rollback'
  }

  /**
   * A lone statement refused because the server lacked (or already had) the prepared tenant
   * statement: nothing ran, so it may be sent again, unnamed, on a connection known clean and idle.
   */
  canResend(refused: { preparedRefused: boolean; suffixFailed: boolean }): boolean {
    return refused.preparedRefused && !refused.suffixFailed && !this.broken && !this.unanswered && this.status === 'I'
  }

  // -------------------------------------------------------------------------------------------
  // The end

  /**
   * How the scope ends. `failed`: its callback threw (or the caller released its client with an
   * error), so its work is rolled back.
   */
  ending(failed: boolean): Ending {
    if (this.destroyRequested || this.streaming || this.broken || this.unanswered) {
      // A transaction whose connection was lost never committed: a callback that swallowed the
      // error and returned must not be told it did.
      const lost = this.kind === 'transaction' && this.began && !this.ended && !this.destroyRequested
      return lost ? { send: 'abandon', error: lostError(this.lossCause) } : { send: 'abandon' }
    }
    switch (this.kind) {
      case 'session':
        return { send: 'session-reset' }
      case 'client':
        // Autocommit statements carried their reset, and COMMIT its own. A transaction the caller
        // left open is rolled back, which undoes everything it wrote.
        return this.status === 'I' ? { send: 'nothing' } : { send: 'rollback' }
      default:
        if (!this.began || this.ended) return { send: 'nothing' }
        // The tenant was never applied: nothing in this transaction may be kept.
        if (this.applyError !== undefined) return { send: 'rollback', error: this.applyError }
        // The callback returned, but an error it caught had aborted the transaction: nothing saved.
        if (this.status === 'E' && !failed) return { send: 'rollback', error: new TransactionAbortedError() }
        return failed || this.status === 'E' ? { send: 'rollback' } : { send: 'commit' }
    }
  }

  /**
   * The one decision on a client the scope is done with: release it, or destroy it, and why.
   * `confirmed`: the statements that restore a clean state succeeded. Clean also means: no socket
   * error, no statement unanswered, the last ReadyForQuery idle, and the caller did not ask to
   * destroy it. (The release canary, when it runs, has the last word on a clean one.)
   */
  verdict(confirmed: boolean): ReleaseVerdict {
    if (confirmed && !this.destroyRequested && !this.broken && !this.unanswered && this.status === 'I') {
      return { release: true, verified: false }
    }
    const reason: DestroyReason = this.destroyRequested
      ? 'requested'
      : this.broken
        ? 'broken'
        : this.unanswered
          ? 'unanswered'
          : this.status !== 'I'
            ? 'not-idle'
            : 'unconfirmed'
    return { release: false, reason }
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
        'inside withTenant the scope is one transaction, and this statement would end it and run what follows without the tenant: ' +
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

function lostError(cause: unknown): TransactionAbortedError {
  return new TransactionAbortedError(
    'the connection was lost (or a statement went unanswered) before COMMIT: the transaction was not committed',
    { cause },
  )
}
