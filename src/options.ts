/**
 * Every option pg-tenant takes at set-up, parsed and validated once, here: `createTenantPool`'s,
 * and the Express and Fastify adapters'. A key nobody reads (a typo such as `verifyReleases`) is
 * refused with `InvalidOptionsError`, like a bad value: an option that silently does nothing is
 * worse than an error at start-up.
 */
import { InvalidOptionsError } from './errors.js'
import type { ScopeMode } from './scope/kinds.js'
import { DEFAULT_MAX_VALUE_LENGTH, validateSettingName, type RoleMatcher } from './tenant.js'

/**
 * Options of `createTenantPool`.
 *
 * @example
 * ```ts
 * const db = createTenantPool(pool, {
 *   setting: 'app.tenant_id',
 *   scope: 'transaction',
 *   roles: ['tenant_reader', /^org_[a-z0-9_]+$/],
 * })
 * ```
 */
export interface TenantPoolOptions {
  /** The custom setting (GUC) a tenant id is written to. Default `'app.tenant_id'`. */
  setting?: string
  /**
   * `'transaction'` (default): each `withTenant` is one transaction and settings are
   * `set_config(..., true)` (SET LOCAL semantics). `'session'`: settings and role are set on
   * checkout and reset before release; queries autocommit. Needs session pooling behind PgBouncer.
   */
  scope?: ScopeMode
  /**
   * The roles a tenant may switch to: exact names, or RegExps that must match the whole name.
   * Empty by default: no role switching.
   */
  roles?: readonly RoleMatcher[]
  /** Longest tenant id or setting value accepted, in characters. Default 256. */
  maxValueLength?: number
  /**
   * The release canary. Before a client judged clean goes back to the pool, one more statement
   * checks on the server that `current_user = session_user`, no transaction is open, and every
   * setting the pool writes reads empty. A dirty client is destroyed, published on
   * `pg-tenant:destroy` with reason `'dirty'`, and counted in `db.stats().dirty`. `true` checks
   * every release (one extra round trip each); a number from 0 to 1 checks that fraction of them,
   * at random. Default `false`.
   *
   * @example
   * ```ts
   * const db = createTenantPool(pool, { verifyRelease: 0.01 }) // check 1% of releases
   * ```
   */
  verifyRelease?: boolean | number
  /**
   * Prepare the statements that apply the tenant to a lone query (`runWithTenant` + `db.query`)
   * and reset it once per connection, under names derived from their text, instead of parsing
   * them every time: the server then only binds and runs them. Default `true`. If the server ever
   * refuses them (a transaction pooler without prepared-statement support moved the connection, or
   * `DISCARD ALL` dropped them), nothing of that query ran: it is sent again unnamed, and this pool
   * stops preparing. `false` never prepares (for poolers that log named statements).
   *
   * @example
   * ```ts
   * const db = createTenantPool(pool, { prepareTenantStatement: false })
   * ```
   */
  prepareTenantStatement?: boolean
  /**
   * A superuser, or a role with BYPASSRLS, is not bound by Row-Level Security: an application
   * connected as one sees every tenant's rows. On its first checkout the pool asks the server (one
   * statement, once) and, if so, emits a process warning with code `PG_TENANT_RLS_BYPASSED`.
   * `true` says it is meant (a migration or an admin job): no check, no warning. Default `false`.
   *
   * @example
   * ```ts
   * const admin = createTenantPool(new pg.Pool({ connectionString: process.env.ADMIN_URL }), { allowRlsBypass: true })
   * ```
   */
  allowRlsBypass?: boolean
  /**
   * The most pooled connections one tenant may hold at once, so that one tenant's burst cannot
   * take the whole pool and stall every other tenant. Every kind of work counts against it: a
   * lone `db.query` under `runWithTenant`, a `withTenant` scope or `db.transaction`, a
   * `db.pool.connect()` client and `db.pool.query`. An operation of a tenant at its quota waits in
   * that tenant's own queue (first come, first served) before it asks the pool for a connection,
   * so it holds none while it waits, and other tenants take the free connections meanwhile.
   * Work nested in a scope (`withTenant` inside `withTenant`, `db.transaction`, `db.pool.connect()`
   * inside a scope) uses the scope's connection and takes nothing more.
   *
   * A tenant is its id and its role (`{ id, role }`; other settings do not make another tenant);
   * a tenant with neither counts by its settings, and `withoutTenant` work counts as one more.
   *
   * A number is the quota, with unbounded waits. The object form bounds the wait too:
   * `connections` is the quota; `maxWaitMs` the longest an operation waits for its tenant's
   * quota; `maxWaiting` the most operations one tenant may have waiting (0: none wait, a tenant
   * at its quota is refused at once). Past either bound the operation fails with
   * `TenantQuotaError` (HTTP 429, `Retry-After: 1`), and nothing of it was sent. The pool's own
   * wait for a free connection (pg's `connectionTimeoutMillis`) comes after and is not bounded by
   * these. Absent: no quota, and no cost.
   *
   * A caller that holds a `db.pool.connect()` client of its tenant and waits for more work of the
   * same tenant needs a quota above 1, as it would need a pool larger than 1.
   *
   * @example
   * ```ts
   * const db = createTenantPool(new pg.Pool({ max: 10 }), { maxPerTenant: 3 })
   * const bounded = createTenantPool(new pg.Pool({ max: 10 }), {
   *   maxPerTenant: { connections: 3, maxWaitMs: 2_000, maxWaiting: 100 },
   * })
   * console.log(bounded.stats().quota?.busiest) // [{ tenant: 'org_42', held: 3, waiting: 12 }, ...]
   * ```
   */
  maxPerTenant?: number | TenantQuotaOptions
}

