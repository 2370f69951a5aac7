import fs from 'node:fs'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { asError } from '../../src/errors.js'
import {
  InvalidTenantError,
  RoleNotAllowedError,
  RoleSwitchError,
  ScopeClosedError,
  TenantMismatchError,
  TenantPoolError,
  TenantRequiredError,
  TransactionAbortedError,
  InternalError,
  TenantQuotaError,
} from '../../src/index.js'

describe('errors', () => {
  it('extend one base class with a stable code and an HTTP status', () => {
    const cases: Array<[TenantPoolError, string, number]> = [
      [new TenantRequiredError(), 'TENANT_REQUIRED', 401],
      [new InvalidTenantError('bad'), 'INVALID_TENANT', 400],
      [new RoleNotAllowedError('r'), 'ROLE_NOT_ALLOWED', 403],
      [new RoleSwitchError('r', new Error('denied')), 'ROLE_SWITCH_FAILED', 403],
      [new ScopeClosedError(), 'SCOPE_CLOSED', 500],
      [new TenantMismatchError(), 'TENANT_MISMATCH', 500],
      [new TransactionAbortedError(), 'TRANSACTION_ABORTED', 500],
      [new TenantQuotaError('timeout', 2, 100), 'TENANT_QUOTA_EXCEEDED', 429],
    ]
    for (const [err, code, status] of cases) {
      expect(err).toBeInstanceOf(TenantPoolError)
      expect(err).toBeInstanceOf(Error)
      expect(err.code).toBe(code)
      expect(err.status).toBe(status)
      expect(err.statusCode).toBe(status)
      expect(err.name).toBe(err.constructor.name)
    }
  })

  it('keeps the cause and tells subclasses apart', () => {
    const cause = new Error('permission denied to set role')
    const err = new RoleSwitchError('sales_1', cause)
    expect(err.cause).toBe(cause)
    expect(err.message).toContain('permission denied')
    expect(err).not.toBeInstanceOf(TenantRequiredError)
    expect(new Error('x')).not.toBeInstanceOf(TenantPoolError)
    expect({ code: 'TENANT_REQUIRED' }).not.toBeInstanceOf(TenantRequiredError)
  })
})

describe('what the library throws', () => {
  // Every error pg-tenant raises is a TenantPoolError subclass, with a code: no plain Error,
  // TypeError or RangeError is made anywhere in the library (the command line, src/cli.ts, prints
  // its errors and exits with a status: it throws nothing at a caller). Errors from PostgreSQL, and
  // what the caller's own code throws, still pass through unchanged.
  const src = path.resolve(import.meta.dirname, '../../src')
  const files = (dir: string): string[] =>
    fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? files(path.join(dir, e.name)) : [path.join(dir, e.name)]))
  const library = files(src).filter((f) => f.endsWith('.ts') && !f.endsWith('cli.ts'))

  it('makes no plain Error anywhere in the library', () => {
    expect(library.length).toBeGreaterThan(30)
    const plain = /\bnew (?:Error|TypeError|RangeError|SyntaxError)\(/
    const offenders = library.filter((file) => {
      const code = fs.readFileSync(file, 'utf8').replace(/\/\*[\s\S]*?\*\//g, '').replace(/\/\/.*$/gm, '')
      return plain.test(code)
    })
    expect(offenders.map((f) => path.relative(src, f))).toEqual([])
    expect(plain.test("throw new Error('x')")).toBe(true) // the pattern can match
  })

  it('wraps what is not an Error as an InternalError that keeps it', () => {
    const err = asError('a string')
    expect(err).toBeInstanceOf(InternalError)
    expect(err).toBeInstanceOf(TenantPoolError)
    expect((err as InternalError).cause).toBe('a string')
    const real = new Error('real')
    expect(asError(real)).toBe(real)
  })
})
