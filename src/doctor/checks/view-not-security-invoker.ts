/**
 * VIEW_NOT_SECURITY_INVOKER (error; a warning on PostgreSQL 14, which has no such option): a view
 * readable by the login role (or an allowed role) reads a tenant table, directly or through other
 * views, with its owner's rights. If the owner bypasses RLS, or policies use current_user, other
 * tenants' rows show through it. Fix: `security_invoker = true` (PostgreSQL 15+).
 */
import { names } from '../fixes.js'
import type { Rule } from '../rule.js'

export const viewNotSecurityInvoker: Rule<'view', 'VIEW_NOT_SECURITY_INVOKER'> = {
  code: 'VIEW_NOT_SECURITY_INVOKER',
  subject: 'view',
  reads: "readViews: views (relkind 'v') depending on tenant tables, their reloptions, and who can SELECT them",
  check({ row, label, qualified, bases, readers }, { version }) {
    if (row.kind === 'm') return undefined // MATVIEW_OVER_TENANT_TABLE
    const invoker = (row.options ?? []).some((o) => /^security_invoker=(true|on|yes|1|t|y)$/i.test(o))
    if (invoker) return undefined
    return {
      severity: version >= 150000 ? 'error' : 'warning',
      code: 'VIEW_NOT_SECURITY_INVOKER',
      object: `view ${label}`,
      message: `view ${label} reads ${bases} with the rights of its owner, not of the querying role: if the owner bypasses RLS (owner without FORCE, superuser, BYPASSRLS) or policies use current_user, ${names(readers)} can see other tenants' rows through it`,
      fix:
        version >= 150000
          ? `ALTER VIEW ${qualified} SET (security_invoker = true);`
          : `-- PostgreSQL 14 has no security_invoker: make sure the view's owner is subject to RLS\n-- (not superuser, no BYPASSRLS, FORCE ROW LEVEL SECURITY on ${bases}) and that policies do not use current_user`,
    }
  },
}
