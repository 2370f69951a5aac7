/**
 * ALLOWED_ROLE_BYPASSES_RLS (error): a role on the allow-list, that the login role can switch to,
 * is a superuser or has BYPASSRLS: a tenant running as it sees every tenant's rows. Fix: revoke
 * the superuser from the login role (and take it off the list), or NOBYPASSRLS.
 */
import { quoteTrusted } from '../../sql/ident.js'
import type { Rule } from '../rule.js'

export const allowedRoleBypassesRls: Rule<'allowList', 'ALLOWED_ROLE_BYPASSES_RLS'> = {
  code: 'ALLOWED_ROLE_BYPASSES_RLS',
  subject: 'allowList',
  reads: 'readAllowList: pg_roles.rolsuper and rolbypassrls of the allowed roles',
  check({ allowed }, { login, loginName }) {
    return allowed
      .filter((role) => role.superuser || role.bypassrls)
      .map((role) => ({
        severity: 'error',
        code: 'ALLOWED_ROLE_BYPASSES_RLS',
        object: `role ${role.name}`,
        message: `${role.name} is on the roles allow-list and ${login.name} can switch to it, but it ${role.superuser ? 'is a superuser' : 'has BYPASSRLS'}: a tenant running as it sees every tenant's rows`,
        fix: role.superuser
          ? `REVOKE ${quoteTrusted(role.name)} FROM ${loginName};\n-- and take it off the roles allow-list`
          : `ALTER ROLE ${quoteTrusted(role.name)} NOBYPASSRLS;`,
      }))
  },
}
