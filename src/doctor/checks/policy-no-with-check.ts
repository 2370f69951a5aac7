/**
 * POLICY_NO_WITH_CHECK (error): an INSERT, UPDATE or ALL policy on a tenant table has no WITH
 * CHECK. An INSERT policy without it admits no row; an UPDATE or ALL policy then checks written
 * rows against USING, a tenant boundary only while USING is exactly the tenant rule. Fix: a WITH
 * CHECK built from the tenant predicate of USING (the comparison of a tenant column with the
 * tenant setting or current_user, see policy-expr.ts), never USING copied whole: a USING that ORs
 * in another condition (`... OR is_public`) would let the copy admit another tenant's rows. Without
 * a recognisable tenant predicate, the standard tenant condition.
 */
import { columnCondition, standardCondition } from '../fixes.js'
import { disjuncts, tenantPredicates } from '../policy-expr.js'
import type { Rule } from '../rule.js'

export const policyNoWithCheck: Rule<'policy', 'POLICY_NO_WITH_CHECK'> = {
  code: 'POLICY_NO_WITH_CHECK',
  subject: 'policy',
  reads: 'readPolicies: pg_policy.polcmd, polqual and polwithcheck of policies on tenant tables',
  check(policy, { opts }) {
    const { row, tenantTable, label, command } = policy
    if (tenantTable === undefined || row.with_check !== null) return undefined
    if (row.cmd !== 'a' && row.cmd !== 'w' && row.cmd !== '*') return undefined
    const insertOnly = row.cmd === 'a'
    const branches = row.qual === null ? [] : disjuncts(row.qual)
    const [predicate] = row.qual === null ? [] : tenantPredicates(row.qual, tenantTable.columns, opts.setting)
    const escape =
      branches.length > 1
        ? ` Its USING ORs in other conditions (${branches.filter((b) => predicate === undefined || b.end <= predicate.span.start || b.start >= predicate.span.end).map((b) => b.text).join(' OR ')}): through them a tenant can write rows of another tenant today`
        : ''
    // One AND-ed condition holding the tenant predicate is a safe write rule as it stands; with an
    // OR, only the tenant predicate is: on the setting, in the standard form on the same column
    // (nullif, missing_ok, the setting cast to the column's type); on current_user, as written.
    const condition =
      insertOnly || predicate === undefined
        ? standardCondition(tenantTable, opts.setting)
        : branches.length === 1
          ? row.qual!
          : predicate.setting === undefined
            ? predicate.span.text
            : columnCondition(tenantTable, predicate.column, predicate.setting)
    return {
      severity: 'error',
      code: 'POLICY_NO_WITH_CHECK',
      object: policy.object,
      message: insertOnly
        ? `the INSERT policy ${row.name} on ${label} has no WITH CHECK: it admits no row at all, so inserts depend on whatever other policies allow. State the tenant rule explicitly`
        : `the ${command} policy ${row.name} on ${label} has no WITH CHECK: PostgreSQL then checks written rows against USING, which is only a tenant boundary while USING is exactly the tenant rule (an OR in USING lets a tenant write rows into another tenant). State the write rule explicitly.${escape}`,
      fix: `${policy.alter} WITH CHECK (${condition});`,
    }
  },
}
