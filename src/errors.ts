/**
 * Every error pg-tenant raises extends {@link TenantPoolError} and carries a stable `code`.
 * Errors raised by PostgreSQL itself (a `DatabaseError` from `pg`) are never wrapped when they come
 * from the caller's own statement: they reach the caller unchanged, with their SQLSTATE `code`.
 */

/** The stable codes of pg-tenant's own errors. */
export type TenantPoolErrorCode =
  | 'TENANT_REQUIRED'
  | 'INVALID_TENANT'
  | 'INVALID_OPTIONS'
  | 'INVALID_QUERY'
  | 'ROLE_NOT_ALLOWED'
  | 'ROLE_SWITCH_FAILED'
  | 'SCOPE_CLOSED'
  | 'TENANT_MISMATCH'
  | 'TRANSACTION_ABORTED'
  | 'SESSION_POOLING_REQUIRED'
  | 'INVALID_IDENTIFIER'
  | 'RELEASE_FAILED'
  | 'INTERNAL_ERROR'
  | 'TENANT_RESOLVE_FAILED'
  | 'CLI_USAGE'
  | 'TENANT_QUOTA_EXCEEDED'

// The package may be loaded twice in one process (its ESM and its CJS build, or a subpath entry
// that carries its own copy of this module). `instanceof` must still hold across those copies, so
// identity is a brand registered on the global symbol registry plus the class's code, not the class
// object itself.
const brand: unique symbol = Symbol.for('pg-tenant.error') as never

/**
 * The base class of every pg-tenant error.
 *
 * @example
 * ```ts
 * try {
 *   await db.query('select 1')
 * } catch (err) {
 *   if (err instanceof TenantPoolError) console.error(err.code) // e.g. 'TENANT_REQUIRED'
 * }
 * ```
 */
export class TenantPoolError extends Error {
  /** The code every instance of this class carries; `undefined` on the base class. */
  static readonly code: TenantPoolErrorCode | undefined = undefined
  /** A stable, machine-readable code. Match on this, not on `message`. */
  readonly code: TenantPoolErrorCode
  /** The HTTP status an adapter answers with when this error ends a request. */
  readonly status: number
  /** Alias of {@link TenantPoolError.status}, for frameworks that read `statusCode`. */
  readonly statusCode: number
  declare readonly [brand]: true

  /**
   * @param code - the stable code
   * @param message - a human-readable explanation
   * @param options - `cause`: the underlying error, if any; `status`: the HTTP status (default 500)
   */
  constructor(
    code: TenantPoolErrorCode,
    message: string,
    options: { cause?: unknown; status?: number } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause })
    this.name = new.target.name
    this.code = code
    this.status = options.status ?? 500
    this.statusCode = this.status
    Object.defineProperty(this, brand, { value: true })
  }

  /** `instanceof` that also recognises instances made by another copy of this package. */
  static override [Symbol.hasInstance](value: unknown): boolean {
    if (typeof value !== 'object' || value === null || !(value as Record<symbol, unknown>)[brand]) {
      return false
    }
    const code = (this as { code?: TenantPoolErrorCode }).code
    return code === undefined || (value as TenantPoolError).code === code
  }
}

/**
 * A query ran where no tenant is bound (outside `withTenant`, `runWithTenant` and
 * `withoutTenant`). The query was not sent and no client was taken from the pool.
 *
 * @example
 * ```ts
 * await db.query('select * from events') // throws TenantRequiredError (HTTP 401 in the adapters)
 * ```
 */
export class TenantRequiredError extends TenantPoolError {
  static override readonly code = 'TENANT_REQUIRED' as const
  constructor(message = 'no tenant is bound: run this inside withTenant() or runWithTenant()') {
    super('TENANT_REQUIRED', message, { status: 401 })
  }
}

/**
 * A tenant, tenant id, role name or setting value was malformed: not a string, empty, too long,
 * containing a NUL character or an unpaired UTF-16 surrogate, or an object with nothing to apply.
 *
 * @example
 * ```ts
 * await db.withTenant('', fn) // throws InvalidTenantError (HTTP 400 in the adapters)
 * ```
 */
