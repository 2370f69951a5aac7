/**
 * Telling a write that Row-Level Security refused apart from other database errors, so that web
 * adapters' users can answer it with 403 instead of 500, also when an ORM wrapped it.
 */
import { readField, walkErrorChain } from './error-chain.js'

// PostgreSQL raises WITH CHECK failures of RLS policies ("new row violates row-level security
// policy for table ...") with SQLSTATE 42501 (insufficient_privilege) from the executor function
// ExecWithCheckOptions. 42501 alone also covers "permission denied for table" (a missing GRANT),
// which is a deployment bug, not a tenant's doing, and "query would be affected by row-level
// security policy" (row_security = off, from check_enable_rls). The routine, unlike the message,
// is never translated, so it tells them apart.
//
// Where the routine is missing, the English message of ExecWithCheckOptions is the fallback: its
// RLS cases all read "new row violates row-level security policy ..." or, for MERGE (PostgreSQL
// 15+), "target row violates row-level security policy ..." (src/backend/executor/execMain.c).
// That is the case of Prisma 7's @prisma/adapter-pg, which maps a pg error to
// { kind: 'postgres', code, severity, message, detail, column, hint, originalCode,
// originalMessage } and drops `routine` (packages/adapter-pg/src/errors.ts). A server whose
// lc_messages is not English sends a translated message: such an error is then not recognised
// (a 500, never a GRANT error taken for a 403).
const INSUFFICIENT_PRIVILEGE = '42501'
const RLS_ROUTINE = 'ExecWithCheckOptions'
const RLS_MESSAGE = /\b(?:new|target) row violates row-level security policy\b/

/**
 * Whether this one object (not what it wraps) has the shape of PostgreSQL refusing a row by an RLS
 * policy: SQLSTATE 42501 in `code` (or Prisma's `originalCode`), and the routine
 * `ExecWithCheckOptions`, or, where no routine is known, the English message of that routine in
 * `message` (or Prisma's `originalMessage`). Never throws.
 */
export function isRlsViolationShape(node: object): boolean {
  if (
    readField(node, 'code') !== INSUFFICIENT_PRIVILEGE &&
    readField(node, 'originalCode') !== INSUFFICIENT_PRIVILEGE
  ) {
    return false
  }
  const routine = readField(node, 'routine')
  if (typeof routine === 'string' && routine.length > 0) return routine === RLS_ROUTINE
  return isRlsMessage(readField(node, 'message')) || isRlsMessage(readField(node, 'originalMessage'))
}

function isRlsMessage(message: unknown): boolean {
  return typeof message === 'string' && RLS_MESSAGE.test(message)
}

/**
 * Whether `err` is, or wraps, PostgreSQL refusing a row by a Row-Level Security policy: an
 * `INSERT`, `UPDATE` or `MERGE` whose row fails a policy (SQLSTATE `42501`, "new row violates
 * row-level security policy"). That is a tenant writing where it may not: answer it with 403.
 *
 * Reads go the other way under RLS: rows of other tenants are filtered out silently, never an
 * error. A `42501` "permission denied for table" (a missing `GRANT`) is *not* matched: that is a
 * deployment bug and should stay a 500.
 *
 * Follows what ORMs wrap pg's error in: `cause` (Drizzle's `DrizzleQueryError`,
 * `new Error(msg, { cause })`), `driverError` (TypeORM's `QueryFailedError`),
 * `meta.driverAdapterError` (Prisma 7's `PrismaClientKnownRequestError` with `@prisma/adapter-pg`)
 * and `original` (Sequelize); Knex, Kysely and MikroORM rethrow pg's fields on the error itself.
 * Up to 8 links deep, each object once; never throws, whatever it is given.
 *
 * pg's errors carry the routine that raised them, which tells an RLS refusal from a missing GRANT
 * in any server language. Prisma's adapter drops it: there the English message decides, so with
 * Prisma a server whose `lc_messages` is not English gets `false` (answer 500) for RLS refusals.
 *
 * @param err - anything caught
 * @returns `true` for an RLS policy violation, wrapped or not
 *
 * @example
 * ```ts
 * import { isRlsViolation } from 'pg-tenant'
 *
 * try {
 *   await orm.insert(events).values({ orgId: 'org_2', kind: 'x' }) // as org_1
 * } catch (err) {
 *   if (isRlsViolation(err)) return res.status(403).json({ error: 'forbidden by policy' })
 *   throw err
 * }
 * ```
 */
export function isRlsViolation(err: unknown): boolean {
  return walkErrorChain(err, (node) => (isRlsViolationShape(node) ? true : undefined)) === true
}
