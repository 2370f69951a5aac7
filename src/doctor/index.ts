/**
 * The RLS doctor, `pg-tenant/doctor`: reads the system catalogs and reports every way the database
 * would let a tenant see or write another tenant's rows, or would let a developer believe RLS
 * protects them when it does not. It only reads (SELECT on catalogs and privilege functions); it
 * never changes anything.
 *
 * A subpath of its own, so that applications do not carry it: `db.doctor()` loads this module on
 * first use. Layout: options.ts validates the options, session.ts gets one session, catalog.ts
 * holds every catalog read, runner.ts hands the subjects to the rules, one file per rule under
 * checks/ (its finding code, what it reads, its fix).
 */
import type { PgPoolLike } from '../driver/index.js'
import { normalizeOptions } from './options.js'
import { diagnose } from './runner.js'
import { withSession } from './session.js'
import type { CheckRlsOptions, Finding, QueryableLike } from './types.js'

export type { CheckRlsOptions, Finding, FindingCode, PoolDoctorOptions, QueryableLike } from './types.js'

/**
 * Checks that PostgreSQL really keeps tenants apart for the login role of this connection, and
 * returns what is wrong, errors first. An empty array means at least one tenant table was checked
 * and no check failed; it is not a proof of isolation (policies' logic is read heuristically, see
 * the policy rules). When the options select no tenant table, or name a schema that does not
 * exist, the result holds a NOTHING_CHECKED error instead of being empty.
 *
 * Errors: the login role is superuser or has BYPASSRLS; an allow-listed role it can switch to
 * bypasses RLS; it owns (or inherits the owner of) a tenant table without FORCE ROW LEVEL
 * SECURITY; a tenant table it (or an allow-listed role) can read or write has RLS disabled, or
 * enabled with no policy; an INSERT, UPDATE or ALL policy on a tenant table has no WITH CHECK; a
 * view over a tenant table runs with its owner's rights (no `security_invoker`, PostgreSQL 15+); a
 * materialized view over a tenant table is readable (materialized views have no RLS); TRUNCATE,
 * which ignores RLS, is granted on a tenant table; scope `'session'` behind a pooler in
 * transaction or statement mode (declared with `pgbouncer`); nothing was checked (NOTHING_CHECKED).
 *
 * Warnings: the login role owns a tenant table (FORCEd, but it can turn RLS off); a policy reads
 * `current_setting(...)` without `nullif(..., '')` or without the `(SELECT ...)` wrapper; a policy
 * ORs in a branch controlled by another setting (`OR current_setting('app.bypass_rls') = 'on'`); a
 * policy casts the tenant column instead of the setting (no index can serve it); an
 * IMMUTABLE function reads a setting; the login role inherits the privileges of allow-listed
 * roles; an allow-listed role does not exist or is not granted to the login role; scope
 * `'session'` over a connection that looks proxied.
 *
 * Pooler detection: the protocol gives no way to ask PgBouncer its pool mode from a normal
 * connection (`SHOW` goes to the server). When `pgbouncer` is not given and the target is a
 * node-postgres client or pool, the doctor compares the local port of its TCP socket with the
 * client port the server sees (`inet_client_port()`): a difference means a proxy or NAT is in
 * between, which is reported as a warning for scope `'session'`. A pooler reached over a Unix
 * socket, or drivers without a visible socket, cannot be detected: declare `pgbouncer` instead.
 *
 * @param target - a `pg.Pool` (one client is checked out and released), a `pg.Client` or any
 *   object with `query(text, values)`
 * @throws InvalidOptionsError for invalid options or an unknown `loginRole`
 *
 * @example
 * ```ts
 * import pg from 'pg'
 * import { checkRls } from 'pg-tenant/doctor'
 *
 * const findings = await checkRls(new pg.Pool({ connectionString: process.env.DATABASE_URL }), {
 *   setting: 'app.tenant_id',
 *   tenantColumn: 'org_id',
 * })
 * for (const f of findings) console.log(f.severity, f.code, f.object, f.message, '\n', f.fix)
 * if (findings.some((f) => f.severity === 'error')) process.exit(1)
 * ```
 */
export async function checkRls(
  target: PgPoolLike | QueryableLike,
  options: CheckRlsOptions,
): Promise<Finding[]> {
  const opts = normalizeOptions(options)
  return withSession(target, (query, client) => diagnose(query, client, opts))
}
