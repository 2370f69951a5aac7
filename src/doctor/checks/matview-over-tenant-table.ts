/**
 * MATVIEW_OVER_TENANT_TABLE (error): a materialized view over a tenant table is readable by the
 * login role (or an allowed role). It stores rows as its owner saw them at refresh, and
 * materialized views have no row-level security. Fix: revoke it, or replace it with a
 * security_invoker view or a table with its own policy.
 */
import { names } from '../fixes.js'
import type { Rule } from '../rule.js'
import { quoteTrusted } from '../../sql/ident.js'

export const matviewOverTenantTable: Rule<'view', 'MATVIEW_OVER_TENANT_TABLE'> = {
  code: 'MATVIEW_OVER_TENANT_TABLE',
  subject: 'view',
  reads: "readViews: materialized views (relkind 'm') depending on tenant tables through pg_depend and pg_rewrite, and who can SELECT them",
  check({ row, label, qualified, bases, readers }) {
    if (row.kind !== 'm') return undefined
    return {
      severity: 'error',
      code: 'MATVIEW_OVER_TENANT_TABLE',
      object: `materialized view ${label}`,
      message: `materialized view ${label} stores rows of ${bases} as its owner saw them when refreshed, and materialized views have no row-level security: ${names(readers)} can read every tenant's rows from it`,
      fix: `REVOKE ALL ON ${qualified} FROM ${readers.map(quoteTrusted).join(', ')}, PUBLIC;\n-- or replace it with a view WITH (security_invoker = true), or a table with its own policy`,
    }
  },
}
