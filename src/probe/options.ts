/** The probe's options, validated once: {@link ProbeOptions} in, {@link ProbeSettings} out. */
import { InvalidOptionsError } from '../errors.js'
import type { PgPoolLike } from '../driver/index.js'
import { validateSettingName, type RoleMatcher, type Tenant } from '../tenant.js'
import type { ProbeOptions } from './types.js'
import { validateConnectionUrl } from './url.js'

/** A tenant to act as, and the name it is reported under. */
export interface ProbeTenant {
  readonly tenant: Tenant
  readonly label: string
}

/** What the probe reads: validated, defaults applied. */
export interface ProbeSettings {
  readonly pool: PgPoolLike | undefined
  readonly connectionString: string | undefined
  readonly tenants: readonly ProbeTenant[]
  readonly roles: readonly RoleMatcher[]
  readonly schemas: readonly string[] | null
  readonly setting: string
  readonly shared: ReadonlySet<string>
  readonly maxRows: number
}

const KEYS = new Set(['pool', 'connectionString', 'tenants', 'roles', 'schemas', 'setting', 'shared', 'maxRows'])

/** @throws InvalidOptionsError for an unknown key, a missing or an invalid option */
export function normalizeProbeOptions(options: ProbeOptions): ProbeSettings {
  if (typeof options !== 'object' || options === null) {
    throw new InvalidOptionsError('probeIsolation needs options: { pool or connectionString, tenants }')
  }
  for (const key of Object.keys(options)) {
    if (!KEYS.has(key)) throw new InvalidOptionsError(`unknown probeIsolation option ${JSON.stringify(key)}`)
  }
  const { pool, connectionString } = options
  if ((pool === undefined) === (connectionString === undefined)) {
    throw new InvalidOptionsError('probeIsolation needs exactly one of pool and connectionString')
  }
  if (pool !== undefined && (typeof pool !== 'object' || pool === null || typeof pool.connect !== 'function')) {
    throw new InvalidOptionsError('pool must be a pg.Pool')
  }
  if (connectionString !== undefined) {
    if (typeof connectionString !== 'string') throw new InvalidOptionsError('connectionString must be a string')
    validateConnectionUrl(connectionString)
  }
  if (!Array.isArray(options.tenants) || options.tenants.length < 2) {
    throw new InvalidOptionsError('tenants must list at least two tenants: isolation is between tenants')
  }
  const tenants = options.tenants.map((tenant) => ({ tenant, label: labelOf(tenant) }))
  const labels = new Set(tenants.map((t) => t.label))
  if (labels.size !== tenants.length) throw new InvalidOptionsError('tenants must be different from each other')

  const named = tenants.flatMap(({ tenant }) => (typeof tenant === 'object' && tenant.role ? [tenant.role] : []))
  const roles = options.roles ?? named
  if (!Array.isArray(roles) || !roles.every((r) => typeof r === 'string' || r instanceof RegExp)) {
    throw new InvalidOptionsError('roles must be an array of role names and RegExps')
  }
  const schemas = options.schemas ?? null
  if (schemas !== null && (!Array.isArray(schemas) || schemas.length === 0 || !schemas.every((s) => typeof s === 'string' && s !== ''))) {
    throw new InvalidOptionsError('schemas must be a non-empty array of schema names')
  }
  const setting = validateSettingName(options.setting ?? 'app.tenant_id', true)
  const shared = options.shared ?? []
  if (!Array.isArray(shared) || !shared.every((s) => typeof s === 'string' && s.includes('.'))) {
    throw new InvalidOptionsError('shared must be an array of schema-qualified table names (schema.table)')
  }
  const maxRows = options.maxRows ?? 10_000
  if (!Number.isSafeInteger(maxRows) || maxRows < 1) throw new InvalidOptionsError('maxRows must be a positive integer')
  return {
    pool,
    connectionString,
    tenants,
    roles: [...roles],
    schemas: schemas === null ? null : [...schemas],
    setting,
    shared: new Set(shared),
    maxRows,
  }
}

/** The name a tenant is reported under: the id, or the role for a tenant that only switches role. */
function labelOf(tenant: Tenant): string {
  if (typeof tenant === 'string' && tenant !== '') return tenant
  if (typeof tenant === 'object' && tenant !== null) {
    const parts = [tenant.id, tenant.role].filter((p): p is string => typeof p === 'string' && p !== '')
    if (parts.length > 0) return parts.join('/')
  }
  throw new InvalidOptionsError('each tenant must be a tenant id or an object with id or role')
}
