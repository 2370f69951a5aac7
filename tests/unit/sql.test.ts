/**
 * The SQL helpers as strings: identifiers are validated and quoted, nothing is interpolated raw.
 * What the generated SQL does in PostgreSQL is tested in tests/integration/policy-sql.test.ts.
 */
import { describe, expect, it } from 'vitest'
import {
  createTenantRoleSql,
  dropRolePolicySql,
  dropTenantPolicySql,
  dropTenantRoleSql,
  InvalidIdentifierError,
  InvalidOptionsError,
  quoteIdentifier,
  rolePolicySql,
  TenantPoolError,
  tenantPolicySql,
  type TenantColumnType,
} from '../../src/index.js'

describe('quoteIdentifier', () => {
  it('double-quotes names and doubles embedded double quotes', () => {
    expect(quoteIdentifier('events')).toBe('"events"')
    expect(quoteIdentifier('Events')).toBe('"Events"')
    expect(quoteIdentifier('we"ird')).toBe('"we""ird"')
    expect(quoteIdentifier('"; drop table t; --')).toBe('"""; drop table t; --"')
    expect(quoteIdentifier("o'brien")).toBe(`"o'brien"`)
    expect(quoteIdentifier('événements')).toBe('"événements"')
  })

  it('accepts names up to 63 bytes and refuses longer ones (PostgreSQL would truncate them)', () => {
    expect(quoteIdentifier('a'.repeat(63))).toBe(`"${'a'.repeat(63)}"`)
    expect(() => quoteIdentifier('a'.repeat(64))).toThrow(InvalidIdentifierError)
    // 32 two-byte characters: 64 bytes.
    expect(() => quoteIdentifier('é'.repeat(32))).toThrow(/63 bytes/)
  })

  it.each([
    ['empty', ''],
    ['NUL', 'a\0b'],
    ['newline', 'a\nb'],
    ['carriage return', 'a\rb'],
    ['escape', 'a\u001bb'],
    ['DEL', 'a\u007fb'],
    ['unpaired surrogate', 'a\ud800b'],
  ])('refuses %s', (_, name) => {
    expect(() => quoteIdentifier(name)).toThrow(InvalidIdentifierError)
  })

  it('refuses non-strings', () => {
    for (const value of [undefined, null, 42, {}, ['a']]) {
      expect(() => quoteIdentifier(value as never)).toThrow(InvalidIdentifierError)
    }
  })

  it('raises a TenantPoolError with a stable code', () => {
    try {
      quoteIdentifier('')
      expect.unreachable()
    } catch (err) {
      expect(err).toBeInstanceOf(TenantPoolError)
      expect((err as TenantPoolError).code).toBe('INVALID_IDENTIFIER')
    }
  })
})

describe('tenantPolicySql', () => {
  it('enables and forces RLS and creates one policy with USING and WITH CHECK', () => {
    expect(tenantPolicySql({ table: 'events', column: 'org_id' })).toBe(
      [
        'ALTER TABLE "events" ENABLE ROW LEVEL SECURITY;',
        'ALTER TABLE "events" FORCE ROW LEVEL SECURITY;',
        'CREATE POLICY "tenant_isolation" ON "events"',
        '  AS PERMISSIVE FOR ALL TO PUBLIC',
        `  USING ("org_id" = (SELECT nullif(current_setting('app.tenant_id', true), '')))`,
        `  WITH CHECK ("org_id" = (SELECT nullif(current_setting('app.tenant_id', true), '')));`,
      ].join('\n'),
    )
  })

  it.each<[TenantColumnType, string]>([
    ['text', `(SELECT nullif(current_setting('app.tenant_id', true), ''))`],
    ['uuid', `(SELECT nullif(current_setting('app.tenant_id', true), '')::uuid)`],
    ['bigint', `(SELECT nullif(current_setting('app.tenant_id', true), '')::bigint)`],
    ['integer', `(SELECT nullif(current_setting('app.tenant_id', true), '')::integer)`],
  ])('casts the setting for type %s inside the initplan wrapper', (type, value) => {
    const sql = tenantPolicySql({ table: 'events', column: 'org_id', type })
    expect(sql).toContain(`USING ("org_id" = ${value})`)
    expect(sql).toContain(`WITH CHECK ("org_id" = ${value})`)
  })

  it('qualifies with the schema and uses the setting, policy name and roles given', () => {
    const sql = tenantPolicySql({
      schema: 'App Data',
      table: 'Events',
      column: 'OrgId',
      setting: 'my_app.org',
      policyName: 'by org',
      roles: ['app_user', 'public'],
    })
    expect(sql).toContain('ALTER TABLE "App Data"."Events" FORCE ROW LEVEL SECURITY;')
    expect(sql).toContain('CREATE POLICY "by org" ON "App Data"."Events"')
    expect(sql).toContain('FOR ALL TO "app_user", PUBLIC')
    expect(sql).toContain(`"OrgId" = (SELECT nullif(current_setting('my_app.org', true), ''))`)
  })

  it('quotes hostile names instead of interpolating them', () => {
    const sql = tenantPolicySql({ table: 'x" cascade; drop table users; --', column: 'c"' })
    expect(sql).toContain('ON "x"" cascade; drop table users; --"')
    expect(sql).toContain('USING ("c""" = ')
  })

  it('validates the setting name with the pool rules', () => {
    expect(() => tenantPolicySql({ table: 't', column: 'c', setting: "app.x'); drop" })).toThrow(
      InvalidOptionsError,
    )
    expect(() => tenantPolicySql({ table: 't', column: 'c', setting: 'no_dot' })).toThrow(
      InvalidOptionsError,
    )
  })

  it('refuses unknown types, bad names and bad roles', () => {
    expect(() => tenantPolicySql({ table: 't', column: 'c', type: 'int; drop' as never })).toThrow(
      InvalidOptionsError,
    )
    expect(() => tenantPolicySql({ table: '', column: 'c' })).toThrow(InvalidIdentifierError)
    expect(() => tenantPolicySql({ table: 't', column: 'a'.repeat(64) })).toThrow(/column/)
    expect(() => tenantPolicySql({ table: 't', column: 'c', schema: 'a\nb' })).toThrow(/schema/)
    expect(() => tenantPolicySql({ table: 't', column: 'c', policyName: '' })).toThrow(/policy name/)
    expect(() => tenantPolicySql({ table: 't', column: 'c', roles: [] })).toThrow(InvalidOptionsError)
    expect(() => tenantPolicySql({ table: 't', column: 'c', roles: [''] })).toThrow(InvalidIdentifierError)
    expect(() => tenantPolicySql(undefined as never)).toThrow(InvalidOptionsError)
  })
})

