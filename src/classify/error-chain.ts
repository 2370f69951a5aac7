/**
 * Walking from an error to the errors it wraps, as ORMs and applications wrap them, without ever
 * throwing: the one traversal {@link isRlsViolation}, {@link tenantErrorOf} and
 * {@link httpStatusOf} share.
 *
 * Where each ORM puts the error it wrapped (read in their sources, for the versions named):
 *
 * - `cause` (ES2022): Drizzle 0.45's `DrizzleQueryError` (drizzle-orm/src/errors.ts, thrown by
 *   `PgPreparedQuery.queryWithCache` in drizzle-orm/src/pg-core/session.ts); Prisma 7's
 *   `DriverAdapterError`, whose `cause` is the adapter's mapped error object
 *   (packages/driver-adapter-utils/src/error.ts); Knex's `KnexTimeoutError`; `new Error(m, { cause })`.
 * - `driverError`: TypeORM's `QueryFailedError` (src/error/QueryFailedError.ts), which also copies
 *   the driver error's enumerable fields (`code`, `routine`, ...) onto itself.
 * - `meta.driverAdapterError`: Prisma 7's `PrismaClientKnownRequestError` for a database error
 *   (packages/client-engine-runtime/src/user-facing-error.ts; P2039, P2010 for raw queries).
 * - `original`: Sequelize's `DatabaseError` (also as `parent`, the same object).
 *
 * Knex and Kysely rethrow pg's own error (Knex prefixes its `message` with the SQL); MikroORM's
 * `DriverException` copies every own property of pg's error and keeps no reference to it
 * (packages/core/src/exceptions.ts): those need no link.
 */

/** How far from the error handed in the walk goes, and how many objects it looks at in all. */
const MAX_DEPTH = 8
const MAX_NODES = 32

/** Reads `node[key]`, or `undefined` where reading throws (a getter, a proxy trap). */
export function readField(node: object, key: PropertyKey): unknown {
  try {
    return (node as Record<PropertyKey, unknown>)[key]
  } catch {
    return undefined
  }
}

function isObject(value: unknown): value is object {
  return typeof value === 'object' && value !== null
}

// The links of one node, in the order they are followed (nearer the outside wins).
function linksOf(node: object): unknown[] {
  const links = [readField(node, 'cause'), readField(node, 'driverError')]
  const meta = readField(node, 'meta')
  if (isObject(meta)) links.push(readField(meta, 'driverAdapterError'))
  links.push(readField(node, 'original'))
  return links
}

/**
 * Visits `err` and the errors it wraps, breadth first (the outermost first), and returns the
 * first value `visit` returns that is not `undefined`. Follows `cause`, `driverError`,
 * `meta.driverAdapterError` and `original`; at most 8 links deep and 32 objects in all; each object
 * once (cycles end there); never throws on what it reads (getters and proxies that throw count as
 * absent). Non-objects are not visited.
 */
export function walkErrorChain<T>(err: unknown, visit: (node: object) => T | undefined): T | undefined {
  if (!isObject(err)) return undefined
  const seen = new Set<object>([err])
  let level: object[] = [err]
  for (let depth = 0; level.length > 0; depth++) {
    const next: object[] = []
    for (const node of level) {
      let found: T | undefined
      try {
        found = visit(node)
      } catch {
        found = undefined
      }
      if (found !== undefined) return found
      if (depth === MAX_DEPTH) continue
      for (const link of linksOf(node)) {
        if (!isObject(link) || seen.has(link) || seen.size >= MAX_NODES) continue
        seen.add(link)
        next.push(link)
      }
    }
    level = next
  }
  return undefined
}
