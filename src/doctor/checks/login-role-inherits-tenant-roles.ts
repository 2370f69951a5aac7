/**
 * LOGIN_ROLE_INHERITS_TENANT_ROLES (warning): the login role (not a superuser) inherits the
 * privileges of allow-listed roles, so outside a tenant scope it holds every tenant's table
 * privileges at once; it only needs to be able to SET ROLE to them. Fix: NOINHERIT, and on
 * PostgreSQL 16+ re-grant the direct memberships WITH INHERIT FALSE.
 */
import { quoteTrusted } from '../../sql/ident.js'
import { names } from '../fixes.js'
import type { Rule } from '../rule.js'

export const loginRoleInheritsTenantRoles: Rule<'allowList', 'LOGIN_ROLE_INHERITS_TENANT_ROLES'> = {
  code: 'LOGIN_ROLE_INHERITS_TENANT_ROLES',
  subject: 'allowList',
  reads: "readAllowList: pg_has_role(login, role, 'USAGE') and direct pg_auth_members grants of the allowed roles",
  check({ allowed }, { login, loginName, version }) {
    if (login.superuser) return undefined
    const inherited = allowed.filter((r) => r.inherits)
    if (inherited.length === 0) return undefined
    const shown = inherited.slice(0, 20)
    const direct = shown.filter((r) => r.direct)
    return {
      severity: 'warning',
      code: 'LOGIN_ROLE_INHERITS_TENANT_ROLES',
      object: `role ${login.name}`,
      message: `${login.name} inherits the privileges of ${inherited.length} allow-listed role(s) (${names(shown.map((r) => r.name))}${inherited.length > shown.length ? ', ...' : ''}): outside a tenant scope it holds every tenant's table privileges at once. It only needs to be able to SET ROLE to them`,
      fix:
        version >= 160000
          ? [
              `ALTER ROLE ${loginName} NOINHERIT; -- the default for grants made from now on`,
              ...direct.map((r) => `GRANT ${quoteTrusted(r.name)} TO ${loginName} WITH INHERIT FALSE;`),
              ...(inherited.length > direct.length
                ? ['-- some are inherited through other roles, or more than shown: re-grant those WITH INHERIT FALSE too']
                : []),
            ].join('\n')
          : `ALTER ROLE ${loginName} NOINHERIT;`,
    }
  },
}
