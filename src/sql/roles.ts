/**
 * SQL for the "role per user" model: a NOLOGIN role per tenant, holding its table privileges
 * through a group role, that the application's login role may switch to with `SET ROLE`.
 */
import { InvalidOptionsError } from '../errors.js'
import { quoteTrusted, validateRoleName } from './ident.js'

/**
 * Options of {@link createTenantRoleSql}.
 *
 * @example
 * ```ts
 * const options: TenantRoleOptions = { memberOf: 'salespeople', grantTo: 'app_user' }
 * ```
 */
export interface TenantRoleOptions {
  /**
   * The group role(s) the tenant role joins and whose privileges it inherits (table grants are
   * made to the group once, not to each tenant role). An empty array: no group.
   */
  memberOf: string | readonly string[]
  /**
   * The login role(s) that may switch to the tenant role (`GRANT tenant TO login`). Give the login
   * role `NOINHERIT` so that it can `SET ROLE` to tenants without holding their privileges itself
   * (on PostgreSQL 16+ the role's INHERIT attribute is the default for grants made after it).
   */
  grantTo?: string | readonly string[] | undefined
}

/**
 * The SQL that creates a tenant role: `NOLOGIN`, not superuser, not `BYPASSRLS`, inheriting the
 * privileges of the groups in `memberOf`, and granted to the login roles in `grantTo` so that a
 * pool can switch to it. Every name is validated (no `public`, `none` or `pg_` names) and
 * double-quoted. Run it as a role with `CREATEROLE` (or a superuser).
 *
 * @param role - the new role's name, as `withTenant({ role })` will use it
 * @throws InvalidIdentifierError for a name that cannot be a role name
 *
 * @example
 * ```ts
 * import { createTenantRoleSql } from 'pg-tenant'
 * await adminPool.query(createTenantRoleSql('sales_7', { memberOf: 'salespeople', grantTo: 'app_user' }))
 * // CREATE ROLE "sales_7" NOLOGIN NOSUPERUSER NOBYPASSRLS INHERIT;
 * // GRANT "salespeople" TO "sales_7";
 * // GRANT "sales_7" TO "app_user";
 * ```
 */
export function createTenantRoleSql(role: string, options: TenantRoleOptions): string {
  const name = quoteTrusted(validateRoleName(role))
  if (typeof options !== 'object' || options === null) {
    throw new InvalidOptionsError('createTenantRoleSql needs { memberOf }')
  }
  const groups = roleList(options.memberOf, 'memberOf')
  const logins = options.grantTo === undefined ? [] : roleList(options.grantTo, 'grantTo')
  return [
    `CREATE ROLE ${name} NOLOGIN NOSUPERUSER NOBYPASSRLS INHERIT;`,
    ...groups.map((group) => `GRANT ${group} TO ${name};`),
    ...logins.map((login) => `GRANT ${name} TO ${login};`),
  ].join('\n')
}

/**
 * The SQL that undoes {@link createTenantRoleSql}: `DROP ROLE IF EXISTS`, which also removes the
 * role's memberships. PostgreSQL refuses it while the role still owns objects or holds privileges
 * granted to it directly (reassign or revoke those first).
 *
 * @example
 * ```ts
 * await adminPool.query(dropTenantRoleSql('sales_7')) // DROP ROLE IF EXISTS "sales_7";
 * ```
 */
export function dropTenantRoleSql(role: string): string {
  return `DROP ROLE IF EXISTS ${quoteTrusted(validateRoleName(role))};`
}

function roleList(value: unknown, what: string): string[] {
  const list = typeof value === 'string' ? [value] : value
  if (!Array.isArray(list)) {
    throw new InvalidOptionsError(`${what} must be a role name or an array of role names`)
  }
  return list.map((role: unknown) => quoteTrusted(validateRoleName(role, `${what} role`)))
}
