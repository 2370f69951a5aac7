/**
 * The kinds of scope, on their own so that what reports on scopes (src/observe) and what runs them
 * (src/scope) both import this without importing each other.
 */

/**
 * `'transaction'`: the scope is one transaction and settings are `set_config(..., true)`, gone when
 * it ends. `'session'`: settings and role are set on checkout and reset before release; queries run
 * in autocommit. Needs session pooling behind PgBouncer.
 *
 * @example
 * ```ts
 * const mode: ScopeMode = 'transaction'
 * const db = createTenantPool(pool, { scope: mode })
 * ```
 */
export type ScopeMode = 'transaction' | 'session'

/**
 * How a scope runs: a public mode; `'single'`, one statement in its own implicit transaction; or
 * `'client'`, a `db.pool.connect()` client under `runWithTenant`.
 */
export type ScopeKind = ScopeMode | 'single' | 'client'
