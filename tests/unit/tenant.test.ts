/** Tenant parsing and the SQL a tenant becomes: pure functions, no database needed. */
import { describe, expect, it } from 'vitest'
import {
  applyStatement,
  isRoleAllowed,
  resolveTenant,
  validateSettingName,
  type TenantRules,
} from '../../src/tenant.js'
import { ResetPlan } from '../../src/scope/reset.js'

const rules: TenantRules = { setting: 'app.tenant_id', roles: ['reader', /^org_[a-z0-9_]+$/], maxValueLength: 256 }

describe('resolveTenant', () => {
  it('writes a string id to the pool setting', () => {
    const t = resolveTenant('org_1', rules)
    expect(t.settings).toEqual([['app.tenant_id', 'org_1']])
    expect(t.role).toBeUndefined()
  })

  it('orders extra settings by name so equal tenants get equal keys', () => {
    const a = resolveTenant({ id: 'x', settings: { 'app.b': '2', 'app.a': '1' } }, rules)
    const b = resolveTenant({ settings: { 'app.a': '1', 'app.b': '2' }, id: 'x' }, rules)
    expect(a.key).toBe(b.key)
    expect(a.settings.map(([n]) => n)).toEqual(['app.tenant_id', 'app.a', 'app.b'])
    expect(resolveTenant('x', rules).key).not.toBe(resolveTenant({ id: 'x', role: 'reader' }, rules).key)
  })

  it('keeps the caller value for currentTenant()', () => {
    const input = { id: 'x' }
    expect(resolveTenant(input, rules).input).toBe(input)
  })

  it('accepts a value at the length limit and refuses one past it', () => {
    expect(() => resolveTenant('x'.repeat(256), rules)).not.toThrow()
    expect(() => resolveTenant('x'.repeat(257), rules)).toThrow(/longer than 256/)
  })
})

describe('isRoleAllowed', () => {
  it('matches strings exactly and RegExps on the whole name', () => {
    expect(isRoleAllowed('reader', rules.roles)).toBe(true)
    expect(isRoleAllowed('Reader', rules.roles)).toBe(false)
    expect(isRoleAllowed('org_42', rules.roles)).toBe(true)
    expect(isRoleAllowed('org_42; reset role', rules.roles)).toBe(false)
    expect(isRoleAllowed('x', [/org/])).toBe(false)
    expect(isRoleAllowed('evil_org', [/org/])).toBe(false)
  })

  it('is not fooled by global or sticky RegExp state', () => {
    const g = /^org_[0-9]+$/g
    expect(isRoleAllowed('org_1', [g])).toBe(true)
    expect(isRoleAllowed('org_2', [g])).toBe(true)
  })
})

describe('validateSettingName', () => {
  it.each(['app.tenant_id', 'a.b.c', 'App.Tenant$1', '_x._y'])('accepts %s', (name) => {
    expect(validateSettingName(name, true)).toBe(name)
  })
})

describe('applyStatement', () => {
  it('binds every name and value; only the literal role name is in the text', () => {
    const t = resolveTenant({ id: "o'; drop", role: 'org_1', settings: { 'app.user': 'u' } }, rules)
    const local = applyStatement(t, true)
    expect(local.text).toBe(
      "select set_config($1, $2, true), set_config($3, $4, true), set_config('role', $5, true)",
    )
    expect(local.values).toEqual(['app.tenant_id', "o'; drop", 'app.user', 'u', 'org_1'])
    expect(applyStatement(t, false).text).toContain('false')
    expect(applyStatement(t, false, true).text).toMatch(/, pg_backend_pid\(\)$/)
  })
})

describe('ResetPlan', () => {
  it('resets the role and every setting name seen, once each whatever the case, all bound', () => {
    const plan = new ResetPlan('app.tenant_id')
    expect(plan.statement()).toEqual({
      text: "select set_config('role', 'none', false), set_config($1, '', false)",
      values: ['app.tenant_id'],
    })
    plan.add(['app.user', 'APP.TENANT_ID', 'app.user'])
    expect(plan.names).toEqual(['app.tenant_id', 'app.user'])
    expect(plan.statement()).toEqual({
      text: "select set_config('role', 'none', false), set_config($1, '', false), set_config($2, '', false)",
      values: ['app.tenant_id', 'app.user'],
    })
  })

  it('names a companion reset per prepared statement, tied to it, renamed when the names change', () => {
    const plan = new ResetPlan('app.tenant_id')
    const prefix = { name: 'pg_tenant_0123', text: 'select 1', values: [] }
    const companion = plan.companionOf(prefix)
    expect(companion).toMatchObject({ unit: 'pg_tenant_0123', text: plan.statement().text, values: plan.statement().values })
    expect(companion.name).toMatch(/^pg_tenant_[0-9a-f]{16}$/)
    expect(plan.companionOf(prefix)).toBe(companion)
    expect(plan.companionOf({ ...prefix, name: 'pg_tenant_4567' }).name).not.toBe(companion.name)
    plan.add(['app.user'])
    expect(plan.companionOf(prefix).name).not.toBe(companion.name)
  })
})
