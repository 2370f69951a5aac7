/**
 * The release canary (`verifyRelease`): one extra statement, sent just before a client that was
 * judged clean goes back to the pool, that asks the server whether it really is clean.
 *
 * It checks, in one round trip: the role is the login role (`current_user = session_user`), every
 * setting the scope wrote (and the pool's tenant setting) reads empty, and the ReadyForQuery that
 * answers it says idle (no transaction open). It cannot see other session state the application's
 * own statements may have left (temporary tables, prepared statements, other settings).
 *
 * Nothing here talks to a database: the scope sends the statement through its own pipeline, so the
 * transaction status stays tracked, and hands the answer back to {@link releaseVerdict}.
 */
import type { QueryConfigLike, QueryResultLike } from '../driver/index.js'
import type { TransactionStatus } from '../driver/index.js'
import type { ResolvedTenant } from '../tenant.js'

/**
 * What the release canary found on a client it then destroyed: the state a clean client never has.
 *
 * @example
 * ```ts
 * import diagnostics from 'node:diagnostics_channel'
 * diagnostics.subscribe('pg-tenant:destroy', (message) => {
 *   const { reason, dirty } = message as DestroyMessage
 *   if (reason === 'dirty') console.error('pg-tenant destroyed a dirty client', dirty)
 * })
 * ```
 */
export interface DirtyClient {
  /** `current_user` when checked; differs from `sessionUser` when a role was left set. */
  readonly currentUser: string | undefined
  /** `session_user`: the login role. */
  readonly sessionUser: string | undefined
  /** The transaction status the check's ReadyForQuery carried (`'I'` when idle). */
  readonly transactionStatus: TransactionStatus | undefined
  /** The settings that were not empty, by name, with the value they held. */
  readonly settings: Readonly<Record<string, string>>
  /** One line per problem found, for logs. */
  readonly problems: readonly string[]
}

/** What `Scope` does with a client it is done with. */
export type ReleaseVerdict =
  | { readonly release: true; readonly verified: boolean }
  | {
      readonly release: false
      readonly reason: DestroyReason
      readonly dirty?: DirtyClient
      readonly error?: unknown
    }

/**
 * Why a client was destroyed rather than released (`DestroyMessage.reason`, the keys of
 * `db.stats().destroyedBy`):
 *
 * - `'broken'`: its socket reported an error (a terminated backend, a network failure);
 * - `'unanswered'`: a statement was written and never answered (`query_timeout`, a lost socket);
 * - `'not-idle'`: the last ReadyForQuery said a transaction was still open;
 * - `'unconfirmed'`: the statements that restore a clean state (COMMIT, ROLLBACK, RESET) failed,
 *   or a transaction pooler moved a session scope between backends;
 * - `'dirty'`: the release canary (`verifyRelease`) found tenant state on it;
 * - `'check-failed'`: the release canary itself failed (its connection died, say), so the client
 *   could not be confirmed clean;
 * - `'requested'`: the caller released a `db.pool.connect()` client with an error
 *   (`client.release(err)`), which destroys it, as pg does.
 *
 * @example
 * ```ts
 * const reason: DestroyReason = 'dirty'
 * console.log(db.stats().destroyedBy[reason]) // clients the release canary found dirty
 * ```
 */
export type DestroyReason = 'broken' | 'unanswered' | 'not-idle' | 'unconfirmed' | 'dirty' | 'check-failed' | 'requested'

/**
 * The names the canary reads: every setting the tenant wrote and every setting the pool writes
 * (a session-level value of one on an idle client is tenant state, whoever wrote it), once each.
 * GUC names are case-insensitive.
 */
export function settingsToCheck(tenant: ResolvedTenant, poolSettings: readonly string[]): string[] {
  const names: string[] = []
  const seen = new Set<string>()
  for (const name of [...tenant.settings.map(([n]) => n), ...poolSettings]) {
    const key = name.toLowerCase()
    if (seen.has(key)) continue
    seen.add(key)
    names.push(name)
  }
  return names
}

/**
 * The canary statement: `select current_user, session_user, current_setting($1, true), ...` with
 * rows as arrays, setting names as bind parameters.
 */
export function releaseCheck(names: readonly string[]): QueryConfigLike {
  const reads = names.map((_, i) => `, current_setting($${i + 1}, true)`).join('')
  return {
    text: `select current_user::text, session_user::text${reads}`,
    values: names,
    rowMode: 'array',
  }
}

/**
 * Judges the canary's answer. `status` is the transaction status after the check; `lost`: the
 * connection failed or left the check unanswered.
 */
export function releaseVerdict(
  names: readonly string[],
  answer: { result?: QueryResultLike; error?: unknown },
  status: TransactionStatus | undefined,
  lost: boolean,
): ReleaseVerdict {
  const row = answer.result?.rows[0] as unknown[] | undefined
  if (answer.error !== undefined || lost || row === undefined) {
    return { release: false, reason: 'check-failed', error: answer.error }
  }
  const problems: string[] = []
  const currentUser = asText(row[0])
  const sessionUser = asText(row[1])
  if (currentUser === undefined || currentUser !== sessionUser) {
    problems.push(`current_user is ${currentUser} but session_user is ${sessionUser}`)
  }
  if (status !== 'I') problems.push(`transaction status is ${status ?? 'unknown'}, not idle`)
  const settings: Record<string, string> = {}
  names.forEach((name, i) => {
    const value = row[i + 2]
    if (value !== null && value !== undefined && value !== '') {
      settings[name] = String(value)
      problems.push(`setting ${name} is ${JSON.stringify(String(value))}`)
    }
  })
  if (problems.length === 0) return { release: true, verified: true }
  return {
    release: false,
    reason: 'dirty',
    dirty: { currentUser, sessionUser, transactionStatus: status, settings, problems },
  }
}

function asText(value: unknown): string | undefined {
  return typeof value === 'string' ? value : undefined
}