/**
 * The object form of `maxPerTenant`: the quota and the bounds of a wait for it.
 *
 * @example
 * ```ts
 * const quota: TenantQuotaOptions = { connections: 2, maxWaitMs: 1_000, maxWaiting: 50 }
 * const db = createTenantPool(pool, { maxPerTenant: quota })
 * ```
 */
export interface TenantQuotaOptions {
  /** The most pooled connections one tenant may hold at once: a positive integer. */
  connections: number
  /** The longest an operation waits for its tenant's quota, in ms (a positive integer). Default: no limit. */
  maxWaitMs?: number
  /** The most operations one tenant may have waiting (an integer, 0 or more). Default: no limit. */
  maxWaiting?: number
}

/** `maxPerTenant` after validation. */
export interface ParsedQuota {
  readonly connections: number
  readonly maxWaitMs: number | undefined
  readonly maxWaiting: number | undefined
}

/** `createTenantPool`'s options after validation, with every default filled in. */
export interface ParsedPoolOptions {
  readonly setting: string
  readonly scope: ScopeMode
  readonly roles: readonly RoleMatcher[]
  readonly maxValueLength: number
  /** The release canary's sample rate, 0 to 1. */
  readonly verifyRate: number
  readonly prepareTenantStatement: boolean
  readonly allowRlsBypass: boolean
  /** The per-tenant connection quota; undefined: none. */
  readonly quota: ParsedQuota | undefined
}

const POOL_KEYS = new Set<string>([
  'setting',
  'scope',
  'roles',
  'maxValueLength',
  'verifyRelease',
  'prepareTenantStatement',
  'allowRlsBypass',
  'maxPerTenant',
])

/**
 * Validates `createTenantPool`'s options and fills in the defaults. Throws `InvalidOptionsError`
 * for an unknown key or a value that cannot be honoured.
 */
export function parsePoolOptions(options: unknown): ParsedPoolOptions {
  if (options === undefined) options = {}
  if (typeof options !== 'object' || options === null || Array.isArray(options)) {
    throw new InvalidOptionsError('createTenantPool options must be an object')
  }
  refuseUnknownKeys('createTenantPool', options, POOL_KEYS)
  const given = options as TenantPoolOptions
  const { setting = 'app.tenant_id', scope = 'transaction', roles = [] } = given
  if (scope !== 'transaction' && scope !== 'session') {
    throw new InvalidOptionsError(`scope must be 'transaction' or 'session', got ${String(scope)}`)
  }
  if (!Array.isArray(roles) || !roles.every((r) => typeof r === 'string' || r instanceof RegExp)) {
    throw new InvalidOptionsError('roles must be an array of strings and RegExps')
  }
  const maxValueLength = given.maxValueLength ?? DEFAULT_MAX_VALUE_LENGTH
  if (!Number.isInteger(maxValueLength) || maxValueLength < 1) {
    throw new InvalidOptionsError('maxValueLength must be a positive integer')
  }
  const prepareTenantStatement = given.prepareTenantStatement ?? true
  if (typeof prepareTenantStatement !== 'boolean') {
    throw new InvalidOptionsError('prepareTenantStatement must be a boolean')
  }
  const allowRlsBypass = given.allowRlsBypass ?? false
  if (typeof allowRlsBypass !== 'boolean') throw new InvalidOptionsError('allowRlsBypass must be a boolean')
  return {
    allowRlsBypass,
    setting: validateSettingName(setting, true),
    scope,
    roles: [...roles],
    maxValueLength,
    verifyRate: parseVerifyRelease(given.verifyRelease),
    prepareTenantStatement,
    quota: parseQuota(given.maxPerTenant),
  }
}

const MAX_TIMER_MS = 2 ** 31 - 1
const QUOTA_KEYS = new Set(['connections', 'maxWaitMs', 'maxWaiting'])

