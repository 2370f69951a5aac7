/**
 * `pg-tenant/testing`: proves tenant isolation on a real database from a test suite. It acts
 * rather than reads the catalog (that is `pg-tenant/doctor`): as the application's login role and
 * through pg-tenant itself, it reads every table as no tenant and as each tenant given, and tries
 * UPDATE and DELETE across tenants in transactions that are always rolled back.
 *
 * A subpath of its own: the core bundle (`pg-tenant`) does not import it.
 */
import { runProbe } from '../probe/run.js'
import type { ProbeEntry, ProbeOptions } from '../probe/types.js'

export type { ProbeEntry, ProbeLeak, ProbeOptions, RowIdentity } from '../probe/types.js'
export { formatProbe, probeExitCode } from '../probe/format.js'

/**
 * Probes every table of `schemas` (default: every schema but pg_* and information_schema) and
 * returns one entry per table, in schema and name order: the same entries `pg-tenant probe --json`
 * prints. A table leaks when, as the login role:
 * - rows are visible with no tenant bound (the setting never written, or empty; no role switched);
 * - two tenants see the same row (by primary key; without one, by `tableoid:ctid`);
 * - a tenant can UPDATE or DELETE rows another tenant sees, or DELETE rows it cannot see.
 *
 * Nothing is changed: every transaction and savepoint ends in ROLLBACK. UPDATE and DELETE triggers
 * and ON DELETE actions do fire inside them (and are undone); what a trigger does outside the
 * database, or a sequence it advances, is not. A write the role has no privilege for is not tried
 * (noted in `notes`). A table no tenant can read is `skipped` (`ok: false`). Run it against a test
 * or staging database seeded with rows for each tenant: an empty table proves nothing.
 *
 * @throws InvalidOptionsError for bad options (fewer than two tenants, a malformed URL); the pool's
 *   connection errors; RoleSwitchError when a tenant's role cannot be switched to
 *
 * @example
 * ```ts
 * import pg from 'pg'
 * import { probeIsolation } from 'pg-tenant/testing'
 *
 * const pool = new pg.Pool({ connectionString: process.env.APP_DATABASE_URL })
 * const entries = await probeIsolation({ pool, tenants: ['org_a', 'org_b'], schemas: ['public'] })
 * const leaking = entries.filter((e) => e.status === 'leak')
 * if (leaking.length > 0) throw new Error(leaking.map((e) => `${e.table}: ${e.reason}`).join('\n'))
 * await pool.end()
 *
 * // One role per tenant (SET ROLE through the allow-list):
 * await probeIsolation({
 *   connectionString: process.env.APP_DATABASE_URL,
 *   tenants: [{ role: 'sales_sp_1' }, { role: 'sales_sp_2' }],
 * })
 * ```
 */
export function probeIsolation(options: ProbeOptions): Promise<ProbeEntry[]> {
  return runProbe(options)
}
