/**
 * OWNER_NO_FORCE (error): the login role (or an allowed role) owns, or inherits the owner of, a
 * tenant table without FORCE ROW LEVEL SECURITY: policies do not apply to the owner, so it sees
 * every tenant's rows. Fix: FORCE ROW LEVEL SECURITY, better still a role that only holds GRANTs.
 */
import type { Rule } from '../rule.js'

export const ownerNoForce: Rule<'access', 'OWNER_NO_FORCE'> = {
  code: 'OWNER_NO_FORCE',
  subject: 'access',
  reads: "readAccess: pg_has_role(role, owner, 'USAGE'); readTenantTables: pg_class.relforcerowsecurity",
  check({ table, row, who }) {
    if (!row.owns || table.row.force) return undefined
    return {
      severity: 'error',
      code: 'OWNER_NO_FORCE',
      object: `table ${table.label}`,
      message: `${who} ${who === table.row.owner ? 'owns' : `inherits the privileges of ${table.row.owner}, the owner of`} ${table.label}, which has no FORCE ROW LEVEL SECURITY: policies do not apply to the owner, so ${who} sees every tenant's rows`,
      fix: `ALTER TABLE ${table.qualified} FORCE ROW LEVEL SECURITY;\n-- better still: connect as a role that does not own the table and only holds GRANTs`,
    }
  },
}
