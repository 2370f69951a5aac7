/**
 * SQL that makes a table tenant-scoped, and the SQL that undoes it. Pure string builders: nothing
 * here talks to a database. Run the output as the table owner (or a superuser), not as the login
 * role of the application.
 */
import { InvalidOptionsError } from '../errors.js'
import { validateSettingName } from '../tenant.js'
import { quoteIdentifier, quoteLiteral, quoteTrusted, validateIdentifier } from './ident.js'

/**
 * The column types {@link tenantPolicySql} casts the setting to.
 *
 * @example
 * ```ts
 * const type: TenantColumnType = 'uuid' // policy compares with nullif(...)::uuid
 * ```
 */
export type TenantColumnType = 'text' | 'uuid' | 'bigint' | 'integer'

const TYPES: readonly TenantColumnType[] = ['text', 'uuid', 'bigint', 'integer']

/** The policy name {@link tenantPolicySql} uses when none is given. Policy names are per table. */
export const DEFAULT_TENANT_POLICY_NAME = 'tenant_isolation'
/** The policy name {@link rolePolicySql} uses when none is given. */
export const DEFAULT_ROLE_POLICY_NAME = 'role_isolation'

/**
 * Where a policy goes: shared by the policy helpers and their undo.
 *
 * @example
 * ```ts
 * const target: PolicyTarget = { schema: 'app', table: 'events', policyName: 'tenant_isolation' }
 * ```
 */
export interface PolicyTarget {
  /** The table, as named in the catalog (case-sensitive, quoted in the output). */
  table: string
  /** Its schema. Without one the table name is left unqualified and found through `search_path`. */
  schema?: string | undefined
  /** The policy name. Defaults to `tenant_isolation` (or `role_isolation` for rolePolicySql). */
  policyName?: string | undefined
}

/**
 * Options of {@link tenantPolicySql}.
 *
 * @example
 * ```ts
 * const options: TenantPolicyOptions = { table: 'events', column: 'org_id', type: 'uuid' }
 * ```
 */
export interface TenantPolicyOptions extends PolicyTarget {
  /** The column holding the tenant id. */
  column: string
  /** The setting the tenant id is read from. Default `'app.tenant_id'`, as `createTenantPool`. */
  setting?: string | undefined
  /** The column's type; the setting (text) is cast to it. Default `'text'` (no cast). */
  type?: TenantColumnType | undefined
  /** The roles the policy applies to (`TO ...`). Default: `PUBLIC` (every role). */
  roles?: readonly string[] | undefined
}

/**
 * Options of {@link rolePolicySql}.
 *
 * @example
 * ```ts
 * const options: RolePolicyOptions = { table: 'clients', column: 'salesperson' }
 * ```
 */
export interface RolePolicyOptions extends PolicyTarget {
  /** The column holding the name of the role that owns the row. */
  column: string
  /** The roles the policy applies to (`TO ...`). Default: `PUBLIC` (every role). */
  roles?: readonly string[] | undefined
}

/**
 * Options of the undo helpers {@link dropTenantPolicySql} and {@link dropRolePolicySql}. The
 * options object given to the matching helper is accepted as is.
 *
 * @example
 * ```ts
 * const undo: DropPolicyOptions = { table: 'events', keepRls: true }
 * ```
 */
export interface DropPolicyOptions extends PolicyTarget {
  /**
   * Leave row-level security enabled and forced, so the table denies every row to non-owners
   * instead of becoming readable in full. Default `false`: undo exactly what was applied.
   */
  keepRls?: boolean | undefined
}

/**
 * The SQL expression a tenant policy compares the column with: the setting, read once per
 * statement (the `(SELECT ...)` wrapper makes it an InitPlan), `NULL` when it is unset or empty
 * (after first use in a session an unset custom setting reads `''`, not `NULL`), cast to the
 * column's type. Internal: `castSql` is either empty or trusted SQL (a fixed type name or
 * `format_type()` output).
 */
export function tenantValueSql(setting: string, castSql: string): string {
  const cast = castSql === '' ? '' : `::${castSql}`
  return `(SELECT nullif(current_setting(${quoteLiteral(setting)}, true), '')${cast})`
}

