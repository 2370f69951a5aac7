/**
 * LOGIN_ROLE_BYPASSRLS (error): the login role has BYPASSRLS, so row-level security never applies
 * to it (a superuser is reported as LOGIN_ROLE_SUPERUSER instead). Fix: NOBYPASSRLS.
 */
import type { Rule } from '../rule.js'

export const loginRoleBypassrls: Rule<'login', 'LOGIN_ROLE_BYPASSRLS'> = {
  code: 'LOGIN_ROLE_BYPASSRLS',
  subject: 'login',
  reads: 'readLogin: pg_roles.rolbypassrls and rolsuper of the login role',
  check(login, { loginName }) {
    if (!login.bypassrls || login.superuser) return undefined
    return {
      severity: 'error',
      code: 'LOGIN_ROLE_BYPASSRLS',
      object: `role ${login.name}`,
      message: `${login.name} has BYPASSRLS: row-level security never applies to it, so every tenant's rows are visible to it`,
      fix: `ALTER ROLE ${loginName} NOBYPASSRLS;`,
    }
  },
}
