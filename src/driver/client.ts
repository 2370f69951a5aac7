/**
 * What pg-tenant reads off a checked-out pg client: its Query class (to run the caller's statement
 * inside a pipeline), the transaction status its connection last reported, its backend pid.
 */
import { lastStatus, watchStatus } from './connection.js'
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

/** What pg hands a submittable it runs; structural. */
interface SubmittableLike {
  submit(connection: unknown): unknown
}

/**
 * A caller's submittable (pg-cursor, pg-query-stream) as pg-tenant hands it to pg: when pg submits
 * it, `guard` may refuse it (nothing is written) and the connection's transaction status is
 * tracked from then on; `finished` is called once, when pg is done with it (its ReadyForQuery, or
 * an error).
 */
export function guardSubmittable<S extends SubmittableLike>(submittable: S, guard: () => Error | undefined, finished: () => void): S {
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
          return guard() ?? target.submit.call(receiver, connection)
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

/**
 * Whether `target` is a single connection rather than a pool: a checked-out pool client (it has
 * `release`) or a `pg.Client` (pg gives it a backend pid and a connection).
 */
export function looksLikeClient(target: object): boolean {
  return typeof (target as { release?: unknown }).release === 'function' || 'processID' in target || 'connection' in target
}

/** The local TCP port of the client's socket, or undefined (a Unix socket, another driver). */
export function localPortOf(client: unknown): number | undefined {
  const port = (client as { connection?: { stream?: { localPort?: unknown } } } | undefined)?.connection?.stream?.localPort
  return typeof port === 'number' ? port : undefined
}
