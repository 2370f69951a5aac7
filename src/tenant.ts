/**
 * What a tenant is, how it is validated, and what SQL it becomes. Nothing here talks to a database.
 *
 * Every value reaches PostgreSQL as a bind parameter of `set_config(name, value, is_local)`: `SET`
 * takes no parameters, so the library never builds `SET x = '<value>'` from input. Setting names are
 * validated here; pg-tenant passes them as bind parameters too.
 */
import { InvalidOptionsError, InvalidTenantError, RoleNotAllowedError } from './errors.js'

/**
 * Who a scope runs as. A string is a tenant id, written to the pool's `setting` (default
 * `app.tenant_id`). An object may carry an `id`, a database `role` to switch to (it must be on the
 * pool's `roles` allow-list), and extra `settings` (custom GUCs, `prefix.name`).
 *
 * @example
 * ```ts
 * const a: Tenant = 'org_42'
 * const b: Tenant = { role: 'sales_7' }
 * const c: Tenant = { id: 'org_42', settings: { 'app.user_id': 'u_9' } }
 * ```
 */
export type Tenant =
  | string
  | {
      readonly id?: string
      readonly role?: string
      readonly settings?: Readonly<Record<string, string>>
    }

/** An entry of the `roles` allow-list: an exact role name, or a RegExp that must match it whole. */
export type RoleMatcher = string | RegExp

/** A tenant after validation: the settings to write, in a fixed order, and the role if any. */
export interface ResolvedTenant {
  /** The value the caller passed, returned by `currentTenant()`. */
  readonly input: Tenant
  /** `[name, value]` pairs, the tenant id first. */
  readonly settings: ReadonlyArray<readonly [string, string]>
  readonly role: string | undefined
  /** Equal for two tenants exactly when they apply the same role and settings. */
  readonly key: string
  /** What is derived from the tenant, computed on first use: the tenant never changes. */
  readonly memo: TenantMemo
}

/** Per-tenant derived values, filled in lazily. */
export interface TenantMemo {
  /** {@link applyStatement}'s results, by (local, withPid). */
  readonly statements: Array<Statement | undefined>
  /** The lone-query apply statement in its prepared form, with its wire bytes (scope.ts, pipeline.ts). */
  prepared?: Statement & { readonly name: string; wire?: Uint8Array }
  /** Who the per-tenant quota counts this tenant as (scope/tenant-gate.ts). */
  quota?: { readonly key: string; readonly tenant: Tenant | undefined }
}

/** A fresh, empty memo. */
export function newMemo(): TenantMemo {
  return { statements: [] }
}

/** Default cap on a tenant id or setting value, in characters. */
export const DEFAULT_MAX_VALUE_LENGTH = 256

// PostgreSQL truncates identifiers to NAMEDATALEN - 1 = 63 bytes; longer names would silently
// become another name, so they are refused instead.
const MAX_IDENTIFIER_BYTES = 63
const SETTING_NAME = /^[A-Za-z_][A-Za-z0-9_$]*(?:\.[A-Za-z_][A-Za-z0-9_$]*)+$/

/**
 * Checks a custom setting (GUC) name: two or more dot-separated identifier parts, each at most 63
 * bytes. Returns the name, or throws `InvalidOptionsError` (when `asOption`) or `InvalidTenantError`.
 */
export function validateSettingName(name: unknown, asOption: boolean): string {
  const fail = (why: string) => {
    const message = `invalid setting name ${JSON.stringify(name)}: ${why}`
    return asOption ? new InvalidOptionsError(message) : new InvalidTenantError(message)
  }
  if (typeof name !== 'string') throw fail('it must be a string')
  if (!SETTING_NAME.test(name)) {
    throw fail('use prefix.name with letters, digits, _ and $ (e.g. app.tenant_id)')
  }
  if (name.split('.').some((part) => Buffer.byteLength(part) > MAX_IDENTIFIER_BYTES)) {
    throw fail(`each part must be at most ${MAX_IDENTIFIER_BYTES} bytes`)
  }
  return name
}

function validateValue(what: string, value: unknown, maxLength: number): string {
  if (typeof value !== 'string') {
    throw new InvalidTenantError(`${what} must be a string, got ${describe(value)}`)
  }
  if (value.length === 0) throw new InvalidTenantError(`${what} must not be empty`)
  if (value.length > maxLength) {
    throw new InvalidTenantError(`${what} is longer than ${maxLength} characters`)
  }
  if (value.includes('\0')) throw new InvalidTenantError(`${what} must not contain NUL`)
  // An unpaired surrogate is sent as U+FFFD, so two different ids would reach the database as the
  // same value: refuse them rather than let tenants collide.
  if (!value.isWellFormed()) {
    throw new InvalidTenantError(`${what} contains an unpaired UTF-16 surrogate`)
  }
  return value
}

