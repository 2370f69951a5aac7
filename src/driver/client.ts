/**
 * What pg-tenant reads off a checked-out pg client: its Query class (to run the caller's statement
 * inside a pipeline), the transaction status its connection last reported, its backend pid.
 */
import { lastStatus } from './connection.js'
import type { TransactionStatus } from './connection.js'
import type { QueryClass } from './pipeline.js'
import type { PgClientLike } from './types.js'

/** pg's Query class for this client, or undefined when the client is not node-postgres' own. */
export function queryClassOf(client: object): QueryClass | undefined {
  const candidate = (client as { constructor?: { Query?: unknown } }).constructor?.Query
  const pipelineMode = (client as { pipeline?: unknown }).pipeline === true
  return typeof candidate === 'function' && !pipelineMode ? (candidate as QueryClass) : undefined
}


/**
 * The transaction status the client's connection last reported: from pg's own
 * `getTransactionStatus()` (pg 8.21 and later), else from pg-tenant's listener on the connection.
 */
export function statusOf(client: PgClientLike): TransactionStatus | undefined {
  const own = (client as { getTransactionStatus?: () => unknown }).getTransactionStatus
  if (typeof own === 'function') {
    const status = own.call(client)
    if (status === 'I' || status === 'T' || status === 'E') return status
  }
  return lastStatus((client as { connection?: unknown }).connection)
}

/** The client's backend pid (pg sets it from BackendKeyData), for diagnostics. */
export function pidOf(client: PgClientLike): number | undefined {
  const pid = (client as { processID?: unknown }).processID
  return typeof pid === 'number' ? pid : undefined
}