export class InvalidTenantError extends TenantPoolError {
  static override readonly code = 'INVALID_TENANT' as const
  constructor(message: string) {
    super('INVALID_TENANT', message, { status: 400 })
  }
}

/**
 * `createTenantPool` was given options it cannot honour, such as a setting name outside
 * `prefix.name` identifier syntax. Raised at construction, before any query.
 *
 * @example
 * ```ts
 * createTenantPool(pool, { setting: "x'; drop table t" }) // throws InvalidOptionsError
 * ```
 */
export class InvalidOptionsError extends TenantPoolError {
  static override readonly code = 'INVALID_OPTIONS' as const
  constructor(message: string) {
    super('INVALID_OPTIONS', message)
  }
}

/**
 * `db.query` was called with something that is neither SQL text nor a `{ text }` config object.
 * Nothing was sent.
 *
 * @example
 * ```ts
 * await db.query(42 as never) // rejects with InvalidQueryError
 * ```
 */
export class InvalidQueryError extends TenantPoolError {
  static override readonly code = 'INVALID_QUERY' as const
  constructor(message: string) {
    super('INVALID_QUERY', message)
  }
}

/**
 * A tenant asked for a role that is not on the pool's `roles` allow-list. Raised before any SQL.
 *
 * @example
 * ```ts
 * const db = createTenantPool(pool, { roles: [/^sales_[0-9]+$/] })
 * await db.withTenant({ role: 'postgres' }, fn) // throws RoleNotAllowedError (HTTP 403)
 * ```
 */
export class RoleNotAllowedError extends TenantPoolError {
  static override readonly code = 'ROLE_NOT_ALLOWED' as const
  /** The role that was refused. */
  readonly role: string
  constructor(role: string) {
    super('ROLE_NOT_ALLOWED', `role ${JSON.stringify(role)} is not on the roles allow-list`, {
      status: 403,
    })
    this.role = role
  }
}

/**
 * PostgreSQL refused to switch to an allowed role: it does not exist, or the login role is not a
 * member of it. `cause` is the `pg` error (SQLSTATE in `cause.code`, e.g. `42704` or `42501`). The
 * client was rolled back and checked before it went back to the pool.
 *
 * @example
 * ```ts
 * try { await db.withTenant({ role: 'sales_404' }, () => db.query('select 1')) }
 * catch (err) { if (err instanceof RoleSwitchError) console.log(err.role, err.cause) }
 * ```
 */
export class RoleSwitchError extends TenantPoolError {
  static override readonly code = 'ROLE_SWITCH_FAILED' as const
  /** The role that could not be set. */
  readonly role: string
  constructor(role: string, cause: unknown) {
    const reason = cause instanceof Error ? `: ${cause.message}` : ''
    super('ROLE_SWITCH_FAILED', `could not switch to role ${JSON.stringify(role)}${reason}`, {
      cause,
      status: 403,
    })
    this.role = role
  }
}

/**
 * A query was issued through a scope that has already ended: a floating promise or a timer that
 * outlived its `withTenant`, or a scope whose transaction was ended by a `COMMIT`/`ROLLBACK` sent
 * as a plain query. The query was not sent.
 *
 * @example
 * ```ts
 * await db.withTenant('org_1', async () => {
 *   setTimeout(() => db.query('delete from events'), 10) // rejects with ScopeClosedError
 * })
 * ```
 */
export class ScopeClosedError extends TenantPoolError {
  static override readonly code = 'SCOPE_CLOSED' as const
  constructor(message = 'this tenant scope has ended; the query was not sent') {
    super('SCOPE_CLOSED', message)
  }
}

/**
 * `withTenant` (or `runWithTenant`) for one tenant was called inside a scope bound to another.
 * Scopes of the same tenant join; scopes of different tenants never silently open a second
 * connection.
 *
 * @example
 * ```ts
 * await db.withTenant('org_1', () => db.withTenant('org_2', fn)) // throws TenantMismatchError
 * ```
 */
