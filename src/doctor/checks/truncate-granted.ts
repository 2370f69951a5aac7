/**
 * TRUNCATE_GRANTED (error): TRUNCATE, which ignores row-level security and deletes every tenant's
 * rows, is granted on a tenant table to the login role (or an allowed role) that does not own it
 * (owners are OWNER_NO_FORCE or LOGIN_ROLE_OWNS_TABLE). Fix: REVOKE TRUNCATE.
 */
import { quoteTrusted } from '../../sql/ident.js'
import type { Rule } from '../rule.js'

export const truncateGranted: Rule<'access', 'TRUNCATE_GRANTED'> = {
  code: 'TRUNCATE_GRANTED',
  subject: 'access',
  reads: "readAccess: has_table_privilege(role, table, 'TRUNCATE')",
  check({ table, row, who }) {
    if (row.owns || !row.can_truncate) return undefined
    return {
      severity: 'error',
      code: 'TRUNCATE_GRANTED',
      object: `table ${table.label}`,
      message: `${who} may TRUNCATE ${table.label}; TRUNCATE ignores row-level security and deletes every tenant's rows`,
      fix: `REVOKE TRUNCATE ON ${table.qualified} FROM ${quoteTrusted(who)};\n-- if it is granted to PUBLIC or to a group ${who} belongs to, revoke it there`,
    }
  },
}