/** `"column" = (SELECT nullif(current_setting('setting', true), '')::type)`. Internal. */
export function tenantConditionSql(quotedColumn: string, setting: string, castSql: string): string {
  return `${quotedColumn} = ${tenantValueSql(setting, castSql)}`
}

/**
 * The SQL that puts a table under tenant isolation in the "tenant id in a setting" model: it
 * enables and forces row-level security (so the table owner is subject to it too) and creates one
 * permissive policy for all commands whose USING and WITH CHECK both compare the tenant column
 * with the setting. The setting is wrapped in `nullif(..., '')`, so an unset or empty setting
 * matches no row, and in `(SELECT ...)`, so PostgreSQL evaluates it once per statement (an
 * InitPlan) rather than once per row. Every identifier is validated and double-quoted.
 *
 * With `type: 'uuid'`, `'bigint'` or `'integer'`, a tenant id that is not of that type makes the
 * statement fail (SQLSTATE 22P02) rather than match anything.
 *
 * @returns SQL statements separated by `;` and newlines, to run as the table owner
 * @throws InvalidIdentifierError for a name that cannot be a PostgreSQL identifier
 * @throws InvalidOptionsError for an invalid setting name or type
 *
 * @example
 * ```ts
 * import { tenantPolicySql } from 'pg-tenant'
 * await ownerPool.query(tenantPolicySql({ table: 'events', column: 'org_id', type: 'uuid' }))
 * // ALTER TABLE "events" ENABLE ROW LEVEL SECURITY;
 * // ALTER TABLE "events" FORCE ROW LEVEL SECURITY;
 * // CREATE POLICY "tenant_isolation" ON "events" AS PERMISSIVE FOR ALL TO PUBLIC
 * //   USING ("org_id" = (SELECT nullif(current_setting('app.tenant_id', true), '')::uuid))
 * //   WITH CHECK ("org_id" = (SELECT nullif(current_setting('app.tenant_id', true), '')::uuid));
 * ```
 */
export function tenantPolicySql(options: TenantPolicyOptions): string {
  const opts = requireObject(options, 'tenantPolicySql')
  const table = tableName(opts)
  const column = quoteIdentifier(validateIdentifier(opts.column, 'column'))
  const setting = validateSettingName(opts.setting ?? 'app.tenant_id', true)
  const type = opts.type ?? 'text'
  if (!TYPES.includes(type)) {
    throw new InvalidOptionsError(
      `type must be one of ${TYPES.join(', ')}, got ${JSON.stringify(type)}`,
    )
  }
  const policy = quoteIdentifier(
    validateIdentifier(opts.policyName ?? DEFAULT_TENANT_POLICY_NAME, 'policy name'),
  )
  const condition = tenantConditionSql(column, setting, type === 'text' ? '' : type)
  return policySql(table, policy, toRoles(opts.roles), condition)
}

/**
 * The SQL that undoes {@link tenantPolicySql}: drops the policy, then turns off FORCE and row-level
 * security. Disabling row-level security makes the table readable in full by every role granted
 * access to it; pass `keepRls: true` to drop only the policy and leave the table denying every
 * row to non-owners. Accepts the same options object as `tenantPolicySql`.
 *
 * @example
 * ```ts
 * const options = { table: 'events', column: 'org_id', type: 'uuid' } as const
 * await ownerPool.query(tenantPolicySql(options))
 * await ownerPool.query(dropTenantPolicySql(options))
 * // DROP POLICY IF EXISTS "tenant_isolation" ON "events";
 * // ALTER TABLE "events" NO FORCE ROW LEVEL SECURITY;
 * // ALTER TABLE "events" DISABLE ROW LEVEL SECURITY;
 * ```
 */
export function dropTenantPolicySql(options: DropPolicyOptions): string {
  return dropPolicySql(requireObject(options, 'dropTenantPolicySql'), DEFAULT_TENANT_POLICY_NAME)
}

