/**
 * RLS_NO_POLICY (error): row-level security is enabled on a reachable tenant table that has no
 * policy: non-owners see nothing (default deny) while an unforced owner still sees every row; a
 * policy was probably forgotten. Fix: the standard tenant policy.
 */
import { standardPolicySql } from '../fixes.js'
import type { Rule } from '../rule.js'

export const rlsNoPolicy: Rule<'table', 'RLS_NO_POLICY'> = {
  code: 'RLS_NO_POLICY',
  subject: 'table',
  reads: 'readTenantTables: pg_class.relrowsecurity, relforcerowsecurity and the policy count; readAccess: privileges',
  check(table, { opts }) {
    const { row, label, qualified, reachers } = table
    if (reachers.length === 0 || !row.rls || row.policies !== 0) return undefined
    return {
      severity: 'error',
      code: 'RLS_NO_POLICY',
      object: `table ${label}`,
      message: `row-level security is enabled on ${label} but it has no policy: non-owners see no rows and cannot write (default deny), while its owner${row.force ? '' : ' and anything running with the owner\'s rights'} still sees every row. A policy was probably forgotten`,
      fix: standardPolicySql(qualified, row, opts),
    }
  },
}
