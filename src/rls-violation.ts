/**
 * Telling a write that Row-Level Security refused apart from other database errors, so that web
 * adapters' users can answer it with 403 instead of 500.
 */

// PostgreSQL raises WITH CHECK failures of RLS policies ("new row violates row-level security
// policy for table ...") with SQLSTATE 42501 (insufficient_privilege) from the executor function
// ExecWithCheckOptions. 42501 alone also covers "permission denied for table" (a missing GRANT),
// which is a deployment bug, not a tenant's doing; the routine, unlike the message, is never
// translated, so it tells the two apart. Where the routine is missing (a proxy or a driver that
// drops it), the English message is the fallback.
const INSUFFICIENT_PRIVILEGE = '42501'
const RLS_ROUTINE = 'ExecWithCheckOptions'
const RLS_MESSAGE = /row-level security/i

/**
 * Whether `err` is PostgreSQL refusing a row by a Row-Level Security policy: an `INSERT` or
 * `UPDATE` whose new row fails a policy's `WITH CHECK` (SQLSTATE `42501`, "new row violates
 * row-level security policy"). That is a tenant writing where it may not: answer it with 403.
 *
 * Reads go the other way under RLS: rows of other tenants are filtered out silently, never an
 * error. A `42501` "permission denied for table" (a missing `GRANT`) is *not* matched: that is a
 * deployment bug and should stay a 500.
 *
 * Works on errors from `pg` (`DatabaseError`, with `code` and `routine`) and on look-alikes that
 * carry the SQLSTATE in `code`. pg-tenant passes PostgreSQL's errors through unchanged, so this can
 * be called on whatever `db.query`, `db.withTenant` or `db.transaction` rejected with.
 *
 * @param err - anything caught
 * @returns `true` for an RLS policy violation
 *
 * @example
 * ```ts
 * import { isRlsViolation } from 'pg-tenant'
 *
 * // Express
 * app.use((err, req, res, next) => {
 *   if (isRlsViolation(err)) return res.status(403).json({ error: 'forbidden by policy' })
 *   next(err)
 * })
 * // Fastify
 * app.setErrorHandler((err, request, reply) => {
 *   if (isRlsViolation(err)) return reply.code(403).send({ error: 'forbidden by policy' })
 *   reply.send(err)
 * })
 * ```
 */
export function isRlsViolation(err: unknown): boolean {
  if (typeof err !== 'object' || err === null) return false
  const { code, routine, message } = err as { code?: unknown; routine?: unknown; message?: unknown }
  if (code !== INSUFFICIENT_PRIVILEGE) return false
  if (typeof routine === 'string' && routine.length > 0) return routine === RLS_ROUTINE
  return typeof message === 'string' && RLS_MESSAGE.test(message)
}
