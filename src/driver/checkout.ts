/**
 * Taking a client from the pool with its 'error' listener already attached.
 *
 * pg-pool hands a client out from inside pg's message parser: the ReadyForQuery that completes a
 * new connection calls the pool's callback, and pg goes on parsing the rest of the same TCP chunk
 * before any promise continuation runs. If that chunk also holds a FATAL (a backend terminated as
 * it became ready: `pg_terminate_backend`, a server shutting down), pg emits 'error' on a client
 * nobody listens to yet, and the process crashes on an unhandled 'error' event. `await
 * pool.connect()` cannot close that window; pg's own callback form can, since the callback runs
 * synchronously where the pool hands the client over (pg-pool's `pool.query` does the same).
 */
import { InternalError } from '../errors.js'
import type { PgClientLike, PgPoolLike } from './types.js'

type ConnectCallback = (err: Error | undefined | null, client?: PgClientLike) => void

/** Receives the checked-out client, or why there is none. */
export type CheckedOut = (err: Error | undefined, client?: PgClientLike) => void

/**
 * `pool.connect()`, with `onError` attached to the client before anything else can happen on it.
 * Uses the callback form when the pool calls back (pg.Pool); a look-alike that only returns a
 * promise is awaited instead. `done` is called once, with the client or with the error.
 */
export function checkoutWith(pool: PgPoolLike, onError: (err: Error) => void, done: CheckedOut): void {
  let taken = false
  const take: ConnectCallback = (err, client) => {
    if (taken) return
    taken = true
    if (err || client === undefined) {
      done(err ?? new InternalError('the pool handed out no client'))
      return
    }
    client.on('error', onError)
    done(undefined, client)
  }
  let returned: unknown
  try {
    returned = (pool.connect as (callback: ConnectCallback) => unknown)(take)
  } catch (err) {
    take(err as Error)
    return
  }
  if (typeof (returned as PromiseLike<PgClientLike> | undefined)?.then === 'function') {
    ;(returned as PromiseLike<PgClientLike>).then(
      (client) => take(null, client),
      (err: Error) => take(err),
    )
  }
}

/** {@link checkoutWith} as a promise. */
export function checkout(pool: PgPoolLike, onError: (err: Error) => void): Promise<PgClientLike> {
  return new Promise((resolve, reject) => {
    checkoutWith(pool, onError, (err, client) => (err === undefined ? resolve(client!) : reject(err)))
  })
}