export class TenantMismatchError extends TenantPoolError {
  static override readonly code = 'TENANT_MISMATCH' as const
  constructor(message = 'a scope for another tenant is already open here') {
    super('TENANT_MISMATCH', message)
  }
}

/**
 * The callback of `withTenant` or `transaction` returned normally, but its transaction had been
 * aborted by an error the callback caught. PostgreSQL would answer `COMMIT` with a silent
 * `ROLLBACK`; pg-tenant rolls back and raises this instead, so no caller mistakes lost writes for
 * saved ones.
 *
 * @example
 * ```ts
 * await db.withTenant('org_1', async () => {
 *   await db.query('insert into t values (1/0)').catch(() => {}) // aborts the transaction
 * }) // rejects with TransactionAbortedError
 * ```
 */
export class TransactionAbortedError extends TenantPoolError {
  static override readonly code = 'TRANSACTION_ABORTED' as const
  constructor(
    message = 'the transaction was aborted by an earlier error and has been rolled back',
    options: { cause?: unknown } = {},
  ) {
    super('TRANSACTION_ABORTED', message, options)
  }
}

/**
 * Scope `session` found its statements answered by two different server backends: a pooler in
 * transaction (or statement) mode sits between the pool and PostgreSQL, so session settings may
 * have been left on a server connection another client now uses. The client is destroyed and the
 * pool refuses every later `session` scope with this error. Use scope `'transaction'` behind
 * PgBouncer's transaction pooling, or session pooling.
 *
 * @example
 * ```ts
 * const db = createTenantPool(poolThroughPgBouncer, { scope: 'session' })
 * await db.withTenant('org_1', fn) // may reject with SessionPoolingError
 * ```
 */
export class SessionPoolingError extends TenantPoolError {
  static override readonly code = 'SESSION_POOLING_REQUIRED' as const
  constructor(message = 'scope "session" needs session pooling: two server backends answered one scope') {
    super('SESSION_POOLING_REQUIRED', message)
  }
}

/**
 * A name given to a SQL helper (table, column, schema, policy or role) cannot be used as a
 * PostgreSQL identifier: not a string, empty, longer than 63 bytes (PostgreSQL would silently
 * truncate it into another name), containing a control character or an unpaired UTF-16 surrogate,
 * or a role name PostgreSQL reserves. Nothing was generated.
 *
 * @example
 * ```ts
 * tenantPolicySql({ table: '', column: 'org_id' }) // throws InvalidIdentifierError
 * ```
 */
export class InvalidIdentifierError extends TenantPoolError {
  static override readonly code = 'INVALID_IDENTIFIER' as const
  constructor(message: string) {
    super('INVALID_IDENTIFIER', message)
  }
}

/**
 * A `db.pool.connect()` client could not be confirmed clean when it was released (its closing
 * ROLLBACK failed, a statement went unanswered, the release canary found it dirty, ...). The
 * connection was destroyed, never reused. `release()` returns nothing, so this error is emitted on
 * the pool's `'error'` event (when the pool has listeners; otherwise as a process warning) and
 * published on the `pg-tenant:destroy` diagnostics channel. `reason` says why (see `DestroyReason`).
 *
 * @example
 * ```ts
 * db.pool.on('error', (err) => {
 *   if (err instanceof ReleaseError) console.error(`pg-tenant destroyed a connection: ${err.reason}`)
 * })
 * ```
 */
export class ReleaseError extends TenantPoolError {
  static override readonly code = 'RELEASE_FAILED' as const
  /** Why the connection was destroyed (a `DestroyReason`). */
  readonly reason: string
  constructor(reason: string, cause?: unknown) {
    super('RELEASE_FAILED', `a db.pool.connect() client could not be confirmed clean on release (${reason}); its connection was destroyed`, {
      cause,
    })
    this.reason = reason
  }
}

