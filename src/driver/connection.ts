/**
 * What pg-tenant keeps on a pg Connection, and how it writes on it: the named statements it
 * prepared there, the status of the last ReadyForQuery, and the hook that writes a suffix just
 * before pg's own Sync. Everything here is keyed on registered symbols, so that two copies of
 * pg-tenant (its ESM and CJS builds) sharing a connection share what they know about it.
 */
import type { PrefixStatement } from './statements.js'
import { bindAndExecute } from './wire.js'

/** The transaction status a ReadyForQuery carries. */
export type TransactionStatus = 'I' | 'T' | 'E'

/** What pg's Connection offers a submittable; structural, so no import of pg. */
export interface ConnectionLike {
  parse(config: { text: string; name?: string; types?: unknown }): void
  bind(config: Record<string, unknown>): void
  describe(config: { type: string; name?: string }): void
  execute(config: { portal?: string; rows?: number }): void
  sync(): void
  flush(): void
  close(config: { type: string; name?: string }): void
  query(text: string): void
  stream: { cork?: () => void; uncork?: () => void; write?: (chunk: Uint8Array) => boolean; writable?: boolean }
  parsedStatements: Record<string, string>
  submittedNamedStatements?: Record<string, string>
  prependListener(event: string, listener: (...args: any[]) => void): unknown
  prependOnceListener(event: string, listener: (...args: any[]) => void): unknown
  removeListener(event: string, listener: (...args: any[]) => void): unknown
}

/**
 * Parses the named statements of a prefix or suffix that this connection does not hold yet. A
 * statement with a `unit` is parsed exactly when its unit is (in this pipeline, or because the
 * connection does not hold it), and never tracked on its own.
 */
export function parseNamed(
  connection: ConnectionLike,
  statements: readonly PrefixStatement[],
  parsed: Set<string> | undefined,
): Set<string> | undefined {
  for (const statement of statements) {
    const { name, unit } = statement
    if (name === undefined) continue
    const prepared = preparedOn(connection)
    if (unit === undefined ? prepared.has(name) : !parsed?.has(unit) && prepared.has(unit)) continue
    connection.parse({ text: statement.text, name })
    if (unit === undefined) prepared.add(name)
    ;(parsed ??= new Set()).add(name)
  }
  return parsed
}

// Statements to write just before the connection's next Sync, set while pg's own Query writes.
export const BEFORE_SYNC = Symbol.for('pg-tenant.before-sync.v1')

/**
 * Makes the connection's `sync` write the statements set under BEFORE_SYNC first. Installed once
 * per connection (an own property, whose shape then never changes), shared by every copy of
 * pg-tenant through the registered symbol.
 */
export function hookSync(connection: ConnectionLike): void {
  const hooked = connection as ConnectionLike & { [BEFORE_SYNC]?: readonly PrefixStatement[] | undefined }
  if (BEFORE_SYNC in hooked) return
  hooked[BEFORE_SYNC] = undefined
  const sync = connection.sync
  connection.sync = function syncAfterSuffix(this: typeof hooked) {
    const before = this[BEFORE_SYNC]
    if (before !== undefined) {
      this[BEFORE_SYNC] = undefined
      writeStatements(this, before)
    }
    sync.call(this)
  }
}

/**
 * Writes statements of a prefix or suffix: Bind and Execute (named statements were parsed first,
 * by `parseNamed`; unnamed ones are parsed here); no Describe (their rows are not the caller's)
 * and no Sync.
 */
export function writeStatements(connection: ConnectionLike, statements: readonly PrefixStatement[]): void {
  for (const statement of statements) {
    const name = statement.name
    if (name === undefined) {
      connection.parse({ text: statement.text })
      connection.bind({ values: statement.values })
    } else {
      // Bind and Execute as one buffer encoded once per statement and values (pg's own _send does
      // the same stream.write, after the same writable check).
      const stream = connection.stream
      if (typeof stream.write === 'function') {
        statement.wire ??= bindAndExecute(name, statement.values)
        if (stream.writable !== false) stream.write(statement.wire)
        continue
      }
      connection.bind({ statement: name, values: statement.values })
    }
    connection.execute({})
  }
}

// The prefix statements prepared on a connection, by name; shared by every copy of pg-tenant.
const PREPARED = Symbol.for('pg-tenant.prepared-statements.v1')

export function preparedOn(connection: ConnectionLike): Set<string> {
  const holder = connection as ConnectionLike & { [PREPARED]?: Set<string> }
  return (holder[PREPARED] ??= new Set())
}

// The status of the last ReadyForQuery, on the connection. A registered symbol, so that two copies
// of pg-tenant (ESM and CJS builds) share one listener per connection.
export const STATUS = Symbol.for('pg-tenant.transaction-status.v1')

/**
 * Records the status of every ReadyForQuery on the connection, ahead of the client's own handler
 * (which hands the status's query its ReadyForQuery). Installed once per connection.
 */
export function trackStatus(connection: ConnectionLike): void {
  const tracked = connection as ConnectionLike & { [STATUS]?: string | null }
  if (STATUS in tracked) return
  tracked[STATUS] = null
  connection.prependListener('readyForQuery', (msg: { status?: string } | undefined) => {
    tracked[STATUS] = msg?.status ?? null
  })
}

/**
 * The transaction status of the last ReadyForQuery a connection received, once pg-tenant has sent
 * a statement on it (for submittables of the caller's own, such as pg-cursor, that report nothing).
 */
export function lastStatus(connection: unknown): TransactionStatus | undefined {
  const status = (connection as { [STATUS]?: string | null } | null)?.[STATUS]
  return status === 'I' || status === 'T' || status === 'E' ? status : undefined
}

/** Starts tracking the transaction status of a connection a caller's submittable is handed. */
export function watchStatus(connection: unknown): void {
  if (typeof (connection as ConnectionLike | null)?.prependListener === 'function') trackStatus(connection as ConnectionLike)
}
