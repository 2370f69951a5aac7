/** The doctor's options, validated once: {@link CheckRlsOptions} in, {@link DoctorOptions} out. */
import { InvalidOptionsError } from '../errors.js'
import type { ScopeMode } from '../scope/kinds.js'
import { validateSettingName, type RoleMatcher } from '../tenant.js'
import type { CheckRlsOptions } from './types.js'

/** The options every check reads: validated, defaults applied. */
export interface DoctorOptions {
  readonly setting: string
  readonly columns: readonly string[]
  readonly schemas: readonly string[] | null
  readonly roles: readonly RoleMatcher[]
  readonly scope: ScopeMode
  readonly loginRole: string | null
  readonly pgbouncer: 'session' | 'transaction' | 'statement' | false | undefined
}

/** @throws InvalidOptionsError for a missing or invalid option */
export function normalizeOptions(options: CheckRlsOptions): DoctorOptions {
  if (typeof options !== 'object' || options === null) {
    throw new InvalidOptionsError('checkRls needs options: { tenantColumn }')
  }
  const setting = validateSettingName(options.setting ?? 'app.tenant_id', true)
  const columns =
    typeof options.tenantColumn === 'string' ? [options.tenantColumn] : options.tenantColumn
  if (
    !Array.isArray(columns) ||
    columns.length === 0 ||
    !columns.every((c) => typeof c === 'string' && c.length > 0)
  ) {
    throw new InvalidOptionsError('tenantColumn must be a column name or a non-empty array of them')
  }
  const schemas = options.schemas ?? null
  if (schemas !== null && (!Array.isArray(schemas) || !schemas.every((s) => typeof s === 'string'))) {
    throw new InvalidOptionsError('schemas must be an array of schema names')
  }
  const roles = options.roles ?? []
  if (!Array.isArray(roles) || !roles.every((r) => typeof r === 'string' || r instanceof RegExp)) {
    throw new InvalidOptionsError('roles must be an array of strings and RegExps')
  }
  const scope = options.scope ?? 'transaction'
  if (scope !== 'transaction' && scope !== 'session') {
    throw new InvalidOptionsError(`scope must be 'transaction' or 'session', got ${String(scope)}`)
  }
  const { pgbouncer } = options
  if (
    pgbouncer !== undefined &&
    pgbouncer !== false &&
    pgbouncer !== 'session' &&
    pgbouncer !== 'transaction' &&
    pgbouncer !== 'statement'
  ) {
    throw new InvalidOptionsError(
      `pgbouncer must be 'session', 'transaction', 'statement' or false, got ${String(pgbouncer)}`,
    )
  }
  const loginRole = options.loginRole ?? null
  if (loginRole !== null && (typeof loginRole !== 'string' || loginRole.length === 0)) {
    throw new InvalidOptionsError('loginRole must be a role name')
  }
  return { setting, columns: [...columns], schemas, roles: [...roles], scope, loginRole, pgbouncer }
}
