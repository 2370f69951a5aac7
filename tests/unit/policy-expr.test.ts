/**
 * Reading deparsed policy expressions (src/doctor/policy-expr.ts). The inputs are what
 * `pg_get_expr(polqual, polrelid)` printed on PostgreSQL 18 for the policies in the comments;
 * tests/integration/doctor-policies.test.ts runs the rules built on this against a real server.
 */
import { describe, expect, it } from 'vitest'
import { conjuncts, disjuncts, parenthesized, tenantPredicates } from '../../src/doctor/policy-expr.js'

const COLUMNS = ['org_id', 'owner_name']
const texts = (spans: readonly { text: string }[]) => spans.map((s) => s.text)
const preds = (expr: string) =>
  tenantPredicates(expr, COLUMNS, 'app.tenant_id').map((p) => [p.span.text, p.column, p.columnCast, p.setting])

describe('splitting at top-level OR and AND', () => {
  it('splits, flattening nested parentheses, and keeps offsets into the whole expression', () => {
    // using (org_id::text = (select current_setting('app.tenant_id', true)) or n::text = 'x' or is_public)
    const e = `(((org_id)::text = ( SELECT current_setting('app.tenant_id'::text, true) AS current_setting)) OR ((n)::text = 'x'::text) OR is_public)`
    const parts = disjuncts(e)
    expect(texts(parts)).toEqual([
      `(org_id)::text = ( SELECT current_setting('app.tenant_id'::text, true) AS current_setting)`,
      `(n)::text = 'x'::text`,
      'is_public',
    ])
    for (const p of parts) expect(e.slice(p.start, p.end)).toBe(p.text)
  })

  it('does not split inside literals, quoted names or nested expressions', () => {
    expect(texts(disjuncts(`(note = ' OR x = '::text)`))).toEqual([`note = ' OR x = '::text`])
    expect(texts(disjuncts(`("a OR b" = 1)`))).toEqual([`"a OR b" = 1`])
    // using (org_id = ... and (is_public or id > 3))
    const e = `((org_id = (NULLIF(current_setting('app.tenant_id'::text, true), ''::text))::uuid) AND (is_public OR (id > 3)))`
    expect(disjuncts(e)).toHaveLength(1)
    expect(texts(conjuncts(e, disjuncts(e)[0]!))).toEqual([
      `org_id = (NULLIF(current_setting('app.tenant_id'::text, true), ''::text))::uuid`,
      'is_public OR (id > 3)',
    ])
  })

  it('puts an expression in exactly one pair of parentheses', () => {
    expect(parenthesized('((a = 1))')).toBe('(a = 1)')
    expect(parenthesized('(a = 1) OR (b = 2)')).toBe('((a = 1) OR (b = 2))')
  })
})

describe('tenant predicates', () => {
  it('finds the tenant column compared with the tenant setting, cast or not, either way round', () => {
    // using (org_id = current_setting('app.tenant_id')::uuid or is_public)
    expect(preds(`((org_id = (current_setting('app.tenant_id'::text))::uuid) OR is_public)`)).toEqual([
      [`org_id = (current_setting('app.tenant_id'::text))::uuid`, 'org_id', undefined, 'app.tenant_id'],
    ])
    // using (org_id::text = current_setting('app.tenant_id', true) or current_setting('app.bypass_rls', true) = 'on')
    expect(
      preds(`(((org_id)::text = current_setting('app.tenant_id'::text, true)) OR (current_setting('app.bypass_rls'::text, true) = 'on'::text))`),
    ).toEqual([[`(org_id)::text = current_setting('app.tenant_id'::text, true)`, 'org_id', 'text', 'app.tenant_id']])
    expect(preds(`(current_setting('app.tenant_id'::text) = ("org_id")::text)`)).toEqual([
      [`current_setting('app.tenant_id'::text) = ("org_id")::text`, 'org_id', 'text', 'app.tenant_id'],
    ])
  })

  it('finds current_user comparisons, and nothing for other columns or other settings', () => {
    expect(preds(`(owner_name = CURRENT_USER)`)).toEqual([['owner_name = CURRENT_USER', 'owner_name', undefined, undefined]])
    expect(preds(`((n)::text = current_setting('app.tenant_id'::text))`)).toEqual([])
    expect(preds(`(org_id = current_setting('app.other'::text))`)).toEqual([])
    expect(preds(`(org_id <> current_setting('app.tenant_id'::text))`)).toEqual([])
  })
})