/**
 * Something that cannot happen did: a bug in pg-tenant (or a pg look-alike that broke its
 * contract, such as a pool that handed out no client). The connection involved is never reused.
 * Please report it, with `cause` when there is one.
 *
 * @example
 * ```ts
 * try { await db.query('select 1') } catch (err) {
 *   if (err instanceof InternalError) console.error('pg-tenant bug, please report', err)
 * }
 * ```
 */
export class InternalError extends TenantPoolError {
  static override readonly code = 'INTERNAL_ERROR' as const
  constructor(message: string, cause?: unknown) {
    super('INTERNAL_ERROR', `pg-tenant: ${message}`, { cause })
  }
}

/** `value` if it is an Error, else an InternalError that carries it as `cause`. */
export function asError(value: unknown, what = 'a non-Error value was thrown'): Error {
  return value instanceof Error ? value : new InternalError(`${what}: ${String(value)}`, value)
}

/**
 * An adapter's `resolve(req)` threw (or rejected with) a value that is no error at all, such as
 * `undefined`: the request ends with this error (500) instead of going on as if nothing failed.
 * What the resolver threw is its `cause`. Errors a resolver throws are passed on unchanged.
 *
 * @example
 * ```ts
 * app.use(tenantMiddleware(db, { resolve: () => { throw undefined } })) // next(TenantResolveError)
 * ```
 */
export class TenantResolveError extends TenantPoolError {
  static override readonly code = 'TENANT_RESOLVE_FAILED' as const
  constructor(thrown: unknown) {
    super('TENANT_RESOLVE_FAILED', `the tenant resolver failed with ${String(thrown)}`, { cause: thrown })
  }
}

/**
 * Why a {@link TenantQuotaError} was raised: the operation waited `maxWaitMs` for its tenant's
 * quota (`'timeout'`), or `maxWaiting` operations of its tenant were already waiting
 * (`'queue-full'`).
 *
 * @example
 * ```ts
 * const reason: TenantQuotaReason = 'timeout'
 * ```
 */
export type TenantQuotaReason = 'timeout' | 'queue-full'

/**
 * A tenant already held all the connections `maxPerTenant` lets it hold, and this operation could
 * not wait for one: it waited `maxWaitMs` in its tenant's queue, or that queue already held
 * `maxWaiting` operations. Nothing was sent and no connection was taken. HTTP status 429 (Too Many
 * Requests: one tenant's load, not the server's health), with a `Retry-After: 1` header in
 * `headers`, which Express's and Fastify's own error handlers send (and {@link errorResponseOf}
 * returns).
 *
 * @example
 * ```ts
 * const db = createTenantPool(pool, { maxPerTenant: { connections: 2, maxWaitMs: 500 } })
 * try {
 *   await db.runWithTenant('org_42', () => db.query('select * from events'))
 * } catch (err) {
 *   if (err instanceof TenantQuotaError) console.warn(`busy tenant: ${err.reason}`) // 'timeout'
 * }
 * ```
 */
export class TenantQuotaError extends TenantPoolError {
  static override readonly code = 'TENANT_QUOTA_EXCEEDED' as const
  /** `'timeout'` or `'queue-full'`. */
  readonly reason: TenantQuotaReason
  /** The quota the tenant was at: `maxPerTenant`'s `connections`. */
  readonly connections: number
  /** Response headers for an HTTP answer, as `http-errors` carries them: `Retry-After`. */
  readonly headers: Readonly<Record<string, string>>
  constructor(reason: TenantQuotaReason, connections: number, bound: number) {
    const why =
      reason === 'timeout'
        ? `waited ${bound} ms (maxWaitMs) for one`
        : `${bound} operation${bound === 1 ? ' was' : 's were'} already waiting (maxWaiting)`
    super(
      'TENANT_QUOTA_EXCEEDED',
      `the tenant holds all ${connections} connection${connections === 1 ? '' : 's'} maxPerTenant allows and ${why}; nothing was sent`,
      { status: 429 },
    )
    this.reason = reason
    this.connections = connections
    this.headers = { 'Retry-After': '1' }
  }
}
