import { describe, expect, it } from 'vitest'
import {
  InvalidTenantError,
  RoleNotAllowedError,
  RoleSwitchError,
  ScopeClosedError,
  TenantMismatchError,
  TenantPoolError,
  TenantRequiredError,
  TransactionAbortedError,
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
