/** Text and SQL shared by several checks' messages and fixes. Names here come from the catalogs. */
import { quoteTrusted } from '../sql/ident.js'
import { DEFAULT_TENANT_POLICY_NAME, policySql, tenantConditionSql } from '../sql/policy.js'
import type { TableRow } from './catalog.js'
import type { DoctorOptions } from './options.js'

/** A list for messages: distinct, comma-separated. */
export function names(list: readonly string[]): string {
  return [...new Set(list)].join(', ')
}

/** The standard tenant policy for a table found in the catalogs (trusted names and type). */
export function standardPolicySql(qualified: string, table: TableRow, opts: DoctorOptions): string {
  const column = quoteTrusted(table.columns[0]!)
  const condition = tenantConditionSql(column, opts.setting, castFor(table))
  // With role switching in use the table may belong to the role-per-user model instead.
  const roleModel =
    opts.roles.length > 0
      ? [`-- role-per-user table instead? USING (${column} = current_user) WITH CHECK (${column} = current_user)`]
      : []
  const sql = policySql(qualified, quoteTrusted(DEFAULT_TENANT_POLICY_NAME), 'PUBLIC', condition)
  return [...roleModel, sql].join('\n')
}

/** The standard tenant condition on a table's first tenant column. */
export function standardCondition(table: TableRow, setting: string): string {
  return tenantConditionSql(quoteTrusted(table.columns[0]!), setting, castFor(table))
}

/**
 * The standard tenant condition on one tenant column of a table: the setting cast to the column's
 * type, never the column cast to text (which would keep an index on the column from being used).
 *
 * @example
 * ```ts
 * columnCondition(table, 'org_id', 'app.tenant_id')
 * // "org_id" = (SELECT nullif(current_setting('app.tenant_id', true), '')::uuid)
 * ```
 */
export function columnCondition(table: TableRow, column: string, setting: string): string {
  const i = Math.max(0, table.columns.indexOf(column))
  const typname = table.typnames?.[i] ?? table.typname
  const typeSql = table.type_sqls?.[i] ?? table.type_sql
  return tenantConditionSql(quoteTrusted(table.columns[i]!), setting, TEXT_TYPES.has(typname) ? '' : typeSql)
}

/**
 * Whether a type name (pg_type.typname) is one of the text types, compared without a cast.
 *
 * @example
 * ```ts
 * isTextType('varchar') // true; isTextType('uuid') // false
 * ```
 */
export function isTextType(typname: string): boolean {
  return TEXT_TYPES.has(typname)
}

const TEXT_TYPES = new Set(['text', 'varchar', 'bpchar', 'name'])

/** The cast for a column's type: none for text types, else `format_type()` (trusted SQL). */
function castFor(table: TableRow): string {
  return TEXT_TYPES.has(table.typname) ? '' : table.type_sql
}
