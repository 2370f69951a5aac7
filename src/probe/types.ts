/** What the isolation probe takes and what it reports: one {@link ProbeEntry} per table. */
import type { PgPoolLike } from '../driver/index.js'
import type { RoleMatcher, Tenant } from '../tenant.js'

/**
 * The options of {@link probeIsolation}: where to connect (`pool` or `connectionString`, as the
 * application's login role), the tenants to act as (at least two), and what to check.
 *
 * @example
 * ```ts
 * const options: ProbeOptions = {
 *   connectionString: process.env.DATABASE_URL,
 *   tenants: ['org_a', 'org_b'],
 *   schemas: ['public'],
 * }
 * ```
 */
export interface ProbeOptions {
  /** A `pg.Pool` of the login role. Not ended by the probe. One of `pool` and `connectionString`. */
  readonly pool?: PgPoolLike
  /** A connection string of the login role: the probe makes a pool (with `pg`) and ends it. */
  readonly connectionString?: string
  /**
   * The tenants to act as, at least two, as `withTenant` takes them: tenant ids (written to
   * `setting`), or `{ role }` for a role per tenant (seed 000's model).
   */
  readonly tenants: readonly Tenant[]
  /**
   * The pool's `roles` allow-list. Default: exactly the roles the tenants name (so a tenant's
   * `SET ROLE` goes through pg-tenant's allow-list check as in the application).
   */
  readonly roles?: readonly RoleMatcher[]
  /** The schemas whose tables are probed. Default: every schema but pg_*, information_schema. */
  readonly schemas?: readonly string[]
  /** The setting tenant ids are written to. Default `'app.tenant_id'`. */
  readonly setting?: string
  /**
   * Tables (`schema.name`) meant to be shared by every tenant, such as a lookup table: their rows
   * may be seen with no tenant and by several tenants, but no tenant may UPDATE or DELETE them.
   */
  readonly shared?: readonly string[]
  /** The most row identities read per tenant and table (row counts stay exact). Default 10000. */
  readonly maxRows?: number
}

/**
 * How rows are told apart across sessions: a table's primary key; without one, `tableoid:ctid`;
 * for a view or materialized view, `md5(row::text)`.
 *
 * @example
 * ```ts
 * const identity: RowIdentity = { kind: 'primary-key', columns: ['id'] }
 * ```
 */
export type RowIdentity =
  | { readonly kind: 'primary-key'; readonly columns: readonly string[] }
  | { readonly kind: 'ctid' }
  | { readonly kind: 'row-hash' }

/**
 * A way one tenant's rows reach another tenant, or any rows reach no tenant.
 *
 * @example
 * ```ts
 * const leak: ProbeLeak = { kind: 'shared-rows', rows: 1, tenants: ['org_a', 'org_b'], message: '1 row seen by both org_a and org_b' }
 * ```
 */
export interface ProbeLeak {
  /**
   * - `no-tenant`: rows visible with no tenant bound (fail-open);
   * - `shared-rows`: rows visible to two different tenants;
   * - `cross-tenant-update` / `cross-tenant-delete`: rows another tenant sees that this one can change;
   * - `blind-delete`: rows a tenant can DELETE (with no WHERE) but cannot see;
   * - `shared-write`: a tenant can change rows of a table declared shared.
   */
  readonly kind: 'no-tenant' | 'shared-rows' | 'cross-tenant-update' | 'cross-tenant-delete' | 'blind-delete' | 'shared-write'
  /** How many rows. */
  readonly rows: number
  /** The tenants involved: [seen by, acting] for writes, the pair for shared rows. */
  readonly tenants: readonly string[]
  readonly message: string
}

/**
 * The probe's verdict on one table, as `pg-tenant probe --json` prints it.
 *
 * `status`: `pass` (checked, nothing leaked), `leak`, `skipped` (no tenant may read it: not
 * checked, so `ok` is false) or `error` (a statement failed).
 *
 * @example
 * ```ts
 * const entry: ProbeEntry = (await probeIsolation(options))[0]!
 * if (!entry.ok) console.log(entry.table, entry.status, entry.reason, entry.fix)
 * ```
 */
export interface ProbeEntry {
  /** `schema.name` */
  readonly table: string
  /** `table` (or partitioned table), `view` or `materialized view` (views are read, not written). */
  readonly kind: 'table' | 'view' | 'materialized view'
  /** Checked and passed. */
  readonly ok: boolean
  readonly status: 'pass' | 'leak' | 'skipped' | 'error'
  /** Declared shared (`shared` option). */
  readonly shared: boolean
  readonly identity: RowIdentity
  /** Rows the login role sees with no tenant bound, or null when it cannot read the table. */
  readonly noTenantRows: number | null
  /** Rows each tenant sees, in the order given; null when that tenant cannot read the table. */
  readonly tenantRows: ReadonlyArray<{ readonly tenant: string; readonly rows: number | null }>
  readonly leaks: readonly ProbeLeak[]
  /** What was not tried, and why; what failed closed. */
  readonly notes: readonly string[]
  /** One sentence: why this verdict. */
  readonly reason: string
  /** What to change, SQL where it helps; null when nothing is to be fixed. */
  readonly fix: string | null
}
