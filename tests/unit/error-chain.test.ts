/**
 * isRlsViolation, tenantErrorOf, httpStatusOf and errorResponseOf on the errors each ORM throws, built exactly as
 * the ORM builds them (each helper below cites the ORM source it follows), and on odd inputs.
 * tests/integration/rls-violation.test.ts runs the same against a real PostgreSQL and Drizzle.
 */
import { DrizzleQueryError } from 'drizzle-orm'
import pg from 'pg'
import { describe, expect, it } from 'vitest'
import { chainHttpStatus, ownHttpStatus } from '../../src/classify/error-status.js'
import { walkErrorChain } from '../../src/classify/error-chain.js'
import { errorResponseOf, type ErrorResponse } from '../../src/adapters/express.js'
import { errorResponseOf as fastifyErrorResponseOf } from '../../src/adapters/fastify.js'
import {
  httpStatusOf,
  InvalidIdentifierError,
  InvalidOptionsError,
  InvalidQueryError,
  InvalidTenantError,
  isRlsViolation,
  RoleNotAllowedError,
  RoleSwitchError,
  ScopeClosedError,
  SessionPoolingError,
  TenantMismatchError,
  TenantPoolError,
  tenantErrorOf,
  TenantQuotaError,
  TenantRequiredError,
  TransactionAbortedError,
} from '../../src/index.js'

// ---------------------------------------------------------------------------------------------
// pg: what pg-protocol's parser builds from an ErrorResponse (pg-protocol/src/parser.ts,
// parseErrorMessage): a DatabaseError whose name is 'error', with every field assigned.
// ---------------------------------------------------------------------------------------------
function pgError(fields: { message: string; code: string; routine?: string; detail?: string }): pg.DatabaseError {
  const err = new pg.DatabaseError(fields.message, 120, 'error')
  Object.assign(err, {
    severity: 'ERROR',
    code: fields.code,
    detail: fields.detail,
    hint: undefined,
    position: undefined,
    internalPosition: undefined,
    internalQuery: undefined,
    where: undefined,
    schema: undefined,
    table: undefined,
    column: undefined,
    dataType: undefined,
    constraint: undefined,
    file: 'execMain.c',
    line: '2179',
    routine: fields.routine,
  })
  return err
}

/** An INSERT refused by a policy's WITH CHECK, as PostgreSQL 15-18 raise it. */
const rlsError = () =>
  pgError({
    message: 'new row violates row-level security policy for table "events"',
    code: '42501',
    routine: 'ExecWithCheckOptions',
  })
/** A MERGE whose target row fails the UPDATE policy's USING (PostgreSQL 15+, execMain.c). */
const mergeRlsError = () =>
  pgError({
    message: 'target row violates row-level security policy (USING expression) for table "events"',
    code: '42501',
    routine: 'ExecWithCheckOptions',
  })
/** A missing GRANT: same SQLSTATE, another routine (aclchk.c). */
const grantError = () =>
  pgError({ message: 'permission denied for table parents', code: '42501', routine: 'aclcheck_error' })
/** row_security = off on a table with RLS (rls.c, check_enable_rls): not a tenant's doing either. */
const rowSecurityOffError = () =>
  pgError({
    message: 'query would be affected by row-level security policy for table "events"',
    code: '42501',
    routine: 'check_enable_rls',
  })
const divisionError = () => pgError({ message: 'division by zero', code: '22012', routine: 'int4div' })

// ---------------------------------------------------------------------------------------------
// Prisma 7 with @prisma/adapter-pg (prisma/prisma, 7.9.1 and 7.10.0-dev).
// ---------------------------------------------------------------------------------------------

/** packages/driver-adapter-utils/src/error.ts */
class DriverAdapterError extends Error {
  override name = 'DriverAdapterError'
  override cause: Record<string, unknown>
  constructor(payload: Record<string, unknown>) {
    super(typeof payload['message'] === 'string' ? payload['message'] : String(payload['kind']))
    this.cause = payload
  }
}

/**
 * packages/adapter-pg/src/errors.ts, convertDriverError: a pg DatabaseError whose code has no
 * mapping of its own (42501 has none) becomes the 'postgres' kind; `routine` is not kept. Anything
 * that is not a socket, TLS or driver error (no `severity`) is rethrown unchanged.
 */
