/**
 * What the Express and Fastify adapters share: the structural type of the pool they bind tenants
 * on, the resolver type, and calling a resolver that may or may not return a promise.
 */
import { TenantResolveError } from '../errors.js'
import type { Tenant } from '../tenant.js'

/**
 * What an adapter needs from a pool: `runWithTenant`. A {@link TenantPool} fits, whichever copy of
 * pg-tenant (ESM or CJS build) made it. Typed structurally so that adapters never depend on one
 * build's class identity.
 *
 * @example
 * ```ts
 * const db: TenantBinder = createTenantPool(pool)
 * ```
 */
export interface TenantBinder {
  runWithTenant<T>(tenant: Tenant, fn: () => T): T
}

/**
 * What a resolver may return: a tenant, or `undefined` / `null` for "this request has none".
 * A raw header value fits as it is (`string | string[] | undefined`): an array is refused at run
 * time with `InvalidTenantError` (400), and so is an empty string, which is not "none".
 *
 * @example
 * ```ts
 * const fromHeader: ResolvedTenantValue = req.headers['x-org-id'] // string | string[] | undefined
 * ```
 */
export type ResolvedTenantValue = Tenant | readonly string[] | null | undefined

/**
 * Finds the tenant of a request, synchronously or not: from a header, a verified token, a session.
 * Return `undefined` (or `null`) when the request carries none. Throwing (or rejecting) ends the
 * request with that error.
 *
 * @example
 * ```ts
 * const resolve: TenantResolver<{ headers: Record<string, string | string[] | undefined> }> =
 *   (req) => req.headers['x-org-id']
 * ```
 */
export type TenantResolver<Req> = (
  req: Req,
) => ResolvedTenantValue | PromiseLike<ResolvedTenantValue>

/**
 * Calls `resolve(req)` and reports exactly once: `fail(err)` if it threw or rejected, otherwise
 * `found(tenant)`. Synchronous resolvers are answered synchronously (no extra tick).
 */
export function callResolver<Req>(
  resolve: TenantResolver<Req>,
  req: Req,
  found: (tenant: ResolvedTenantValue) => void,
  fail: (err: unknown) => void,
): void {
  let result: ResolvedTenantValue | PromiseLike<ResolvedTenantValue>
  try {
    result = resolve(req)
  } catch (err) {
    fail(errorOf(err))
    return
  }
  if (isPromiseLike(result)) {
    // `found` handles its own errors; a throw there must not be taken for a rejected resolver.
    Promise.resolve(result).then(
      (tenant) => found(tenant),
      (err: unknown) => fail(errorOf(err)),
    )
  } else {
    found(result)
  }
}

// `next(undefined)` (Express) or `done(undefined)` (Fastify) would carry on as if nothing went
// wrong: a resolver that throws a falsy value must still end the request.
function errorOf(err: unknown): unknown {
  return err || new TenantResolveError(err)
}

function isPromiseLike(value: unknown): value is PromiseLike<unknown> {
  return (
    (typeof value === 'object' || typeof value === 'function') &&
    value !== null &&
    typeof (value as { then?: unknown }).then === 'function'
  )
}