function describe(value: unknown): string {
  if (value === null) return 'null'
  if (Array.isArray(value)) return 'an array'
  return typeof value
}

/** Options that decide how tenants are resolved; a subset of the pool's options. */
export interface TenantRules {
  readonly setting: string
  readonly roles: readonly RoleMatcher[]
  readonly maxValueLength: number
}

/**
 * Whether `role` is on the allow-list. A RegExp must match the whole name: `/org_/` does not
 * allow `evil_org_x`.
 */
export function isRoleAllowed(role: string, roles: readonly RoleMatcher[]): boolean {
  return roles.some((matcher) => {
    if (typeof matcher === 'string') return matcher === role
    matcher.lastIndex = 0
    const match = matcher.exec(role)
    matcher.lastIndex = 0
    return match !== null && match.index === 0 && match[0].length === role.length
  })
}

function validateRole(role: unknown, rules: TenantRules): string {
  const name = validateValue('role', role, MAX_IDENTIFIER_BYTES)
  if (Buffer.byteLength(name) > MAX_IDENTIFIER_BYTES) {
    throw new InvalidTenantError(`role is longer than ${MAX_IDENTIFIER_BYTES} bytes`)
  }
  // `set_config('role', 'none', ...)` means RESET ROLE: never a tenant.
  if (name.toLowerCase() === 'none' || !isRoleAllowed(name, rules.roles)) {
    throw new RoleNotAllowedError(name)
  }
  return name
}

/**
 * Validates a tenant and computes what it applies. Throws `InvalidTenantError` or
 * `RoleNotAllowedError`; nothing has been sent to the database when it does.
 */
export function resolveTenant(input: unknown, rules: TenantRules): ResolvedTenant {
  const settings: Array<readonly [string, string]> = []
  let role: string | undefined
  if (typeof input === 'string') {
    settings.push([rules.setting, validateValue('tenant id', input, rules.maxValueLength)])
  } else if (typeof input === 'object' && input !== null && !Array.isArray(input)) {
    const { id, role: wanted, settings: extra, ...unknown } = input as Record<string, unknown>
    const stray = Object.keys(unknown)
    if (stray.length > 0) {
      throw new InvalidTenantError(`unknown tenant field(s): ${stray.join(', ')}`)
    }
    if (id !== undefined) {
      settings.push([rules.setting, validateValue('tenant id', id, rules.maxValueLength)])
    }
    if (extra !== undefined) {
      if (typeof extra !== 'object' || extra === null || Array.isArray(extra)) {
        throw new InvalidTenantError('tenant settings must be an object of strings')
      }
      for (const [name, value] of Object.entries(extra).sort(([a], [b]) => (a < b ? -1 : 1))) {
        validateSettingName(name, false)
        if (settings.some(([n]) => n.toLowerCase() === name.toLowerCase())) {
          throw new InvalidTenantError(`setting ${name} is given twice (the id is written to it)`)
        }
        settings.push([name, validateValue(`setting ${name}`, value, rules.maxValueLength)])
      }
    }
    if (wanted !== undefined) role = validateRole(wanted, rules)
    if (settings.length === 0 && role === undefined) {
      throw new InvalidTenantError('a tenant object needs an id, a role or settings')
    }
  } else {
    throw new InvalidTenantError(`a tenant must be a string or an object, got ${describe(input)}`)
  }
  return { input, settings, role, key: JSON.stringify([role ?? null, settings]), memo: newMemo() }
}

/** A parameterised statement. */
export interface Statement {
  readonly text: string
  readonly values: readonly string[]
}

/**
 * The one statement that applies a tenant: `select set_config($1, $2, <local>), ...`, with the role
 * last (`set_config('role', $n, ...)`, which PostgreSQL checks for membership like `SET ROLE`).
 * With `local`, everything ends with the surrounding transaction.
 */
export function applyStatement(tenant: ResolvedTenant, local: boolean, withPid = false): Statement {
  // Remembered per tenant (tenants are immutable and, for ids, reused by the pool): the hot path
  // of a lone query builds no SQL text.
  const slot = (local ? 1 : 0) + (withPid ? 2 : 0)
  return (tenant.memo.statements[slot] ??= buildApply(tenant, local, withPid))
}

function buildApply(tenant: ResolvedTenant, local: boolean, withPid: boolean): Statement {
  const calls: string[] = []
  const values: string[] = []
  for (const [name, value] of tenant.settings) {
    values.push(name, value)
    calls.push(`set_config($${values.length - 1}, $${values.length}, ${local})`)
  }
  if (tenant.role !== undefined) {
    values.push(tenant.role)
    calls.push(`set_config('role', $${values.length}, ${local})`)
  }
  if (withPid) calls.push('pg_backend_pid()')
  return { text: `select ${calls.join(', ')}`, values }
}