function convertDriverError(error: pg.DatabaseError): Record<string, unknown> {
  if (typeof error.severity !== 'string') throw error
  return {
    originalCode: error.code,
    originalMessage: error.message,
    kind: 'postgres',
    code: error.code ?? 'N/A',
    severity: error.severity ?? 'N/A',
    message: error.message,
    detail: error.detail,
    column: error.column,
    hint: error.hint,
  }
}

/** packages/client-runtime-utils/src/errors/PrismaClientKnownRequestError.ts */
class PrismaClientKnownRequestError extends Error {
  code: string
  meta?: Record<string, unknown>
  clientVersion: string
  constructor(message: string, { code, clientVersion, meta }: { code: string; clientVersion: string; meta?: Record<string, unknown> }) {
    super(message)
    this.name = 'PrismaClientKnownRequestError'
    this.code = code
    this.clientVersion = clientVersion
    this.meta = meta
  }
}

/** PrismaPgAdapter.onError (packages/adapter-pg/src/pg.ts) on a failed query. */
function prismaAdapterError(pgErr: pg.DatabaseError): DriverAdapterError {
  return new DriverAdapterError(convertDriverError(pgErr))
}

/**
 * Prisma 7.9+: rethrowAsUserFacing (packages/client-engine-runtime/src/user-facing-error.ts)
 * turns an unmapped 'postgres' kind into UserFacingError P2039 (P2010 for $queryRaw) with meta
 * { driverAdapterError }; ClientEngine makes it a PrismaClientKnownRequestError, and
 * RequestHandler.handleRequestError rebuilds it with the callsite in the message and
 * { modelName, ...meta } (packages/client/src/runtime/RequestHandler.ts).
 */
function prismaKnownError(pgErr: pg.DatabaseError, raw = false): PrismaClientKnownRequestError {
  const adapterError = prismaAdapterError(pgErr)
  const cause = adapterError.cause
  const message = raw
    ? `Raw query failed. Code: \`${String(cause.originalCode)}\`. Message: \`${String(cause.originalMessage)}\``
    : `Database error. Code: \`${String(cause.originalCode)}\`. Message: \`${String(cause.originalMessage)}\``
  return new PrismaClientKnownRequestError(`\nInvalid \`prisma.event.create()\` invocation:\n\n\n${message}`, {
    code: raw ? 'P2010' : 'P2039',
    clientVersion: '7.10.1',
    meta: raw ? { driverAdapterError: adapterError } : { modelName: 'Event', driverAdapterError: adapterError },
  })
}

/**
 * Prisma 7.0-7.8: rethrowAsUserFacing rethrows a 'postgres' kind DriverAdapterError as it is, and
 * RequestHandler.handleRequestError, finding no `code` on it, sets clientVersion and rethrows it.
 */
function prismaBareAdapterError(pgErr: pg.DatabaseError): DriverAdapterError {
  return Object.assign(prismaAdapterError(pgErr), { clientVersion: '7.8.0' })
}

/**
 * A pg-tenant error rejected by db.pool.query inside the adapter: convertDriverError rethrows it
 * unchanged, and RequestHandler.handleRequestError, finding a `code` on it, throws
 * `new PrismaClientKnownRequestError(message, { code: error.code, meta })`: the original is lost.
 */
function prismaRebuilt(err: TenantPoolError): PrismaClientKnownRequestError {
  return new PrismaClientKnownRequestError(`\nInvalid \`prisma.event.findMany()\` invocation:\n\n\n${err.message}`, {
    code: err.code,
    clientVersion: '7.10.1',
    meta: { modelName: 'Event' },
  })
}

