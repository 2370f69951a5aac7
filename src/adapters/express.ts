/**
 * `pg-tenant/express`: binds each request's tenant for the rest of the request, so that every
 * `db.query` in later middleware, handlers and error handlers runs as that tenant.
 *
 * Express's types are not imported: the middleware is typed structurally, so this module works
 * with Express 4 and 5 (and look-alikes such as connect) whatever `@types/express` is installed.
 */
import { parseAdapterOptions } from '../options.js'
import {
  callResolver,
  repeatedHeaderError,
  repeatedHeaderIn,
  type ResolvedTenantValue,
  type TenantBinder,
  type TenantResolver,
} from './shared.js'
import { TenantRequiredError } from '../errors.js'
import { chainHttpStatus, ownHttpStatus } from '../classify/error-status.js'
import type { Tenant } from '../tenant.js'

export type { TenantBinder, TenantResolver, ResolvedTenantValue } from './shared.js'
export { isRlsViolation } from '../classify/rls-violation.js'
export { httpStatusOf, tenantErrorOf } from '../classify/error-status.js'
export { errorResponseOf } from '../classify/error-response.js'
export type { ErrorBody, ErrorResponse, ErrorResponseOptions } from '../classify/error-response.js'

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
 * - an invalid tenant (empty, too long, an array): `InvalidTenantError`, 400;
 * - a tenant read from a header the request sent more than once: `InvalidTenantError`, 400. Node
 *   joins the values of a repeated header into one string (`x-org-id: a` twice with `b` reaches
 *   `req.get('x-org-id')` as `'a, b'`); the middleware compares a tenant containing `", "` with
 *   the request's separate header lines (`req.headersDistinct`) and refuses it when it holds such
 *   a joined value. A single header whose value contains `", "` is not refused;
 * - a role that is not on the pool's `roles` allow-list: `RoleNotAllowedError`, 403;
 * - `resolve` throwing or rejecting: that error, unchanged.
 *
 * It adds nothing to `req` (and declares nothing on Express's `Request` type): read the tenant
 * with `db.currentTenant()`, in handlers and error handlers alike.
 *
 * Mount it before the routes that query, and before or after body parsers (both keep the binding).
 * Writes that a policy refuses reject with PostgreSQL's `42501`: see {@link isRlsViolation}. An ORM
 * may wrap that error, or a `TenantRequiredError` (Drizzle's `DrizzleQueryError` has it as
 * `cause`): answer with {@link errorResponseOf} in your error handler (the status and a JSON body
 * with no database message in it), or mount {@link tenantErrorHandler} after your routes, to
 * answer those 403 and 401 too.
 *
 * @param db - the pool from `createTenantPool`
 * @param options - `resolve(req)` and `required`
 * @throws InvalidOptionsError at set-up, when `db` or `resolve` is not usable
 *
 * @example
 * ```ts
 * import express from 'express'
 * import { tenantMiddleware, errorResponseOf } from 'pg-tenant/express'
 *
 * const app = express()
 * app.use(express.json())
 * app.use(tenantMiddleware(db, { resolve: (req: express.Request) => req.get('x-org-id') }))
 * app.get('/events', async (req, res) => {
 *   res.json((await db.query('select * from events')).rows) // this tenant's rows only
 * })
 * app.use((err: unknown, req: express.Request, res: express.Response, next: express.NextFunction) => {
 *   // 401 TENANT_REQUIRED, 400 INVALID_TENANT, 403 RLS_VIOLATION (also when an ORM wrapped them)
 *   const { status, body } = errorResponseOf(err)
 *   if (status >= 500) console.error(err)
 *   res.status(status).json(body) // { "error": { "code": "...", "message": "..." } }
 * })
 * ```
 */
export function tenantMiddleware<Req = any>(
  db: TenantBinder,
  options: TenantMiddlewareOptions<Req>,
): TenantMiddleware<Req> {
  const { resolve, required } = parseAdapterOptions<TenantResolver<Req>>('tenantMiddleware', db, options)

  const bind = (req: Req, tenant: ResolvedTenantValue, next: NextFunctionLike): void => {
    if (tenant === undefined || tenant === null) {
      if (required) next(new TenantRequiredError('this request carries no tenant'))
      else next()
      return
    }
    const repeated = repeatedHeaderIn(req, tenant)
    if (repeated !== undefined) {
      next(repeatedHeaderError(repeated))
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
    callResolver(resolve, req, (tenant) => bind(req, tenant, next), next)
  }
}

/**
 * The part of a response {@link tenantErrorHandler} reads and sets: Node's `http.ServerResponse`
 * (and so Express's `res`) fits.
 *
 * @example
 * ```ts
 * const res: StatusResponseLike = { statusCode: 200, headersSent: false }
 * ```
 */
export interface StatusResponseLike {
  statusCode: number
  readonly headersSent: boolean
}

/**
 * The error-handling middleware {@link tenantErrorHandler} returns (four parameters, as Express
 * requires of error handlers).
 *
 * @example
 * ```ts
 * const handler: TenantErrorHandler = tenantErrorHandler()
 * ```
 */
export type TenantErrorHandler = (
  err: unknown,
  req: unknown,
  res: StatusResponseLike,
  next: NextFunctionLike,
) => void

/**
 * Makes an Express (4 or 5) error-handling middleware that sets the response's status for errors
 * pg-tenant knows, then passes the error on (`next(err)`) unchanged, to your error handlers or to
 * Express's own, which answers with `res.statusCode` when the error carries no status:
 *
 * - a pg-tenant error wrapped by an ORM or by your code (`cause`, TypeORM's `driverError`, ...):
 *   its status (401 `TenantRequiredError`, 400 `InvalidTenantError`, 403 `RoleNotAllowedError`);
 * - a write refused by an RLS policy, wrapped or not: 403 (see {@link isRlsViolation}).
 *
 * It changes nothing when the error has a status of its own (`status` or `statusCode`, 400-599:
 * pg-tenant's own errors do), when the response already has an error status, or when headers were
 * sent. Mount it after your routes and before your own error handlers; an error handler that sets
 * the status itself (`res.status(err.status ?? 500)`) overrides it: use {@link errorResponseOf}
 * (or {@link httpStatusOf}) there. Express's own final handler writes the error's message (and,
 * outside `NODE_ENV=production`, its stack) into an HTML page: to keep database messages out of
 * responses, end with your own handler that answers {@link errorResponseOf}'s body.
 *
 * @returns the error-handling middleware
 *
 * @example
 * ```ts
 * import express from 'express'
 * import { tenantMiddleware, tenantErrorHandler } from 'pg-tenant/express'
 *
 * const app = express()
 * app.use(tenantMiddleware(db, { resolve: (req: express.Request) => req.get('x-org-id') }))
 * app.post('/events', async (req, res) => {
 *   await orm.insert(events).values(req.body) // Drizzle: a refused row rejects with DrizzleQueryError
 *   res.sendStatus(201)
 * })
 * app.use(tenantErrorHandler()) // that request is answered 403, not 500
 * ```
 */
export function tenantErrorHandler(): TenantErrorHandler {
  return function pgTenantErrorHandler(err, _req, res, next): void {
    try {
      if (ownHttpStatus(err) === undefined && !res.headersSent && !(res.statusCode >= 400)) {
        const status = chainHttpStatus(err)
        if (status !== undefined) res.statusCode = status
      }
    } catch {
      // A response look-alike that refuses the status: the error goes on as it is.
    }
    next(err)
  }
}
