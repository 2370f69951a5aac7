/** The one database session the doctor reads through: a pool's client, a client, a queryable. */
import { looksLikeClient, type PgClientLike, type PgPoolLike } from '../driver/index.js'
import { InvalidOptionsError } from '../errors.js'
import type { Query } from './catalog.js'
import type { QueryableLike } from './types.js'

/**
 * Runs `fn` on one session: a client checked out of a pool (released after, destroyed if anything
 * failed), or the given client / queryable as is.
 */
export async function withSession<T>(
  target: PgPoolLike | QueryableLike,
  fn: (query: Query, client: unknown) => Promise<T>,
): Promise<T> {
  const t = target as unknown as Record<string, unknown> | null
  if (typeof t !== 'object' || t === null) {
    throw new InvalidOptionsError('checkRls needs a pg.Pool, a pg.Client or an object with query()')
  }
  if (typeof t.withTenant === 'function' && typeof t.doctor === 'function') {
    // A TenantPool's query() needs a tenant: it would fail closed with TenantRequiredError.
    throw new InvalidOptionsError('checkRls was given a TenantPool: call db.doctor() instead')
  }
  const clientLike = looksLikeClient(t)
  if (typeof t.query === 'function' && (clientLike || typeof t.connect !== 'function')) {
    return fn(queryOf(target as QueryableLike), target)
  }
  if (typeof t.connect !== 'function') {
    throw new InvalidOptionsError('checkRls needs a pg.Pool, a pg.Client or an object with query()')
  }
  const client: PgClientLike = await (target as PgPoolLike).connect()
  let result: T
  try {
    result = await fn(queryOf(client as unknown as QueryableLike), client)
  } catch (err) {
    client.release(err instanceof Error ? err : true)
    throw err
  }
  client.release()
  return result
}

function queryOf(target: QueryableLike): Query {
  return async (text, values) => (await target.query(text, values ?? [])).rows
}
