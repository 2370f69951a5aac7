/**
 * The doctor's public types: what {@link checkRls} takes and what it returns. Types only: the
 * core package re-exports them (for `db.doctor()`) without loading any of the doctor's code.
 */
import type { ScopeMode } from '../scope/kinds.js'
import type { RoleMatcher } from '../tenant.js'

/**
 * The stable codes of the doctor's findings. Match on these, not on messages.
 *
 * Errors: `LOGIN_ROLE_SUPERUSER`, `LOGIN_ROLE_BYPASSRLS`, `ALLOWED_ROLE_BYPASSES_RLS`,
 * `OWNER_NO_FORCE`, `RLS_DISABLED`, `RLS_NO_POLICY`, `POLICY_NO_WITH_CHECK`,
 * `VIEW_NOT_SECURITY_INVOKER` (a warning on PostgreSQL 14), `MATVIEW_OVER_TENANT_TABLE`,
 * `TRUNCATE_GRANTED`, `SESSION_SCOPE_TRANSACTION_POOLING`, `NOTHING_CHECKED` (the options selected no
 * tenant table, or name a schema that does not exist: an empty result would prove nothing).
 *
 * Warnings: `LOGIN_ROLE_OWNS_TABLE`, `POLICY_SETTING_NO_NULLIF`, `POLICY_SETTING_NO_INITPLAN`,
 * `FUNCTION_IMMUTABLE_READS_SETTING`, `LOGIN_ROLE_INHERITS_TENANT_ROLES`,
 * `ALLOWED_ROLE_NOT_GRANTED`, `SESSION_SCOPE_BEHIND_PROXY`, `POLICY_SETTING_BYPASS` (a policy ORs in
 * a branch another setting controls), `POLICY_CAST_PREVENTS_INDEX` (the tenant column is cast, not
 * the setting).
 *
 * @example
 * ```ts
 * const blocking = findings.filter((f) => f.code === 'RLS_DISABLED')
 * ```
 */
export type FindingCode =
  | 'LOGIN_ROLE_SUPERUSER'
  | 'LOGIN_ROLE_BYPASSRLS'
  | 'ALLOWED_ROLE_BYPASSES_RLS'
  | 'OWNER_NO_FORCE'
  | 'RLS_DISABLED'
  | 'RLS_NO_POLICY'
  | 'POLICY_NO_WITH_CHECK'
  | 'VIEW_NOT_SECURITY_INVOKER'
  | 'MATVIEW_OVER_TENANT_TABLE'
  | 'TRUNCATE_GRANTED'
  | 'SESSION_SCOPE_TRANSACTION_POOLING'
  | 'NOTHING_CHECKED'
  | 'LOGIN_ROLE_OWNS_TABLE'
  | 'POLICY_SETTING_NO_NULLIF'
  | 'POLICY_SETTING_NO_INITPLAN'
  | 'FUNCTION_IMMUTABLE_READS_SETTING'
  | 'LOGIN_ROLE_INHERITS_TENANT_ROLES'
  | 'ALLOWED_ROLE_NOT_GRANTED'
  | 'SESSION_SCOPE_BEHIND_PROXY'
  | 'POLICY_SETTING_BYPASS'
  | 'POLICY_CAST_PREVENTS_INDEX'

/**
 * One problem the doctor found.
 *
 * @example
 * ```ts
 * const finding: Finding = {
 *   severity: 'error',
 *   code: 'RLS_DISABLED',
 *   object: 'table public.events',
 *   message: 'row-level security is disabled on public.events, which app_user can read',
 *   fix: 'ALTER TABLE "public"."events" ENABLE ROW LEVEL SECURITY; ...',
 * }
 * ```
 */
export interface Finding {
  /** `'error'`: tenants are (or can be) exposed. `'warning'`: fragile, slow or misconfigured. */
  readonly severity: 'error' | 'warning'
  /** A stable code; see {@link FindingCode}. */
  readonly code: FindingCode
  /** What it is about: `table public.events`, `policy p on public.events`, `role app_user`, ... */
  readonly object: string
  /** What is wrong and why it matters. */
  readonly message: string
  /**
   * SQL that repairs it, to run as the object's owner or a superuser. Lines starting with `--`
   * explain choices the doctor cannot make for you. Review before running.
   */
  readonly fix: string
}

/**
 * Options of {@link checkRls}.
 *
 * @example
 * ```ts
 * const options: CheckRlsOptions = {
 *   setting: 'app.tenant_id',
 *   tenantColumn: 'org_id',
 *   schemas: ['public'],
 *   roles: [/^sales_[0-9]+$/],
 *   scope: 'transaction',
 * }
 * ```
 */
export interface CheckRlsOptions {
  /** The setting tenant ids are written to, as in `createTenantPool`. Default `'app.tenant_id'`. */
  setting?: string | undefined
  /**
   * The column (or columns) that mark a tenant table: every table or partition that has one is
   * expected to be isolated by RLS.
   */
  tenantColumn: string | readonly string[]
  /** Schemas to check. Default: every schema except `pg_*` and `information_schema`. */
  schemas?: readonly string[] | undefined
  /** The pool's role allow-list (strings and RegExps), as in `createTenantPool`. Default none. */
  roles?: readonly RoleMatcher[] | undefined
  /** The pool's scope kind, as in `createTenantPool`. Default `'transaction'`. */
  scope?: ScopeMode | undefined
  /**
   * The login role to check. Default: the role this connection logged in as (`session_user`).
   * Set it to check the application's role while connected as an administrator.
   */
  loginRole?: string | undefined
  /**
   * How the application reaches PostgreSQL. `'transaction'` or `'statement'`: through PgBouncer
   * (or another pooler) in that pool mode, which scope `'session'` cannot work with. `'session'`:
   * a session-mode pooler. `false`: directly, do not probe. `undefined` (default): probe, see
   * {@link checkRls}.
   */
  pgbouncer?: 'session' | 'transaction' | 'statement' | false | undefined
}

/**
 * What {@link TenantPool.doctor} takes: the options of {@link checkRls} except those the pool
 * already has (`setting`, `roles`, `scope`).
 *
 * @example
 * ```ts
 * const options: PoolDoctorOptions = { tenantColumn: 'org_id', schemas: ['public'] }
 * ```
 */
export type PoolDoctorOptions = Omit<CheckRlsOptions, 'setting' | 'roles' | 'scope'>

/**
 * Anything with a pg-style `query(text, values)`: a `pg.Client`, a pooled client or a `pg.Pool`.
 *
 * @example
 * ```ts
 * const client: QueryableLike = new pg.Client({ connectionString })
 * ```
 */
export interface QueryableLike {
  query(text: string, values?: readonly unknown[]): Promise<{ rows: any[] }>
}
