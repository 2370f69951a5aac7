/**
 * `pg-tenant/express`: binds each request's tenant for the rest of the request, so that every
 * `db.query` in later middleware, handlers and error handlers runs as that tenant.
 *
 * Express's types are not imported: the middleware is typed structurally, so this module works
 * with Express 4 and 5 (and look-alikes such as connect) whatever `@types/express` is installed.
 */
import {
  callResolver,
  checkAdapterOptions,
  type ResolvedTenantValue,
  type TenantBinder,
  type TenantResolver,
} from './adapter.js'
import { TenantRequiredError } from './errors.js'
import type { Tenant } from './tenant.js'

export type { TenantBinder, TenantResolver, ResolvedTenantValue } from './adapter.js'
export { isRlsViolation } from './rls-violation.js'

/**
 * The `next` of a connect-style middleware: called with nothing to go on, with an error to skip
 * to the error handlers.
 *
 * @example
 * ```ts
 * const next: NextFunctionLike = (err) => { if (err) console.error(err) }
 * ```
 */
export type NextFunctionLike = (err?: unknown) => void

/**
 * Options of {@link tenantMiddleware}.
 *
 * @example
 * ```ts
 * const options: TenantMiddlewareOptions<express.Request> = {
 *   resolve: (req) => req.get('x-org-id'),
 *   required: true,
 * }
 * ```
 */
export interface TenantMiddlewareOptions<Req> {
  /**
   * Finds the request's tenant (sync or async). Return `undefined` or `null` when there is none;
   * what it throws or rejects with goes to `next(err)`.
   */
  resolve: TenantResolver<Req>
  /**
   * `true` (default): a request with no tenant ends with `TenantRequiredError` (status 401).
   * `false`: it goes on with no tenant bound, and `db.query` in it fails closed.
   */
  required?: boolean
}

/**
 * The middleware {@link tenantMiddleware} returns. Its `req` is whatever your `resolve` takes.
 *
 * @example
 * ```ts
 * const mw: TenantMiddleware<express.Request> = tenantMiddleware(db, { resolve: (req: express.Request) => req.get('x-org-id') })
 * ```
 */
export type TenantMiddleware<Req> = (req: Req, res: unknown, next: NextFunctionLike) => void

/**
 * Makes an Express (4 or 5) middleware that resolves the tenant of each request and runs the rest
 * of the request inside `db.runWithTenant(tenant, ...)`: every `db.query` in later middleware,
 * route handlers (sync or async) and error handlers is scoped to that tenant, and `db.transaction`
 * opens a transaction for it. Errors are reported through `next(err)`, so your error handlers
 * decide the response; each carries `status` and `statusCode`:
 *
 * - no tenant and `required` (default): `TenantRequiredError`, 401;
 * - an invalid tenant (empty, too long, an array from a repeated header): `InvalidTenantError`, 400;
 * - a role that is not on the pool's `roles` allow-list: `RoleNotAllowedError`, 403;
 * - `resolve` throwing or rejecting: that error, unchanged.
 *
 * Mount it before the routes that query, and before or after body parsers (both keep the binding).
 * Writes that a policy refuses reject with PostgreSQL's `42501`: see {@link isRlsViolation}.
 *
 * @param db - the pool from `createTenantPool`
 * @param options - `resolve(req)` and `required`
 * @throws InvalidOptionsError at set-up, when `db` or `resolve` is not usable
 *
 * @example
 * ```ts
 * import express from 'express'
 * import { tenantMiddleware, isRlsViolation } from 'pg-tenant/express'
 *
 * const app = express()
 * app.use(express.json())
 * app.use(tenantMiddleware(db, { resolve: (req: express.Request) => req.get('x-org-id') }))
 * app.get('/events', async (req, res) => {
 *   res.json((await db.query('select * from events')).rows) // this tenant's rows only
 * })
 * app.use((err, req, res, next) => {
 *   const status = isRlsViolation(err) ? 403 : (err.status ?? 500)
 *   res.status(status).json({ error: err.message })
 * })
 * ```
 */
export function tenantMiddleware<Req = any>(
  db: TenantBinder,
  options: TenantMiddlewareOptions<Req>,
): TenantMiddleware<Req> {
  const { resolve, required = true } = options ?? ({} as TenantMiddlewareOptions<Req>)
  checkAdapterOptions('tenantMiddleware', db, resolve, required)

  const bind = (tenant: ResolvedTenantValue, next: NextFunctionLike): void => {
    if (tenant === undefined || tenant === null) {
      if (required) next(new TenantRequiredError('this request carries no tenant'))
      else next()
      return
    }
    try {
      db.runWithTenant(tenant as Tenant, () => next())
    } catch (err) {
      // runWithTenant refused the tenant (400, 403, or a mismatch with a tenant already bound), or
      // later middleware threw synchronously through `next`, which Express's own layer would also
      // hand to `next(err)`.
      next(err)
    }
  }

  return function pgTenantMiddleware(req: Req, _res: unknown, next: NextFunctionLike): void {
    callResolver(resolve, req, (tenant) => bind(tenant, next), next)
  }
}
