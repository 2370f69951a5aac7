/**
 * POLICY_CAST_PREVENTS_INDEX (warning): the USING of a policy on a tenant table compares a
 * non-text tenant column cast to another type with the tenant setting,
 * `(org_id)::text = current_setting('app.tenant_id', true)`, instead of casting the setting to the
 * column's type. An index on the column cannot serve `org_id::text = ...` (it would need an index
 * on the expression), so every statement scans the whole table: 189 ms against 2.5 ms on a large
 * table, measured. Fix: USING with that comparison rewritten as
 * `"org_id" = (SELECT nullif(current_setting('app.tenant_id', true), '')::uuid)`.
 *
 * Heuristic (see policy-expr.ts): only comparisons among the top-level AND terms of the top-level
 * OR branches are read; WITH CHECK is left alone (it checks each written row, no index involved).
 */
import { columnCondition, isTextType } from '../fixes.js'
import { parenthesized, replaceSpan, tenantPredicates } from '../policy-expr.js'
import type { Rule } from '../rule.js'

export const policyCastPreventsIndex: Rule<'policy', 'POLICY_CAST_PREVENTS_INDEX'> = {
  code: 'POLICY_CAST_PREVENTS_INDEX',
  subject: 'policy',
  reads: 'readPolicies: pg_get_expr of pg_policy.polqual; readTenantTables: the tenant columns and their types',
  check(policy, { opts }) {
    const table = policy.tenantTable
    const qual = policy.row.qual
    if (table === undefined || qual === null) return undefined
    const cast = tenantPredicates(qual, table.columns, opts.setting).filter((p) => {
      if (p.setting === undefined || p.columnCast === undefined) return false
      const typname = table.typnames[table.columns.indexOf(p.column)] ?? table.typname
      return !isTextType(typname)
    })
    if (cast.length === 0) return undefined
    // Rewrite from the end, so earlier offsets stay valid.
    let rewritten = qual
    for (const p of [...cast].sort((a, b) => b.span.start - a.span.start)) {
      rewritten = replaceSpan(rewritten, p.span, columnCondition(table, p.column, p.setting!))
    }
    const what = cast.map((p) => `${p.column}::${p.columnCast}`).join(', ')
    return {
      severity: 'warning',
      code: 'POLICY_CAST_PREVENTS_INDEX',
      object: policy.object,
      message: `policy ${policy.row.name} on ${policy.label} casts the tenant column (${what}) to compare it with current_setting(...): no index on the column can serve that comparison, so every statement through this policy reads the whole table (measured 189 ms against 2.5 ms on a large table). Cast the setting to the column's type instead`,
      fix: `${policy.alter}\n  USING ${parenthesized(rewritten)};`,
    }
  },
}