describe('rolePolicySql', () => {
  it('compares the column with current_user in USING and WITH CHECK', () => {
    expect(rolePolicySql({ table: 'clients', column: 'salesperson', schema: 'crm' })).toBe(
      [
        'ALTER TABLE "crm"."clients" ENABLE ROW LEVEL SECURITY;',
        'ALTER TABLE "crm"."clients" FORCE ROW LEVEL SECURITY;',
        'CREATE POLICY "role_isolation" ON "crm"."clients"',
        '  AS PERMISSIVE FOR ALL TO PUBLIC',
        '  USING ("salesperson" = current_user)',
        '  WITH CHECK ("salesperson" = current_user);',
      ].join('\n'),
    )
  })
})

describe('undo SQL', () => {
  it('drops the policy, then turns FORCE and RLS off', () => {
    const options = { table: 'events', column: 'org_id', type: 'uuid' } as const
    expect(dropTenantPolicySql(options)).toBe(
      [
        'DROP POLICY IF EXISTS "tenant_isolation" ON "events";',
        'ALTER TABLE "events" NO FORCE ROW LEVEL SECURITY;',
        'ALTER TABLE "events" DISABLE ROW LEVEL SECURITY;',
      ].join('\n'),
    )
    expect(dropRolePolicySql({ table: 'clients', schema: 'crm' })).toContain(
      'DROP POLICY IF EXISTS "role_isolation" ON "crm"."clients";',
    )
  })

  it('keeps RLS on (deny by default) with keepRls', () => {
    expect(dropTenantPolicySql({ table: 'events', policyName: 'p', keepRls: true })).toBe(
      'DROP POLICY IF EXISTS "p" ON "events";',
    )
  })
})

describe('createTenantRoleSql', () => {
  it('creates a NOLOGIN role in its groups and grants it to the login roles', () => {
    expect(createTenantRoleSql('sales_7', { memberOf: 'salespeople', grantTo: ['app', 'worker'] })).toBe(
      [
        'CREATE ROLE "sales_7" NOLOGIN NOSUPERUSER NOBYPASSRLS INHERIT;',
        'GRANT "salespeople" TO "sales_7";',
        'GRANT "sales_7" TO "app";',
        'GRANT "sales_7" TO "worker";',
      ].join('\n'),
    )
    expect(createTenantRoleSql('Org "A"', { memberOf: [] })).toBe(
      'CREATE ROLE "Org ""A""" NOLOGIN NOSUPERUSER NOBYPASSRLS INHERIT;',
    )
    expect(dropTenantRoleSql('Org "A"')).toBe('DROP ROLE IF EXISTS "Org ""A""";')
  })

  it('refuses reserved and invalid role names', () => {
    for (const role of ['public', 'none', 'pg_monitor', '', 'a'.repeat(64), 'a\0']) {
      expect(() => createTenantRoleSql(role, { memberOf: 'g' })).toThrow(InvalidIdentifierError)
      expect(() => dropTenantRoleSql(role)).toThrow(InvalidIdentifierError)
    }
    expect(() => createTenantRoleSql('r', { memberOf: 'public' })).toThrow(/memberOf/)
    expect(() => createTenantRoleSql('r', { memberOf: 'g', grantTo: ['ok', 'pg_x'] })).toThrow(/grantTo/)
    expect(() => createTenantRoleSql('r', { memberOf: 42 as never })).toThrow(InvalidOptionsError)
    expect(() => createTenantRoleSql('r', undefined as never)).toThrow(InvalidOptionsError)
  })
})
