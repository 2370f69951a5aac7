/**
 * ALLOWED_ROLE_NOT_GRANTED (warning): an entry of the roles allow-list names a role that does not
 * exist, or that the login role cannot SET ROLE to (for a RegExp: no role matches, or matching
 * roles are not granted), so switching to it fails with RoleSwitchError. Fix: create and grant
 * the role (PostgreSQL 16+: WITH INHERIT FALSE, SET TRUE), or narrow the pattern.
 */
import { quoteTrusted } from '../../sql/ident.js'
import { matchesOf } from '../catalog.js'
import { names } from '../fixes.js'
import type { Context, FindingOf, Rule } from '../rule.js'

type Found = FindingOf<'ALLOWED_ROLE_NOT_GRANTED'>

export const allowedRoleNotGranted: Rule<'allowList', 'ALLOWED_ROLE_NOT_GRANTED'> = {
  code: 'ALLOWED_ROLE_NOT_GRANTED',
  subject: 'allowList',
  reads: 'readAllowList: pg_roles matching each allow-list entry, and pg_has_role(login, role, SET) (MEMBER before PostgreSQL 16)',
  check({ candidates }, ctx) {
    const { opts, login } = ctx
    const findings: Found[] = []
    for (const matcher of opts.roles) {
      const matches = matchesOf(candidates, matcher)
      if (typeof matcher === 'string') {
        const role = matches[0]
        if (role === undefined && matcher !== login.name) {
          findings.push({
            severity: 'warning',
            code: 'ALLOWED_ROLE_NOT_GRANTED',
            object: `role ${matcher}`,
            message: `${matcher} is on the roles allow-list but does not exist: switching to it fails (RoleSwitchError)`,
            fix: `CREATE ROLE ${quoteTrusted(matcher)} NOLOGIN NOSUPERUSER NOBYPASSRLS INHERIT;\n${grantSql(matcher, ctx)}`,
          })
        } else if (role !== undefined && !role.settable) {
          findings.push({
            severity: 'warning',
            code: 'ALLOWED_ROLE_NOT_GRANTED',
            object: `role ${matcher}`,
            message: `${matcher} is on the roles allow-list but ${login.name} cannot SET ROLE to it: switching to it fails (RoleSwitchError)`,
            fix: grantSql(matcher, ctx),
          })
        }
      } else {
        const missing = matches.filter((r) => !r.settable)
        if (matches.length === 0) {
          findings.push({
            severity: 'warning',
            code: 'ALLOWED_ROLE_NOT_GRANTED',
            object: `roles matching ${String(matcher)}`,
            message: `no role matches ${String(matcher)} on the roles allow-list: switching to such a role fails until one is created and granted to ${login.name}`,
            fix: `-- create tenant roles with createTenantRoleSql(), e.g.\n-- CREATE ROLE "<name>" NOLOGIN; GRANT "<group>" TO "<name>"; GRANT "<name>" TO ${ctx.loginName};`,
          })
        } else if (missing.length > 0) {
          const shown = missing.slice(0, 20)
          findings.push({
            severity: 'warning',
            code: 'ALLOWED_ROLE_NOT_GRANTED',
            object: `roles matching ${String(matcher)}`,
            message: `${missing.length} role(s) match ${String(matcher)} on the roles allow-list but ${login.name} cannot SET ROLE to them (${names(shown.map((r) => r.name))}${missing.length > shown.length ? ', ...' : ''}): switching to them fails`,
            fix: [
              ...shown.map((r) => grantSql(r.name, ctx)),
              ...(missing.length > shown.length ? [`-- and ${missing.length - shown.length} more`] : []),
              '-- or narrow the pattern if these roles are not tenants',
            ].join('\n'),
          })
        }
      }
    }
    return findings
  },
}

/** Lets the login role SET ROLE to `role` without inheriting its privileges where it can. */
function grantSql(role: string, { version, loginName }: Context): string {
  return version >= 160000
    ? `GRANT ${quoteTrusted(role)} TO ${loginName} WITH INHERIT FALSE, SET TRUE;`
    : `GRANT ${quoteTrusted(role)} TO ${loginName};`
}
