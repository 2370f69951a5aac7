/**
 * LOGIN_ROLE_SUPERUSER (error): the login role is a superuser, so row-level security never
 * applies to it, FORCE or not. Fix: take SUPERUSER away, or, for the bootstrap superuser (oid 10),
 * which cannot lose it, connect as a dedicated role.
 */
import type { Rule } from '../rule.js'

export const loginRoleSuperuser: Rule<'login', 'LOGIN_ROLE_SUPERUSER'> = {
  code: 'LOGIN_ROLE_SUPERUSER',
  subject: 'login',
  reads: 'readLogin: pg_roles.rolsuper of the login role',
  check(login, { loginName }) {
    if (!login.superuser) return undefined
    return {
      severity: 'error',
      code: 'LOGIN_ROLE_SUPERUSER',
      object: `role ${login.name}`,
      message: `${login.name} is a superuser: row-level security never applies to it, even with FORCE ROW LEVEL SECURITY, so every tenant's rows are visible to it`,
      // The bootstrap superuser (oid 10) cannot lose SUPERUSER: the fix is another login role.
      fix:
        login.oid === '10'
          ? `CREATE ROLE "app_user" LOGIN NOSUPERUSER NOBYPASSRLS NOINHERIT;\n-- set its password, GRANT it the table privileges it needs, and connect the application as it`
          : `ALTER ROLE ${loginName} NOSUPERUSER;\n-- or connect the application as a dedicated role: CREATE ROLE app_user LOGIN NOSUPERUSER NOBYPASSRLS NOINHERIT;`,
    }
  },
}