/**
 * The SQL for the "role per user" model: each row names the role that owns it, and a row is
 * visible and writable only when that column equals `current_user` (the role a tenant switched to
 * with `withTenant({ role })`). Enables and forces row-level security and creates one permissive
 * policy for all commands with USING and WITH CHECK. `current_user` is evaluated once per
 * statement by PostgreSQL already, so no `(SELECT ...)` wrapper is needed.
 *
 * @returns SQL statements separated by `;` and newlines, to run as the table owner
 * @throws InvalidIdentifierError for a name that cannot be a PostgreSQL identifier
 *
 * @example
 * ```ts
 * import { rolePolicySql } from 'pg-tenant'
 * await ownerPool.query(rolePolicySql({ table: 'clients', column: 'salesperson' }))
 * // ... CREATE POLICY "role_isolation" ON "clients" AS PERMISSIVE FOR ALL TO PUBLIC
 * //   USING ("salesperson" = current_user) WITH CHECK ("salesperson" = current_user);
 * ```
 */
export function rolePolicySql(options: RolePolicyOptions): string {
  const opts = requireObject(options, 'rolePolicySql')
  const table = tableName(opts)
  const column = quoteIdentifier(validateIdentifier(opts.column, 'column'))
  const policy = quoteIdentifier(
    validateIdentifier(opts.policyName ?? DEFAULT_ROLE_POLICY_NAME, 'policy name'),
  )
  return policySql(table, policy, toRoles(opts.roles), `${column} = current_user`)
}

/**
 * The SQL that undoes {@link rolePolicySql}: drops the policy, then turns off FORCE and row-level
 * security (unless `keepRls: true`). Accepts the same options object as `rolePolicySql`.
 *
 * @example
 * ```ts
 * await ownerPool.query(dropRolePolicySql({ table: 'clients' }))
 * // DROP POLICY IF EXISTS "role_isolation" ON "clients"; ...
 * ```
 */
export function dropRolePolicySql(options: DropPolicyOptions): string {
  return dropPolicySql(requireObject(options, 'dropRolePolicySql'), DEFAULT_ROLE_POLICY_NAME)
}

/** ENABLE, FORCE and one policy for all commands. Internal: every argument is quoted SQL. */
export function policySql(table: string, policy: string, roles: string, condition: string): string {
  return [
    `ALTER TABLE ${table} ENABLE ROW LEVEL SECURITY;`,
    `ALTER TABLE ${table} FORCE ROW LEVEL SECURITY;`,
    `CREATE POLICY ${policy} ON ${table}`,
    `  AS PERMISSIVE FOR ALL TO ${roles}`,
    `  USING (${condition})`,
    `  WITH CHECK (${condition});`,
  ].join('\n')
}

function dropPolicySql(opts: DropPolicyOptions, defaultName: string): string {
  const table = tableName(opts)
  const policy = quoteIdentifier(validateIdentifier(opts.policyName ?? defaultName, 'policy name'))
  const lines = [`DROP POLICY IF EXISTS ${policy} ON ${table};`]
  if (opts.keepRls !== true) {
    lines.push(
      `ALTER TABLE ${table} NO FORCE ROW LEVEL SECURITY;`,
      `ALTER TABLE ${table} DISABLE ROW LEVEL SECURITY;`,
    )
  }
  return lines.join('\n')
}

function tableName(opts: PolicyTarget): string {
  const table = quoteIdentifier(validateIdentifier(opts.table, 'table'))
  if (opts.schema === undefined) return table
  return `${quoteIdentifier(validateIdentifier(opts.schema, 'schema'))}.${table}`
}

/** `TO` list: `PUBLIC` by default; the role name `public` is the keyword. */
export function toRoles(roles: readonly string[] | undefined): string {
  if (roles === undefined) return 'PUBLIC'
  if (!Array.isArray(roles) || roles.length === 0) {
    throw new InvalidOptionsError('roles must be a non-empty array of role names')
  }
  return roles
    .map((role: unknown) =>
      role === 'public' ? 'PUBLIC' : quoteTrusted(validateIdentifier(role, 'role')),
    )
    .join(', ')
}

function requireObject<T>(options: T, fn: string): T {
  if (typeof options !== 'object' || options === null) {
    throw new InvalidOptionsError(`${fn} needs an options object`)
  }
  return options
}
