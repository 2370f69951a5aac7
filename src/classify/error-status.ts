/**
 * Finding pg-tenant's own errors, and the HTTP status to answer with, inside whatever an ORM or
 * the application wrapped them in: what the Express and Fastify adapters answer errors with.
 */
import { readField, walkErrorChain } from './error-chain.js'
import { TenantPoolError, type TenantPoolErrorCode } from '../errors.js'
import { isRlsViolationShape } from './rls-violation.js'

/**
 * The HTTP status of each pg-tenant error code, for errors an ORM rebuilt from a pg-tenant error
 * keeping only its `code`. The same as the classes' own `status` (tests/unit/error-chain.test.ts
 * checks that they agree).
 */
const STATUS_BY_CODE: Readonly<Record<TenantPoolErrorCode, number>> = {
  TENANT_REQUIRED: 401,
  INVALID_TENANT: 400,
  INVALID_OPTIONS: 500,
  INVALID_QUERY: 500,
  ROLE_NOT_ALLOWED: 403,
  ROLE_SWITCH_FAILED: 403,
  SCOPE_CLOSED: 500,
  TENANT_MISMATCH: 500,
  TRANSACTION_ABORTED: 500,
  SESSION_POOLING_REQUIRED: 500,
  INVALID_IDENTIFIER: 500,
  RELEASE_FAILED: 500,
  INTERNAL_ERROR: 500,
  TENANT_RESOLVE_FAILED: 500,
  CLI_USAGE: 400,
  TENANT_QUOTA_EXCEEDED: 429,
}

/**
 * Error classes that rebuild an error they caught as a new object, copying its `code` but keeping
 * no reference to it:
 * - Prisma 7's request handler turns any error with a `code` that reaches it into a
 *   `PrismaClientKnownRequestError` with that code and the message (packages/client/src/runtime/
 *   RequestHandler.ts, `handleRequestError`): a `TenantRequiredError` that `db.pool.query` rejected
 *   with comes out as `PrismaClientKnownRequestError { code: 'TENANT_REQUIRED' }`;
 * - MikroORM's `DriverException` copies every own property of the error (code, status, message)
 *   (packages/core/src/exceptions.ts).
 * Recognised by name and a pg-tenant code together: neither alone is enough.
 */
const REBUILDERS = new Set(['PrismaClientKnownRequestError', 'DriverException'])

function isTenantPoolError(node: object): node is TenantPoolError {
  try {
    return node instanceof TenantPoolError
  } catch {
    return false
  }
}

function httpStatus(value: unknown): number | undefined {
  return typeof value === 'number' && Number.isInteger(value) && value >= 400 && value <= 599
    ? value
    : undefined
}

/**
 * The error's own HTTP status, as Express and Fastify read it: `status`, else `statusCode`, when it
 * is an integer in 400-599. `undefined` for anything else.
 */
export function ownHttpStatus(err: unknown): number | undefined {
  if (typeof err !== 'object' || err === null) return undefined
  return httpStatus(readField(err, 'status')) ?? httpStatus(readField(err, 'statusCode'))
}

/** What pg-tenant knows of an error: the HTTP status to answer with and the code that names it. */
export interface ChainClass {
  readonly status: number
  /** A pg-tenant error code, or `'RLS_VIOLATION'` for a write refused by an RLS policy. */
  readonly code: TenantPoolErrorCode | 'RLS_VIOLATION'
}

/**
 * What pg-tenant knows of `err`'s chain, ignoring the outermost error's own status: the first of,
 * outermost first, a pg-tenant error (its status and code), a pg-tenant error an ORM rebuilt (the
 * status of its code), an RLS violation (403, `RLS_VIOLATION`). `undefined` when the chain holds
 * none.
 */
