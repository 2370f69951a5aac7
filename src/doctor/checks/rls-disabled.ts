/**
 * RLS_DISABLED (error): a tenant table that the login role (or an allowed role) can read or write
 * has row-level security disabled: every tenant's rows are exposed. Fix: the standard tenant
 * policy when the table has none, else ENABLE and FORCE ROW LEVEL SECURITY.
 */
import { names, standardPolicySql } from '../fixes.js'
import type { Rule } from '../rule.js'

export const rlsDisabled: Rule<'table', 'RLS_DISABLED'> = {
  code: 'RLS_DISABLED',
  subject: 'table',
  reads: 'readTenantTables: pg_class.relrowsecurity and the policy count; readAccess: SELECT, INSERT, UPDATE, DELETE privileges',
  check(table, { opts }) {
    const { row, label, qualified, reachers, readers } = table
    if (reachers.length === 0 || row.rls) return undefined
    const how = readers.length > 0 ? `${names(readers)} can read` : `${names(reachers)} can write`
    return {
      severity: 'error',
      code: 'RLS_DISABLED',
      object: `table ${label}`,
      message: `row-level security is disabled on ${label}, which has a tenant column (${row.columns.join(', ')}) and which ${how}: every tenant's rows are exposed`,
      fix:
        row.policies === 0
          ? standardPolicySql(qualified, row, opts)
          : `ALTER TABLE ${qualified} ENABLE ROW LEVEL SECURITY;\nALTER TABLE ${qualified} FORCE ROW LEVEL SECURITY;`,
    }
  },
}
