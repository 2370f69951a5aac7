/**
 * What the Express and Fastify adapters share: the structural type of the pool they bind tenants
 * on, the resolver type, and calling a resolver that may or may not return a promise.
 */
import { InvalidTenantError, TenantResolveError } from '../errors.js'
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
 * A raw header value fits as it is (`string | string[] | undefined`): an empty string is refused
 * at run time with `InvalidTenantError` (400), since it is not "none", and so is an array (Node
 * gives one for `set-cookie` and in `req.headersDistinct`). A header sent more than once reaches
 * `req.headers` and `req.get()` as one string, its values joined with `", "`: the adapters refuse
 * a tenant that contains such a joined value, 400 as well (see {@link repeatedHeaderIn}).
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

// Node joins the values of a header sent more than once with ", " into one string in
// `req.headers` (http.IncomingMessage's _addHeaderLine): all but a few headers it keeps the first
// of (host, authorization, content-type, ...), set-cookie (an array) and cookie ("; ").
const JOIN = ', '

/** The header values a request received, one array per header, from Node's message. */
function distinctHeaders(message: unknown): Iterable<readonly [string, readonly unknown[]]> {
  if (typeof message !== 'object' || message === null) return []
  // Node >= 18.3: `headersDistinct`, computed from the raw header lines on first read.
  const distinct = readOwnOrInherited(message, 'headersDistinct')
  if (typeof distinct === 'object' && distinct !== null) {
    return Object.entries(distinct as Record<string, unknown>).filter(
      (entry): entry is [string, unknown[]] => Array.isArray(entry[1]),
    )
  }
  // Look-alikes with the raw lines only: [name, value, name, value, ...].
  const raw = readOwnOrInherited(message, 'rawHeaders')
  if (!Array.isArray(raw)) return []
  const byName = new Map<string, unknown[]>()
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = String(raw[i]).toLowerCase()
    const values = byName.get(name)
    if (values === undefined) byName.set(name, [raw[i + 1]])
    else values.push(raw[i + 1])
  }
  return byName
}

function readOwnOrInherited(node: object, key: string): unknown {
  try {
    return (node as Record<string, unknown>)[key]
  } catch {
    return undefined
  }
}

/** The strings a tenant applies: the id, the role and the settings' values. */
function tenantValues(tenant: ResolvedTenantValue): string[] {
  if (typeof tenant === 'string') return [tenant]
  if (typeof tenant !== 'object' || tenant === null || Array.isArray(tenant)) return []
  const { id, role, settings } = tenant as Exclude<Tenant, string>
  const out = [id, role].filter((v): v is string => typeof v === 'string')
  if (typeof settings === 'object' && settings !== null) {
    for (const value of Object.values(settings)) if (typeof value === 'string') out.push(value)
  }
  return out
}

/**
 * The name of a header that the request carried more than once and whose values, joined with
 * `", "` as Node joins them into `req.headers`, appear in one of the tenant's values (its id, role
 * or a setting's value; compared case-insensitively); `undefined` when there is none. A header
 * sent once whose value contains `", "` is not one: only Node's record of the separate header
 * lines (`headersDistinct`, else `rawHeaders`) tells them apart, and it is read only when a
 * tenant value contains `", "`, so other requests pay nothing.
 *
 * @param message - Node's `http.IncomingMessage` (Express's `req`, Fastify's `request.raw`)
 * @param tenant - what the resolver returned
 */
export function repeatedHeaderIn(message: unknown, tenant: ResolvedTenantValue): string | undefined {
  if (typeof tenant === 'string' && !tenant.includes(JOIN)) return undefined // the usual case
  const suspects = tenantValues(tenant)
    .filter((value) => value.includes(JOIN))
    .map((value) => value.toLowerCase())
  if (suspects.length === 0) return undefined
  for (const [name, values] of distinctHeaders(message)) {
    if (values.length < 2) continue
    const joined = values.map(String).join(JOIN).toLowerCase()
    if (suspects.some((value) => value.includes(joined))) return name
  }
  return undefined
}

/**
 * The error an adapter ends a request with when its tenant came from a header sent more than
 * once (see {@link repeatedHeaderIn}): `InvalidTenantError`, 400.
 */
export function repeatedHeaderError(header: string): InvalidTenantError {
  return new InvalidTenantError(
    `the tenant came from the ${header} header, which the request sent more than once`,
  )
}