export function chainClassOf(err: unknown): ChainClass | undefined {
  return walkErrorChain<ChainClass>(err, (node) => {
    if (isTenantPoolError(node)) {
      return { status: httpStatus(readField(node, 'status')) ?? 500, code: readField(node, 'code') as TenantPoolErrorCode }
    }
    const code = readField(node, 'code')
    if (typeof code === 'string' && Object.hasOwn(STATUS_BY_CODE, code)) {
      const name = readField(node, 'name')
      if (typeof name === 'string' && REBUILDERS.has(name)) {
        return { status: STATUS_BY_CODE[code as TenantPoolErrorCode], code: code as TenantPoolErrorCode }
      }
    }
    return isRlsViolationShape(node) ? { status: 403, code: 'RLS_VIOLATION' } : undefined
  })
}

/**
 * What pg-tenant knows of `err`'s chain, ignoring the outermost error's own status: the first of,
 * outermost first, a pg-tenant error (its status), a pg-tenant error an ORM rebuilt (the status of
 * its code), an RLS violation (403). `undefined` when the chain holds none.
 */
export function chainHttpStatus(err: unknown): number | undefined {
  return chainClassOf(err)?.status
}

/**
 * The pg-tenant error `err` is or wraps: `err` itself when it is one, else the first found through
 * `cause`, `driverError` (TypeORM), `meta.driverAdapterError` (Prisma) and `original` (Sequelize),
 * outermost first; `undefined` when there is none. Recognises errors of any copy of pg-tenant
 * (ESM and CJS builds), like `instanceof TenantPoolError`. Never throws.
 *
 * An ORM that rebuilds errors keeps no pg-tenant error to find: Prisma 7 turns a
 * `TenantRequiredError` rejected by `db.pool` into a `PrismaClientKnownRequestError` whose `code`
 * is `'TENANT_REQUIRED'`, and MikroORM copies its fields into a `DriverException`. Match on
 * `err.code` there; {@link httpStatusOf} knows both shapes.
 *
 * @param err - anything caught
 * @returns the pg-tenant error, or `undefined`
 *
 * @example
 * ```ts
 * import { tenantErrorOf, TenantRequiredError } from 'pg-tenant'
 *
 * try {
 *   await orm.select().from(events) // Drizzle, outside any tenant scope
 * } catch (err) {
 *   // err is a DrizzleQueryError; its cause is pg-tenant's TenantRequiredError
 *   if (tenantErrorOf(err) instanceof TenantRequiredError) console.error('no tenant bound')
 *   throw err
 * }
 * ```
 */
export function tenantErrorOf(err: unknown): TenantPoolError | undefined {
  return walkErrorChain(err, (node) => (isTenantPoolError(node) ? node : undefined))
}

/**
 * The HTTP status to answer `err` with, as pg-tenant's Express and Fastify adapters do:
 *
 * 1. the error's own `status` or `statusCode` (an integer in 400-599), when it has one;
 * 2. otherwise, looking through what it wraps (`cause`, `driverError`, `meta.driverAdapterError`,
 *    `original`), outermost first: a pg-tenant error's status (401 `TenantRequiredError`, 400
 *    `InvalidTenantError`, 403 `RoleNotAllowedError` and `RoleSwitchError`, 429
 *    `TenantQuotaError`, 500 for the others),
 *    also when Prisma or MikroORM rebuilt it keeping its `code`; or 403 for a write refused by an
 *    RLS policy ({@link isRlsViolation});
 * 3. otherwise `undefined`: pg-tenant has no opinion (answer 500, or your own mapping).
 *
 * Never throws.
 *
 * @param err - anything caught
 * @returns an HTTP status in 400-599, or `undefined`
 *
 * @example
 * ```ts
 * import { httpStatusOf } from 'pg-tenant/express'
 *
 * app.use((err: unknown, req: express.Request, res: express.Response, next: express.NextFunction) => {
 *   // 401 for a TenantRequiredError, also inside a DrizzleQueryError; 403 for an RLS refusal
 *   res.status(httpStatusOf(err) ?? 500).json({ error: 'request failed' }) // never err.message:
 *   // for a database error it is PostgreSQL's (errorResponseOf gives a safe body)
 * })
 * ```
 */
export function httpStatusOf(err: unknown): number | undefined {
  return ownHttpStatus(err) ?? chainHttpStatus(err)
}
