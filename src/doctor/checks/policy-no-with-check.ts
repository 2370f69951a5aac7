/**
 * POLICY_NO_WITH_CHECK (error): an INSERT, UPDATE or ALL policy on a tenant table has no WITH
 * CHECK. An INSERT policy without it admits no row; an UPDATE or ALL policy then checks written
 * rows against USING, a tenant boundary only while USING is exactly the tenant rule. Fix: state
 * the write rule: the current USING restated as WITH CHECK, or the standard tenant condition.
 */
import { standardCondition } from '../fixes.js'
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
    return {
      severity: 'error',
      code: 'POLICY_NO_WITH_CHECK',
      object: policy.object,
      message: insertOnly
        ? `the INSERT policy ${row.name} on ${label} has no WITH CHECK: it admits no row at all, so inserts depend on whatever other policies allow. State the tenant rule explicitly`
        : `the ${command} policy ${row.name} on ${label} has no WITH CHECK: PostgreSQL then checks written rows against USING, which is only a tenant boundary while USING is exactly the tenant rule (an OR in USING lets a tenant write rows into another tenant). State the write rule explicitly`,
      fix:
        insertOnly || row.qual === null
          ? `${policy.alter} WITH CHECK (${standardCondition(tenantTable, opts.setting)});`
          : `${policy.alter} WITH CHECK (${row.qual});`,
    }
  },
}
