/**
 * LOGIN_ROLE_OWNS_TABLE (warning): the login role (or an allowed role) owns, or inherits the owner
 * of, a FORCEd tenant table. The policies apply, but as owner it can turn them off or TRUNCATE:
 * one SQL injection becomes cross-tenant. Fix: a NOLOGIN owner, and a login role with GRANTs only.
 */
import { quoteTrusted } from '../../sql/ident.js'
import type { Rule } from '../rule.js'

export const loginRoleOwnsTable: Rule<'access', 'LOGIN_ROLE_OWNS_TABLE'> = {
  code: 'LOGIN_ROLE_OWNS_TABLE',
  subject: 'access',
  reads: "readAccess: pg_has_role(role, owner, 'USAGE'); readTenantTables: pg_class.relforcerowsecurity",
  check({ table, row, who }) {
    // Without FORCE it is OWNER_NO_FORCE.
    if (!row.owns || !table.row.force) return undefined
    return {
      severity: 'warning',
      code: 'LOGIN_ROLE_OWNS_TABLE',
      object: `table ${table.label}`,
      message: `${who} ${who === table.row.owner ? 'owns' : `inherits the privileges of ${table.row.owner}, the owner of`} ${table.label}. FORCE ROW LEVEL SECURITY applies the policies to it, but as owner it can disable them (ALTER TABLE ... NO FORCE / DISABLE ROW LEVEL SECURITY, DROP POLICY) and TRUNCATE the table: one SQL injection becomes cross-tenant`,
      fix: `-- make a NOLOGIN role own the table and connect as a role that only holds GRANTs, e.g.\n-- CREATE ROLE schema_owner NOLOGIN;\n-- ALTER TABLE ${table.qualified} OWNER TO schema_owner;\n-- GRANT SELECT, INSERT, UPDATE, DELETE ON ${table.qualified} TO ${quoteTrusted(who)};`,
    }
  },
}