// ---------------------------------------------------------------------------------------------
// TypeORM 1.1 (and 0.3.x): src/error/TypeORMError.ts, src/error/QueryFailedError.ts and
// ObjectUtils.assign (src/util/ObjectUtils.ts); PostgresQueryRunner.query wraps every failed query.
// ---------------------------------------------------------------------------------------------
class TypeORMError extends Error {
  override get name() {
    return this.constructor.name
  }
  constructor(message?: string) {
    super(message)
    Object.setPrototypeOf(this, new.target.prototype)
  }
}
class QueryFailedError<T extends Error = Error> extends TypeORMError {
  constructor(
    readonly query: string,
    readonly parameters: unknown[] | undefined,
    readonly driverError: T,
  ) {
    super(driverError.toString().replace(/^error: /, '').replace(/^Error: /, '').replace(/^Request/, ''))
    if (driverError) {
      const { name: _, ...otherProperties } = driverError as T & Record<string, unknown>
      for (const prop of Object.getOwnPropertyNames(otherProperties)) {
        ;(this as Record<string, unknown>)[prop] = (otherProperties as Record<string, unknown>)[prop]
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// MikroORM 6.6 / 7.1: DriverException copies every own property of the driver's error and keeps
// no reference to it (packages/core/src/exceptions.ts); PostgreSqlExceptionConverter appends
// detail and hint to the driver error's message first, and only maps SQLSTATEs other than 42501
// to subclasses (packages/sql/src/dialects/postgresql/PostgreSqlExceptionConverter.ts).
// ---------------------------------------------------------------------------------------------
class DriverException extends Error {
  code?: string
  constructor(previous: Error) {
    super(previous.message)
    Object.getOwnPropertyNames(previous).forEach(
      (k) => ((this as Record<string, unknown>)[k] = (previous as unknown as Record<string, unknown>)[k]),
    )
    this.name = this.constructor.name
    Error.captureStackTrace(this, this.constructor)
  }
}
function mikroOrmConvert(exception: Error & Record<string, unknown>): DriverException {
  if (typeof exception.detail === 'string' && exception.detail.trim()) exception.message += '\n - detail: ' + exception.detail
  if (typeof exception.hint === 'string' && exception.hint.trim()) exception.message += '\n - hint: ' + exception.hint
  return new DriverException(exception)
}

// ---------------------------------------------------------------------------------------------
// Knex 3.3: executeQuery (lib/execution/internal/query-executioner.js) rethrows the driver's error
// after `err.message = <sql> + ' - ' + err.message`.
// Kysely 0.28/0.29: PostgresConnection.executeQuery rethrows it after extendStackTrace
// (src/util/stack-trace-utils.ts) appended to its stack.
// Sequelize 6: DatabaseError keeps it as `parent` and `original` (lib/errors/database-error.js).
// ---------------------------------------------------------------------------------------------
function knexError<E extends Error>(err: E, sql: string): E {
  err.message = sql + ' - ' + err.message
  return err
}
function kyselyError<E extends Error>(err: E): E {
  err.stack += '\n    at PostgresConnection.executeQuery (kysely/dist/esm/dialect/postgres/postgres-driver.js:1:1)'
  return err
}
class SequelizeDatabaseError extends Error {
  parent: Error
  original: Error
  constructor(parent: Error) {
    super(parent.message)
    this.name = 'SequelizeDatabaseError'
    this.parent = parent
    this.original = parent
  }
}

const sql = 'insert into "events" ("org_id", "kind") values ($1, $2)'

describe('isRlsViolation through ORM wrappers', () => {
  const cases: Array<[string, (e: pg.DatabaseError) => unknown]> = [
    ['pg itself', (e) => e],
    ['new Error(msg, { cause })', (e) => new Error('could not save', { cause: e })],
    ['three causes deep', (e) => new Error('a', { cause: new Error('b', { cause: new Error('c', { cause: e }) }) })],
    ['Drizzle 0.45 DrizzleQueryError', (e) => new DrizzleQueryError(sql, ['org_2', 'x'], e)],
    ['Prisma 7.9+ PrismaClientKnownRequestError P2039', (e) => prismaKnownError(e)],
    ['Prisma 7.9+ PrismaClientKnownRequestError P2010 ($queryRaw)', (e) => prismaKnownError(e, true)],
    ['Prisma 7.0-7.8 DriverAdapterError', (e) => prismaBareAdapterError(e)],
    ['TypeORM QueryFailedError', (e) => new QueryFailedError(sql, ['org_2', 'x'], e)],
    ['MikroORM DriverException', (e) => mikroOrmConvert(e as pg.DatabaseError & Record<string, unknown>)],
    ['Knex (message rewritten)', (e) => knexError(e, sql)],
    ['Kysely (stack extended)', (e) => kyselyError(e)],
    ['Sequelize DatabaseError', (e) => new SequelizeDatabaseError(e)],
    ['Drizzle inside new Error({ cause })', (e) => new Error('handler failed', { cause: new DrizzleQueryError(sql, [], e) })],
  ]

  for (const [name, wrap] of cases) {
    it(`${name}: an RLS refusal is one, a missing GRANT and other errors are not`, () => {
      expect(isRlsViolation(wrap(rlsError()))).toBe(true)
      expect(isRlsViolation(wrap(mergeRlsError()))).toBe(true)
      expect(isRlsViolation(wrap(grantError()))).toBe(false)
      expect(isRlsViolation(wrap(rowSecurityOffError()))).toBe(false)
      expect(isRlsViolation(wrap(divisionError()))).toBe(false)

      expect(httpStatusOf(wrap(rlsError()))).toBe(403)
      expect(httpStatusOf(wrap(grantError()))).toBeUndefined()
      expect(httpStatusOf(wrap(divisionError()))).toBeUndefined()
      expect(tenantErrorOf(wrap(rlsError()))).toBeUndefined()
    })
  }

  it("keeps what each ORM keeps of pg's error where the tests above rely on it", () => {
    // Drizzle: the very object, as `cause`.
    const drizzle = new DrizzleQueryError(sql, [], rlsError())
    expect(drizzle.cause).toMatchObject({ code: '42501', routine: 'ExecWithCheckOptions' })
    // Prisma: code and message, under two names each; no routine.
    const prisma = prismaKnownError(rlsError())
    const mapped = (prisma.meta!.driverAdapterError as DriverAdapterError).cause
    expect(mapped).toMatchObject({ kind: 'postgres', code: '42501', originalCode: '42501' })
    expect(mapped).not.toHaveProperty('routine')
    expect(prisma.code).toBe('P2039')
    // TypeORM: the fields copied onto the wrapper, and the original as driverError.
    const typeorm = new QueryFailedError(sql, [], rlsError())
    expect(typeorm).toMatchObject({ name: 'QueryFailedError', code: '42501', routine: 'ExecWithCheckOptions' })
    expect(typeorm.driverError).toBeInstanceOf(pg.DatabaseError)
    // MikroORM: the fields copied, no reference kept.
    const mikro = mikroOrmConvert(rlsError() as pg.DatabaseError & Record<string, unknown>)
    expect(mikro).toMatchObject({ name: 'DriverException', code: '42501', routine: 'ExecWithCheckOptions' })
    expect(Object.values(mikro).some((v) => v instanceof pg.DatabaseError)).toBe(false)
  })

  it('needs the English message only where the routine is gone (Prisma), and then is never fooled', () => {
    // A translated message with the routine: still recognised.
    const german = pgError({
      message: 'neue Zeile verletzt Policy für Sicherheit auf Zeilenebene für Tabelle »events«',
      code: '42501',
      routine: 'ExecWithCheckOptions',
    })
    expect(isRlsViolation(german)).toBe(true)
    expect(isRlsViolation(new DrizzleQueryError(sql, [], german))).toBe(true)
    // Through Prisma the routine is dropped: a translated message is not recognised (500, not 403).
    expect(isRlsViolation(prismaKnownError(german))).toBe(false)
    // Prisma's P2039 message quotes pg's, but its code is P2039: the outer error alone is not one.
    const outer = prismaKnownError(rlsError())
    expect(isRlsViolation({ code: outer.code, message: outer.message })).toBe(false)
    // A shape Prisma might map 42501 to in the future (a named kind with only the original fields).
    expect(isRlsViolation(new DriverAdapterError({ kind: 'InsufficientPrivilege', originalCode: '42501', originalMessage: rlsError().message }))).toBe(true)
    expect(isRlsViolation(new DriverAdapterError({ kind: 'InsufficientPrivilege', originalCode: '42501', originalMessage: grantError().message }))).toBe(false)
    // A message that merely mentions row-level security is not one.
    expect(isRlsViolation({ code: '42501', message: rowSecurityOffError().message })).toBe(false)
    expect(isRlsViolation({ code: '42501', message: 'permission denied for table t' })).toBe(false)
    expect(isRlsViolation({ code: '42501', message: rlsError().message })).toBe(true)
    // The routine wins over the message when both are there.
    expect(isRlsViolation({ code: '42501', routine: 'aclcheck_error', message: rlsError().message })).toBe(false)
  })
})

describe('pg-tenant errors through ORM wrappers', () => {
  it('finds a TenantRequiredError wrapped by cause (Drizzle), driverError (TypeORM), original (Sequelize)', () => {
    const cases: unknown[] = []
    const errs: TenantRequiredError[] = []
    const wrapped = (wrap: (e: TenantRequiredError) => unknown) => {
      const e = new TenantRequiredError()
      errs.push(e)
      cases.push(wrap(e))
    }
    wrapped((e) => e)
    wrapped((e) => new Error('x', { cause: e }))
    wrapped((e) => new DrizzleQueryError('select 1', [], e))
    wrapped((e) => new Error('route failed', { cause: new DrizzleQueryError('select 1', [], e) }))
    wrapped((e) => new QueryFailedError('select 1', [], e))
    wrapped((e) => new SequelizeDatabaseError(e))
    wrapped((e) => knexError(e, 'select 1'))
    cases.forEach((c, i) => {
      expect(tenantErrorOf(c)).toBe(errs[i])
      expect(httpStatusOf(c)).toBe(401)
      expect(isRlsViolation(c)).toBe(false)
    })
  })

  it("TypeORM's QueryFailedError copies code and status from a pg-tenant error", () => {
    const q = new QueryFailedError('select 1', [], new TenantRequiredError())
    expect(q).toMatchObject({ name: 'QueryFailedError', code: 'TENANT_REQUIRED', status: 401, statusCode: 401 })
    expect(ownHttpStatus(q)).toBe(401)
    expect(q).not.toBeInstanceOf(TenantPoolError) // the brand is a symbol, not copied
  })

  it('recognises the errors Prisma and MikroORM rebuild from a pg-tenant error by their code', () => {
    const prisma = prismaRebuilt(new TenantRequiredError())
    expect(prisma).toMatchObject({ name: 'PrismaClientKnownRequestError', code: 'TENANT_REQUIRED' })
    expect(prisma).not.toHaveProperty('status')
    expect(httpStatusOf(prisma)).toBe(401)
    expect(httpStatusOf(new Error('wrapped', { cause: prisma }))).toBe(401)
    expect(tenantErrorOf(prisma)).toBeUndefined() // nothing of pg-tenant's is left in it

    const mikro = mikroOrmConvert(new TenantRequiredError() as TenantRequiredError & Record<string, unknown>)
    expect(mikro).toMatchObject({ name: 'DriverException', code: 'TENANT_REQUIRED', status: 401 })
    expect(httpStatusOf(mikro)).toBe(401)
    expect(chainHttpStatus(new Error('wrapped', { cause: mikro }))).toBe(401)

    // A pg-tenant code alone, on anything else, is not taken for a pg-tenant error.
    expect(httpStatusOf({ code: 'TENANT_REQUIRED' })).toBeUndefined()
    expect(httpStatusOf(Object.assign(new Error('x'), { code: 'INVALID_TENANT' }))).toBeUndefined()
    expect(httpStatusOf({ name: 'PrismaClientKnownRequestError', code: 'P2002' })).toBeUndefined()
  })

  it('answers each pg-tenant error with its own status, wrapped or rebuilt (the code table agrees with the classes)', () => {
    const all: TenantPoolError[] = [
      new TenantRequiredError(),
      new InvalidTenantError('bad'),
      new InvalidOptionsError('bad'),
      new InvalidQueryError('bad'),
      new RoleNotAllowedError('r'),
      new RoleSwitchError('r', new Error('denied')),
      new ScopeClosedError(),
      new TenantMismatchError(),
      new TransactionAbortedError(),
      new SessionPoolingError(),
      new InvalidIdentifierError('bad'),
    ]
    expect(new Set(all.map((e) => e.code)).size).toBe(11)
    for (const err of all) {
      expect(httpStatusOf(err)).toBe(err.status)
      expect(httpStatusOf(new Error('x', { cause: err }))).toBe(err.status)
      expect(httpStatusOf(new DrizzleQueryError('select 1', [], err))).toBe(err.status)
      expect(httpStatusOf(prismaRebuilt(err))).toBe(err.status)
      expect(tenantErrorOf(new Error('x', { cause: err }))).toBe(err)
    }
  })

  it('recognises a pg-tenant error made by another copy of the package (its brand)', () => {
    const foreign = Object.defineProperty(
      Object.assign(new Error('no tenant'), { code: 'TENANT_REQUIRED', status: 401, statusCode: 401 }),
      Symbol.for('pg-tenant.error'),
      { value: true },
    )
    expect(tenantErrorOf(new Error('x', { cause: foreign }))).toBe(foreign)
    expect(chainHttpStatus(new Error('x', { cause: foreign }))).toBe(401)
  })

  it('takes the outermost answer: the error’s own status, then the nearest pg-tenant error or RLS refusal', () => {
    // A status of the outer error's own wins (an application's HttpError wrapping).
    const http = Object.assign(new Error('conflict', { cause: rlsError() }), { status: 409 })
    expect(httpStatusOf(http)).toBe(409)
    expect(chainHttpStatus(http)).toBe(403)
    // Out-of-range and non-integer statuses are not statuses.
    expect(httpStatusOf(Object.assign(new Error('x', { cause: rlsError() }), { status: 200 }))).toBe(403)
    expect(httpStatusOf(Object.assign(new Error('x', { cause: rlsError() }), { statusCode: '404' }))).toBe(403)
    expect(httpStatusOf(Object.assign(new Error('x', { cause: rlsError() }), { status: 403.5 }))).toBe(403)
    // RoleSwitchError wraps pg's 42501 "permission denied to set role": the pg-tenant error decides.
    const roleSwitch = new RoleSwitchError('sales_9', pgError({ message: 'permission denied to set role "sales_9"', code: '42501', routine: 'check_role_membership' }))
    expect(httpStatusOf(new Error('x', { cause: roleSwitch }))).toBe(403)
    expect(isRlsViolation(roleSwitch)).toBe(false)
    // The nearer of two wins: a TenantRequiredError wrapping an RLS error answers 401.
    const both = new Error('x', { cause: Object.assign(new TenantRequiredError(), { cause: rlsError() }) })
    expect(chainHttpStatus(both)).toBe(401)
    expect(isRlsViolation(both)).toBe(true)
  })
})

describe('odd inputs', () => {
  it('answers false / undefined for primitives and plain values', () => {
    for (const value of [undefined, null, 0, 42501, '42501', true, Symbol('x'), 10n, () => 1, [], {}, new Date()]) {
      expect(isRlsViolation(value)).toBe(false)
      expect(tenantErrorOf(value)).toBeUndefined()
      expect(httpStatusOf(value)).toBeUndefined()
    }
    expect(isRlsViolation({ code: 42501 })).toBe(false)
    expect(isRlsViolation(Object.create(null))).toBe(false)
    expect(isRlsViolation(Object.assign(Object.create(null), { code: '42501', routine: 'ExecWithCheckOptions' }))).toBe(true)
  })

  it('does not throw on getters that throw, nor on proxies whose every trap throws', () => {
    const throwing = {
      get code(): never {
        throw new Error('getter')
      },
      get cause(): never {
        throw new Error('getter')
      },
      get status(): never {
        throw new Error('getter')
      },
    }
    const hostile = new Proxy(
      {},
      {
        get() {
          throw new Error('trap')
        },
        has() {
          throw new Error('trap')
        },
        getPrototypeOf() {
          throw new Error('trap')
        },
        getOwnPropertyDescriptor() {
          throw new Error('trap')
        },
        ownKeys() {
          throw new Error('trap')
        },
      },
    )
    const { proxy: revoked, revoke } = Proxy.revocable({}, {})
    revoke()
    for (const value of [throwing, hostile, revoked, new Error('x', { cause: hostile }), new Error('x', { cause: revoked })]) {
      expect(() => isRlsViolation(value)).not.toThrow()
      expect(isRlsViolation(value)).toBe(false)
      expect(tenantErrorOf(value)).toBeUndefined()
      expect(httpStatusOf(value)).toBeUndefined()
    }
    // A throwing getter beside a good link does not hide the link.
    const beside = Object.defineProperty({ driverError: rlsError() }, 'cause', {
      get() {
        throw new Error('getter')
      },
    })
    expect(isRlsViolation(beside)).toBe(true)
    // A proxy of a real error reads through.
    expect(isRlsViolation(new Proxy(rlsError(), {}))).toBe(true)
  })

  it('ends on cycles', () => {
    const a = new Error('a') as Error & { cause?: unknown }
    a.cause = a
    expect(isRlsViolation(a)).toBe(false)
    const b = new Error('b') as Error & { cause?: unknown }
    const c = new Error('c', { cause: b }) as Error & { driverError?: unknown }
    b.cause = c
    c.driverError = b
    expect(isRlsViolation(b)).toBe(false)
    expect(httpStatusOf(b)).toBeUndefined()
    // A cycle with the answer in it still finds it.
    const d = new Error('d', { cause: rlsError() }) as Error & { driverError?: unknown }
    d.driverError = d
    expect(isRlsViolation(d)).toBe(true)
  })

  it('goes 8 links deep, and no further', () => {
    const chain = (depth: number, inner: unknown) => {
      let err = inner
      for (let i = 0; i < depth; i++) err = new Error(`level ${i}`, { cause: err })
      return err
    }
    expect(isRlsViolation(chain(8, rlsError()))).toBe(true)
    expect(isRlsViolation(chain(9, rlsError()))).toBe(false)
    expect(tenantErrorOf(chain(8, new TenantRequiredError()))).toBeInstanceOf(TenantRequiredError)
    expect(tenantErrorOf(chain(9, new TenantRequiredError()))).toBeUndefined()
  })

  it('looks at a bounded number of objects, even when each read makes a new one', () => {
    let made = 0
    const endless: object = new Proxy(
      {},
      {
        get(_target, key) {
          if (key === 'cause' || key === 'driverError' || key === 'original') {
            made++
            return new Proxy({}, this)
          }
          return undefined
        },
      },
    )
    expect(isRlsViolation(endless)).toBe(false)
    expect(made).toBeLessThan(200)
    let visited = 0
    walkErrorChain(endless, () => {
      visited++
      return undefined
    })
    expect(visited).toBeLessThanOrEqual(32)
  })

  it('survives a visitor that throws', () => {
    expect(
      walkErrorChain(new Error('x', { cause: new Error('y') }), (node) => {
        if ((node as Error).message === 'x') throw new Error('visitor')
        return (node as Error).message
      }),
    ).toBe('y')
  })
})

describe('errorResponseOf', () => {
  const answer = (status: number, code: string, message: string): ErrorResponse => ({
    status,
    body: { error: { code, message } },
  })
  /** Everything an answer's JSON may not contain, whatever the error said. */
  const leaks = /violates|row-level security policy|permission denied|does not exist|sales_9|secret_role|app\.tenant_id|insert into|select|division|at |\.ts:/i

  it('answers each pg-tenant error with its status, its code and a fixed message, wrapped or rebuilt', () => {
    const cases: Array<[TenantPoolError, ErrorResponse]> = [
      [new TenantRequiredError(), answer(401, 'TENANT_REQUIRED', 'this request needs a tenant')],
      [new InvalidTenantError('invalid setting name "app.tenant_id"'), answer(400, 'INVALID_TENANT', "this request's tenant is invalid")],
      [new RoleNotAllowedError('secret_role'), answer(403, 'ROLE_NOT_ALLOWED', "this request's tenant may not be used")],
      [
        new RoleSwitchError('sales_9', pgError({ message: 'role "sales_9" does not exist', code: '42704', routine: 'get_role_oid' })),
        answer(403, 'ROLE_SWITCH_FAILED', "this request's tenant may not be used"),
      ],
    ]
    for (const [err, expected] of cases) {
      expect(errorResponseOf(err)).toEqual(expected)
      expect(errorResponseOf(new Error('route failed', { cause: err }))).toEqual(expected)
      expect(errorResponseOf(new DrizzleQueryError('select 1', [], err))).toEqual(expected)
      expect(errorResponseOf(new QueryFailedError('select 1', [], err))).toEqual(expected) // own status copied
      expect(errorResponseOf(prismaRebuilt(err))).toEqual(expected)
      expect(JSON.stringify(errorResponseOf(err))).not.toMatch(leaks)
    }
    // The 5xx ones: a generic 500, their code kept in the log.
    for (const err of [new ScopeClosedError(), new TenantMismatchError(), new TransactionAbortedError(), new InvalidOptionsError('x')]) {
      expect(errorResponseOf(err)).toEqual(answer(500, 'INTERNAL_SERVER_ERROR', 'Internal Server Error'))
      expect(errorResponseOf(new Error('x', { cause: err }))).toEqual(answer(500, 'INTERNAL_SERVER_ERROR', 'Internal Server Error'))
    }
  })

  it('answers a tenant over its quota 429 TENANT_QUOTA_EXCEEDED with Retry-After, wrapped or rebuilt', () => {
    const expected: ErrorResponse = {
      status: 429,
      body: { error: { code: 'TENANT_QUOTA_EXCEEDED', message: 'this tenant has too much work in progress; retry later' } },
      headers: { 'Retry-After': '1' },
    }
    for (const err of [new TenantQuotaError('timeout', 2, 500), new TenantQuotaError('queue-full', 1, 0)]) {
      expect(err.status).toBe(429)
      expect(err.headers).toEqual({ 'Retry-After': '1' }) // what Express's and Fastify's own handlers send
      expect(httpStatusOf(err)).toBe(429)
      expect(errorResponseOf(err)).toEqual(expected)
      expect(fastifyErrorResponseOf(err)).toEqual(expected)
      expect(errorResponseOf(new Error('route failed', { cause: err }))).toEqual(expected)
      expect(errorResponseOf(new DrizzleQueryError('select 1', [], err))).toEqual(expected)
      expect(errorResponseOf(prismaRebuilt(err))).toEqual(expected)
    }
    // No other answer carries headers.
    expect(errorResponseOf(new TenantRequiredError())).not.toHaveProperty('headers')
  })

  it('answers an RLS refusal 403 RLS_VIOLATION through every ORM wrapper, and other database errors a bare 500', () => {
    const rls = answer(403, 'RLS_VIOLATION', 'this tenant may not write this row')
    for (const err of [
      rlsError(),
      knexError(rlsError(), sql),
      kyselyError(rlsError()),
      new DrizzleQueryError(sql, [], rlsError()),
      new QueryFailedError(sql, [], rlsError()),
      prismaKnownError(rlsError()),
      mikroOrmConvert(rlsError() as pg.DatabaseError & Record<string, unknown>),
      new SequelizeDatabaseError(rlsError()),
    ]) {
      expect(errorResponseOf(err)).toEqual(rls)
    }
    for (const err of [grantError(), divisionError(), new DrizzleQueryError(sql, [], grantError()), new Error('boom'), 'a string', undefined, null, 42]) {
      const r = errorResponseOf(err)
      expect(r).toEqual(answer(500, 'INTERNAL_SERVER_ERROR', 'Internal Server Error'))
      expect(JSON.stringify(r)).not.toMatch(leaks)
    }
  })

  it("answers the application's own 4xx with the status's name, and its message only when exposed", () => {
    const own = (status: number, message: string, extra: object = {}) => Object.assign(new Error(message), { status }, extra)
    expect(errorResponseOf(own(404, 'no such client'))).toEqual(answer(404, 'NOT_FOUND', 'Not Found'))
    expect(errorResponseOf(own(404, 'no such client', { expose: true }))).toEqual(answer(404, 'NOT_FOUND', 'no such client'))
    expect(errorResponseOf(own(400, 'name must be a string'), { expose: true })).toEqual(answer(400, 'BAD_REQUEST', 'name must be a string'))
    expect(errorResponseOf(own(400, 'x', { expose: true }), { expose: false })).toEqual(answer(400, 'BAD_REQUEST', 'Bad Request'))
    expect(errorResponseOf(Object.assign(new Error('too big'), { statusCode: 413 }))).toEqual(answer(413, 'PAYLOAD_TOO_LARGE', 'Payload Too Large'))
    expect(errorResponseOf(own(499, 'x'))).toEqual(answer(499, 'HTTP_499', 'HTTP 499'))
    // An app's own code is not taken over: each code keeps one status.
    expect(errorResponseOf(own(400, 'x', { code: 'TENANT_REQUIRED', expose: true })).body.error.code).toBe('BAD_REQUEST')
    // 5xx never show their message, exposed or not.
    expect(errorResponseOf(own(503, 'db down: select 1 failed', { expose: true }), { expose: true })).toEqual(
      answer(503, 'SERVICE_UNAVAILABLE', 'Service Unavailable'),
    )
    // An own status beside a wrapped refusal: the own status wins, and then its name is the code.
    expect(errorResponseOf(own(409, 'conflict', { cause: rlsError() }))).toEqual(answer(409, 'CONFLICT', 'Conflict'))
    expect(errorResponseOf(own(403, 'refused', { cause: rlsError() }))).toEqual(answer(403, 'RLS_VIOLATION', 'this tenant may not write this row'))
    // An exposed message replaces the fixed one, but not the code.
    const exposed = Object.assign(new InvalidTenantError('x-org-id must be a UUID'), { expose: true })
    expect(errorResponseOf(exposed)).toEqual(answer(400, 'INVALID_TENANT', 'x-org-id must be a UUID'))
  })

  it('never throws, whatever it is given, and is the same function in both adapters', () => {
    const hostile = new Proxy(
      {},
      {
        get() {
          throw new Error('trap')
        },
      },
    )
    const throwingOptions = Object.defineProperty({}, 'expose', {
      get() {
        throw new Error('getter')
      },
    })
    expect(errorResponseOf(hostile)).toEqual(answer(500, 'INTERNAL_SERVER_ERROR', 'Internal Server Error'))
    expect(errorResponseOf(Object.assign(new Error('x'), { status: 400 }), throwingOptions)).toEqual(
      answer(500, 'INTERNAL_SERVER_ERROR', 'Internal Server Error'),
    )
    expect(fastifyErrorResponseOf).toBe(errorResponseOf)
  })
})
