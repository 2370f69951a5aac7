/**
 * Options are parsed once, in src/options.ts: defaults filled in, bad values and unknown keys
 * refused with InvalidOptionsError before anything runs.
 */
import { describe, expect, it } from 'vitest'
import { InvalidOptionsError } from '../../src/errors.js'
import { parseAdapterOptions, parsePoolOptions } from '../../src/options.js'

describe('parsePoolOptions', () => {
  it('fills in every default', () => {
    expect(parsePoolOptions(undefined)).toEqual({
      setting: 'app.tenant_id',
      scope: 'transaction',
      roles: [],
      maxValueLength: 256,
      verifyRate: 0,
      prepareTenantStatement: true,
      allowRlsBypass: false,
    })
  })

  it('takes every option', () => {
    const roles = ['a', /^b_[0-9]+$/]
    expect(
      parsePoolOptions({
        setting: 'app.org',
        scope: 'session',
        roles,
        maxValueLength: 10,
        verifyRelease: 0.5,
        prepareTenantStatement: false,
        allowRlsBypass: true,
      }),
    ).toEqual({
      setting: 'app.org',
      scope: 'session',
      roles,
      maxValueLength: 10,
      verifyRate: 0.5,
      prepareTenantStatement: false,
      allowRlsBypass: true,
    })
    expect(parsePoolOptions({ verifyRelease: true }).verifyRate).toBe(1)
  })

  it('takes maxPerTenant as a number or as an object with bounds; none by default', () => {
    expect(parsePoolOptions({}).quota).toBeUndefined()
    expect(parsePoolOptions({ maxPerTenant: 3 }).quota).toEqual({ connections: 3, maxWaitMs: undefined, maxWaiting: undefined })
    expect(parsePoolOptions({ maxPerTenant: { connections: 2 } }).quota).toEqual({
      connections: 2,
      maxWaitMs: undefined,
      maxWaiting: undefined,
    })
    expect(parsePoolOptions({ maxPerTenant: { connections: 2, maxWaitMs: 500, maxWaiting: 0 } }).quota).toEqual({
      connections: 2,
      maxWaitMs: 500,
      maxWaiting: 0,
    })
  })

  it.each([
    [{ verifyReleases: true }, /unknown option "verifyReleases"/],
    [{ scope: 'statement' }, /scope must be/],
    [{ roles: 'sales' }, /roles must be an array/],
    [{ roles: [1] }, /roles must be an array/],
    [{ maxValueLength: 0 }, /maxValueLength/],
    [{ maxValueLength: 1.5 }, /maxValueLength/],
    [{ verifyRelease: 2 }, /verifyRelease/],
    [{ verifyRelease: 'yes' }, /verifyRelease/],
    [{ prepareTenantStatement: 'no' }, /prepareTenantStatement/],
    [{ allowRlsBypass: 1 }, /allowRlsBypass/],
    [{ maxPerTenant: 0 }, /maxPerTenant must be a positive integer/],
    [{ maxPerTenant: 1.5 }, /maxPerTenant must be a positive integer/],
    [{ maxPerTenant: -2 }, /maxPerTenant must be a positive integer/],
    [{ maxPerTenant: '2' }, /maxPerTenant must be a positive integer or/],
    [{ maxPerTenant: null }, /maxPerTenant must be a positive integer or/],
    [{ maxPerTenant: [2] }, /maxPerTenant must be a positive integer or/],
    [{ maxPerTenant: {} }, /maxPerTenant.connections must be a positive integer/],
    [{ maxPerTenant: { connections: 0 } }, /maxPerTenant.connections/],
    [{ maxPerTenant: { connections: 2, maxWait: 10 } }, /maxPerTenant: unknown option "maxWait"/],
    [{ maxPerTenant: { connections: 2, maxWaitMs: 0 } }, /maxPerTenant.maxWaitMs/],
    [{ maxPerTenant: { connections: 2, maxWaitMs: 2.5 } }, /maxPerTenant.maxWaitMs/],
    [{ maxPerTenant: { connections: 2, maxWaitMs: 2 ** 31 } }, /maxPerTenant.maxWaitMs/],
    [{ maxPerTenant: { connections: 2, maxWaiting: -1 } }, /maxPerTenant.maxWaiting/],
    [{ maxPerTenant: { connections: 2, maxWaiting: Infinity } }, /maxPerTenant.maxWaiting/],
    [{ setting: 'tenant' }, /invalid setting name/],
    [{ setting: "app.x'; drop" }, /invalid setting name/],
    ['options', /must be an object/],
    [null, /must be an object/],
  ])('refuses %j', (options, message) => {
    expect(() => parsePoolOptions(options)).toThrow(InvalidOptionsError)
    expect(() => parsePoolOptions(options)).toThrow(message)
  })
})

describe('parseAdapterOptions', () => {
  const db = { runWithTenant: () => undefined }
  const resolve = () => 'org_1'

  it('takes resolve and required, required by default', () => {
    expect(parseAdapterOptions('tenantMiddleware', db, { resolve })).toEqual({ resolve, required: true })
    expect(parseAdapterOptions('tenantMiddleware', db, { resolve, required: false })).toEqual({ resolve, required: false })
  })

  it("lets the plugin's own keys and Fastify's registration keys through", () => {
    expect(parseAdapterOptions('tenantPlugin', db, { db, resolve, closePool: true, prefix: '/api' }, ['closePool']).required).toBe(true)
  })

  it.each([
    ['tenantMiddleware', { resolve, requried: false }, /unknown option "requried"/],
    ['tenantMiddleware', { resolve, db }, /unknown option "db"/],
    ['tenantMiddleware', { resolve: 'x-org-id' }, /resolve must be a function/],
    ['tenantMiddleware', { resolve, required: 'yes' }, /required must be a boolean/],
    ['tenantMiddleware', undefined, /needs options/],
    ['tenantPlugin', { db, resolve, closepool: true }, /unknown option "closepool"/],
  ] as const)('%s refuses %j', (who, options, message) => {
    expect(() => parseAdapterOptions(who, db, options, who === 'tenantPlugin' ? ['closePool'] : [])).toThrow(message)
  })

  it('refuses a db that is not a TenantPool', () => {
    expect(() => parseAdapterOptions('tenantMiddleware', {}, { resolve })).toThrow(/db must be a TenantPool/)
  })
})
