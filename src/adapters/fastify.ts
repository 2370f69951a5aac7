/**
 * `pg-tenant/fastify`: a Fastify 5 plugin that binds each request's tenant from `onRequest` on, so
 * that every `db.query` in later hooks and in the route handler runs as that tenant.
 */
import { AsyncResource } from 'node:async_hooks'
import type { FastifyInstance, FastifyPluginCallback, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { parseAdapterOptions } from '../options.js'
import {
  callResolver,
  repeatedHeaderError,
  repeatedHeaderIn,
  type ResolvedTenantValue,
  type TenantBinder,
  type TenantResolver,
} from './shared.js'
import { InvalidOptionsError, TenantRequiredError } from '../errors.js'
import { chainHttpStatus, ownHttpStatus } from '../classify/error-status.js'
import type { Tenant } from '../tenant.js'

export type { TenantBinder, TenantResolver, ResolvedTenantValue } from './shared.js'
export { isRlsViolation } from '../classify/rls-violation.js'
export { httpStatusOf, tenantErrorOf } from '../classify/error-status.js'
export { errorResponseOf } from '../classify/error-response.js'
export type { ErrorBody, ErrorResponse, ErrorResponseOptions } from '../classify/error-response.js'

declare module 'fastify' {
  interface FastifyRequest {
    /**
     * The tenant pg-tenant bound for this request (what `resolve` returned), or `undefined` when
     * it has none (`required: false`). Set in `onRequest`; read-only.
     *
     * @example
     * ```ts
     * app.get('/whoami', async (request) => ({ tenant: request.tenant })) // { tenant: 'org_42' }
     * ```
     */
    readonly tenant: Tenant | undefined
  }
}

// Per request: the tenant, and the async context onRequest bound it in (see the hooks below).
const kTenant = Symbol('pg-tenant.tenant')
const kContext = Symbol('pg-tenant.context')
interface TenantRequestState {
  [kTenant]: Tenant | undefined
  [kContext]: AsyncResource | null
}

/**
 * Options of {@link tenantPlugin}.
 *
 * @example
 * ```ts
 * await app.register(tenantPlugin, {
 *   db,
 *   resolve: (request) => request.headers['x-org-id'],
 *   required: true,
 *   closePool: true,
 * } satisfies TenantPluginOptions)
 * ```
 */
export interface TenantPluginOptions {
  /** The pool from `createTenantPool`. */
  db: TenantBinder & { end(): Promise<void> }
  /**
   * Finds the request's tenant (sync or async). Return `undefined` or `null` when there is none;
   * what it throws or rejects with ends the request through Fastify's error handling.
   */
  resolve: TenantResolver<FastifyRequest>
  /**
   * `true` (default): a request with no tenant is answered 401 (`TenantRequiredError`).
   * `false`: it goes on with no tenant bound, and `db.query` in it fails closed.
   */
  required?: boolean
  /** `true`: end the pool (`db.end()`) when the Fastify instance closes. Default `false`. */
  closePool?: boolean
}

function pgTenant(
  fastify: FastifyInstance,
  options: TenantPluginOptions,
  done: (err?: Error) => void,
): void {
  const { db, closePool = false } = options ?? ({} as TenantPluginOptions)
  let resolve: TenantResolver<FastifyRequest>
  let required: boolean
  try {
    ;({ resolve, required } = parseAdapterOptions<TenantResolver<FastifyRequest>>('tenantPlugin', db, options, ['closePool']))
    if (typeof closePool !== 'boolean') {
      throw new InvalidOptionsError('tenantPlugin: closePool must be a boolean')
    }
    if (closePool && typeof db.end !== 'function') {
      throw new InvalidOptionsError('tenantPlugin: closePool needs a db with end()')
    }
  } catch (err) {
    done(err as Error)
    return
  }

  fastify.decorateRequest(kTenant, undefined)
  fastify.decorateRequest(kContext, null)
  fastify.decorateRequest('tenant', {
    getter(this: FastifyRequest) {
      return (this as unknown as TenantRequestState)[kTenant]
    },
  })

  const bind = (request: FastifyRequest, tenant: ResolvedTenantValue, next: (err?: Error) => void) => {
    if (tenant === undefined || tenant === null) {
      if (required) next(new TenantRequiredError('this request carries no tenant'))
      else next()
      return
    }
    const repeated = repeatedHeaderIn(request.raw, tenant)
    if (repeated !== undefined) {
      next(repeatedHeaderError(repeated))
      return
    }
    let entered = false
    try {
      db.runWithTenant(tenant as Tenant, () => {
        entered = true
        const state = request as unknown as TenantRequestState
        state[kTenant] = tenant as Tenant // validated by runWithTenant
        // Captures the async context as it is now, with the tenant bound.
        state[kContext] = new AsyncResource('pg-tenant')
        next()
      })
    } catch (err) {
      // Not entered: the tenant was refused (InvalidTenantError 400, RoleNotAllowedError 403, or
      // TenantMismatchError). Entered: a later hook threw synchronously; Fastify's hook runner
      // handles that as for any hook.
      if (entered) throw err
      next(err as Error)
    }
  }

  // The hook chain from onRequest through preParsing runs synchronously inside runWithTenant, so
  // the binding holds there. The payload's 'data'/'end' events fire in the socket's async context,
  // where no tenant is bound; Fastify 5 itself resumes after its content-type parsers inside an
  // AsyncResource made before parsing (tested: the binding reaches preHandler and the handler of
  // POST requests whose JSON body arrives late). preValidation below does not rely on that
  // internal: it goes on inside the very async context onRequest captured (as
  // @fastify/request-context does), before any preValidation hook of the application's added
  // after this plugin. For a request without a body it is the same context already.
  fastify.addHook('onRequest', function pgTenantOnRequest(request, _reply, next) {
    callResolver(resolve, request, (tenant) => bind(request, tenant, next), next as (e: unknown) => void)
  })
  fastify.addHook('preValidation', function pgTenantPreValidation(request, _reply, next) {
    const context = (request as unknown as TenantRequestState)[kContext]
    if (context === null) next()
    else context.runInAsyncScope(next, null)
  })

  // Fastify 5 runs onError hooks before the error handler (lib/reply.js, onErrorHook). An error
  // without a status of its own that wraps a pg-tenant error or an RLS refusal gets that status on
  // the reply: Fastify's default error handler keeps a status already set (lib/error-status.js);
  // a custom handler sets its own (httpStatusOf gives the same answer).
  fastify.addHook('onError', function pgTenantOnError(_request, reply, error, next) {
    try {
      if (ownHttpStatus(error) === undefined && !reply.sent && !(reply.statusCode >= 400)) {
        const status = chainHttpStatus(error)
        if (status !== undefined) reply.code(status)
      }
    } catch {
      // Never let answering an error fail the request differently.
    }
    next()
  })

  if (closePool) {
    fastify.addHook('onClose', function pgTenantOnClose(_instance, next) {
      db.end().then(() => next(), next)
    })
  }
  done()
}

/**
 * A Fastify 5 plugin (wrapped with `fastify-plugin`, name `'pg-tenant'`) that resolves the tenant
 * of each request in `onRequest` and binds it, `db.runWithTenant` style, for the later hooks and
 * the route handler, across body parsing: every `db.query` there is scoped to that tenant, and
 * `db.transaction` opens a transaction for it. The tenant is also on `request.tenant`.
 *
 * Refusals go through Fastify's error handling, with `statusCode` set:
 * - no tenant and `required` (default): `TenantRequiredError`, 401;
 * - an invalid tenant (empty, too long, an array): `InvalidTenantError`, 400;
 * - a tenant read from a header the request sent more than once: `InvalidTenantError`, 400. Node
 *   joins the values of a repeated header into one string (`x-org-id: a` twice with `b` reaches
 *   `request.headers['x-org-id']` as `'a, b'`); the plugin compares a tenant containing `", "`
 *   with the request's separate header lines (`request.raw.headersDistinct`) and refuses it when
 *   it holds such a joined value. A single header whose value contains `", "` is not refused;
 * - a role that is not on the pool's `roles` allow-list: `RoleNotAllowedError`, 403;
 * - `resolve` throwing or rejecting: that error.
 *
 * Errors of the routes get a status too (an `onError` hook, before your error handler), when they
 * carry none of their own: the status of a pg-tenant error an ORM or your code wrapped (Drizzle's
 * `DrizzleQueryError` has it as `cause`; 401 for a wrapped `TenantRequiredError`), and 403 for a
 * write refused by an RLS policy, wrapped or not (see {@link isRlsViolation}). Fastify's default
 * error handler answers with it, but also sends the error's message, which for a database error is
 * PostgreSQL's own: in your error handler, answer with {@link errorResponseOf} (the status and a
 * JSON body with no database message in it).
 *
 * Register it before the hooks and routes that query. It applies to the context it is registered
 * in (and its children): register it inside a child context to leave other routes public.
 *
 * @example
 * ```ts
 * import Fastify, { type FastifyError } from 'fastify'
 * import { tenantPlugin, errorResponseOf } from 'pg-tenant/fastify'
 *
 * const app = Fastify()
 * await app.register(tenantPlugin, {
 *   db,
 *   resolve: (request) => request.headers['x-org-id'],
 *   closePool: true,
 * })
 * app.get('/events', async (request) => {
 *   request.tenant // 'org_42'
 *   return (await db.query('select * from events')).rows // this tenant's rows only
 * })
 * app.setErrorHandler((err: FastifyError, request, reply) => {
 *   // 401 TENANT_REQUIRED, 400 INVALID_TENANT, 403 RLS_VIOLATION (also when an ORM wrapped them)
 *   const { status, body } = errorResponseOf(err, { expose: err.validation !== undefined })
 *   if (status >= 500) request.log.error(err)
 *   return reply.code(status).send(body) // { "error": { "code": "...", "message": "..." } }
 * })
 * ```
 */
export const tenantPlugin: FastifyPluginCallback<TenantPluginOptions> = fp(pgTenant, {
  name: 'pg-tenant',
  fastify: '5.x',
})