/** `maxPerTenant`: a positive integer, or `{ connections, maxWaitMs?, maxWaiting? }`. */
function parseQuota(option: unknown): ParsedQuota | undefined {
  if (option === undefined) return undefined
  const positive = (value: unknown) => typeof value === 'number' && Number.isSafeInteger(value) && value >= 1
  if (typeof option === 'number') {
    if (!positive(option)) throw new InvalidOptionsError(`maxPerTenant must be a positive integer, got ${String(option)}`)
    return { connections: option, maxWaitMs: undefined, maxWaiting: undefined }
  }
  if (typeof option !== 'object' || option === null || Array.isArray(option)) {
    throw new InvalidOptionsError('maxPerTenant must be a positive integer or { connections, maxWaitMs?, maxWaiting? }')
  }
  refuseUnknownKeys('maxPerTenant', option, QUOTA_KEYS)
  const { connections, maxWaitMs, maxWaiting } = option as Partial<TenantQuotaOptions>
  if (!positive(connections)) {
    throw new InvalidOptionsError(`maxPerTenant.connections must be a positive integer, got ${String(connections)}`)
  }
  // A timer longer than 2^31 - 1 ms fires at once in Node: such a bound would refuse every wait.
  if (maxWaitMs !== undefined && !(positive(maxWaitMs) && maxWaitMs <= MAX_TIMER_MS)) {
    throw new InvalidOptionsError(
      `maxPerTenant.maxWaitMs must be a positive integer of milliseconds up to ${MAX_TIMER_MS}, got ${String(maxWaitMs)}`,
    )
  }
  if (maxWaiting !== undefined && !(typeof maxWaiting === 'number' && Number.isSafeInteger(maxWaiting) && maxWaiting >= 0)) {
    throw new InvalidOptionsError(`maxPerTenant.maxWaiting must be an integer of 0 or more, got ${String(maxWaiting)}`)
  }
  return { connections: connections!, maxWaitMs, maxWaiting }
}

/** `verifyRelease` as a sample rate in [0, 1]: `true` is 1, `false` or absent 0. */
function parseVerifyRelease(option: unknown): number {
  if (option === undefined || option === false) return 0
  if (option === true) return 1
  if (typeof option === 'number' && Number.isFinite(option) && option >= 0 && option <= 1) return option
  throw new InvalidOptionsError(`verifyRelease must be a boolean or a sample rate between 0 and 1, got ${String(option)}`)
}

/** The adapters' options after validation: the resolver, and whether a tenant is required. */
export interface ParsedAdapterOptions<Resolve> {
  readonly resolve: Resolve
  readonly required: boolean
}

// Keys Fastify itself reads from a plugin's registration options, which reach the plugin too.
const FASTIFY_REGISTER_KEYS = ['prefix', 'logLevel', 'logSerializers']

/**
 * Validates an adapter's options (`who`: `tenantMiddleware` or `tenantPlugin`): `db` must be a
 * TenantPool (anything with `runWithTenant`), `resolve` a function, `required` a boolean; `extra`
 * names the adapter's other keys. Throws `InvalidOptionsError` otherwise.
 */
export function parseAdapterOptions<Resolve>(
  who: 'tenantMiddleware' | 'tenantPlugin',
  db: unknown,
  options: unknown,
  extra: readonly string[] = [],
): ParsedAdapterOptions<Resolve> {
  if (typeof (db as { runWithTenant?: unknown } | null | undefined)?.runWithTenant !== 'function') {
    throw new InvalidOptionsError(`${who}: db must be a TenantPool (from createTenantPool)`)
  }
  if (typeof options !== 'object' || options === null) {
    throw new InvalidOptionsError(`${who} needs options: { resolve }`)
  }
  const known = who === 'tenantPlugin' ? [...FASTIFY_REGISTER_KEYS, 'db'] : []
  refuseUnknownKeys(who, options, new Set(['resolve', 'required', ...known, ...extra]))
  const { resolve, required = true } = options as { resolve?: unknown; required?: unknown }
  if (typeof resolve !== 'function') {
    throw new InvalidOptionsError(`${who}: resolve must be a function (req) => tenant | undefined`)
  }
  if (typeof required !== 'boolean') throw new InvalidOptionsError(`${who}: required must be a boolean`)
  return { resolve: resolve as Resolve, required }
}

function refuseUnknownKeys(who: string, options: object, known: ReadonlySet<string>): void {
  const unknown = Object.keys(options).filter((key) => !known.has(key))
  if (unknown.length === 0) return
  const list = unknown.map((key) => JSON.stringify(key)).join(', ')
  throw new InvalidOptionsError(`${who}: unknown option${unknown.length > 1 ? 's' : ''} ${list} (known: ${[...known].join(', ')})`)
}
