/**
 * The RLS doctor: reads the system catalogs and reports every way the database would let a tenant
 * see or write another tenant's rows, or would let a developer believe RLS protects them when it
 * does not. It only reads (SELECT on catalogs and privilege functions); it never changes anything.
 *
 * Every catalog it reads (pg_class, pg_policy, pg_roles, pg_auth_members, pg_proc, pg_depend,
 * pg_rewrite) is readable by any role, so it works when run as the unprivileged login role itself.
 * SQL is kept compatible with PostgreSQL 14 to 18; version-specific checks read
 * `server_version_num`.
 */
import { localPortOf, looksLikeClient, type PgClientLike, type PgPoolLike } from '../driver/index.js'
import { InvalidOptionsError } from '../errors.js'
import type { ScopeMode } from '../scope/scope.js'
import { quoteLiteral, quoteTrusted } from '../sql/ident.js'
import { DEFAULT_TENANT_POLICY_NAME, policySql, tenantConditionSql } from '../sql/policy.js'
import { isRoleAllowed, validateSettingName, type RoleMatcher } from '../tenant.js'

/**
 * The stable codes of the doctor's findings. Match on these, not on messages.
 *
 * Errors: `LOGIN_ROLE_SUPERUSER`, `LOGIN_ROLE_BYPASSRLS`, `ALLOWED_ROLE_BYPASSES_RLS`,
 * `OWNER_NO_FORCE`, `RLS_DISABLED`, `RLS_NO_POLICY`, `POLICY_NO_WITH_CHECK`,
 * `VIEW_NOT_SECURITY_INVOKER` (a warning on PostgreSQL 14), `MATVIEW_OVER_TENANT_TABLE`,
 * `TRUNCATE_GRANTED`, `SESSION_SCOPE_TRANSACTION_POOLING`.
 *
 * Warnings: `LOGIN_ROLE_OWNS_TABLE`, `POLICY_SETTING_NO_NULLIF`, `POLICY_SETTING_NO_INITPLAN`,
 * `FUNCTION_IMMUTABLE_READS_SETTING`, `LOGIN_ROLE_INHERITS_TENANT_ROLES`,
 * `ALLOWED_ROLE_NOT_GRANTED`, `SESSION_SCOPE_BEHIND_PROXY`.
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
  | 'LOGIN_ROLE_OWNS_TABLE'
  | 'POLICY_SETTING_NO_NULLIF'
  | 'POLICY_SETTING_NO_INITPLAN'
  | 'FUNCTION_IMMUTABLE_READS_SETTING'
  | 'LOGIN_ROLE_INHERITS_TENANT_ROLES'
  | 'ALLOWED_ROLE_NOT_GRANTED'
  | 'SESSION_SCOPE_BEHIND_PROXY'

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

type Query = <R = Record<string, any>>(text: string, values?: readonly unknown[]) => Promise<R[]>

interface Options {
  readonly setting: string
  readonly columns: readonly string[]
  readonly schemas: readonly string[] | null
  readonly roles: readonly RoleMatcher[]
  readonly scope: ScopeMode
  readonly loginRole: string | null
  readonly pgbouncer: 'session' | 'transaction' | 'statement' | false | undefined
}

/**
 * Checks that PostgreSQL really keeps tenants apart for the login role of this connection, and
 * returns what is wrong, errors first. An empty array means no check failed; it is not a proof of
 * isolation (policies' logic is not verified, only their shape).
 *
 * Errors: the login role is superuser or has BYPASSRLS; an allow-listed role it can switch to
 * bypasses RLS; it owns (or inherits the owner of) a tenant table without FORCE ROW LEVEL
 * SECURITY; a tenant table it (or an allow-listed role) can read or write has RLS disabled, or
 * enabled with no policy; an INSERT, UPDATE or ALL policy on a tenant table has no WITH CHECK; a
 * view over a tenant table runs with its owner's rights (no `security_invoker`, PostgreSQL 15+); a
 * materialized view over a tenant table is readable (materialized views have no RLS); TRUNCATE,
 * which ignores RLS, is granted on a tenant table; scope `'session'` behind a pooler in
 * transaction or statement mode (declared with `pgbouncer`).
 *
 * Warnings: the login role owns a tenant table (FORCEd, but it can turn RLS off); a policy reads
 * `current_setting(...)` without `nullif(..., '')` or without the `(SELECT ...)` wrapper; an
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
 * import { checkRls } from 'pg-tenant'
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
  const opts = normalize(options)
  return withSession(target, async (query, client) => {
    const findings = await diagnose(query, client, opts)
    return sortFindings(findings)
  })
}

function normalize(options: CheckRlsOptions): Options {
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

/**
 * Runs `fn` on one session: a client checked out of a pool (released after, destroyed if anything
 * failed), or the given client / queryable as is.
 */
async function withSession<T>(
  target: PgPoolLike | QueryableLike,
  fn: (query: Query, client: unknown) => Promise<T>,
): Promise<T> {
  const t = target as unknown as Record<string, unknown> | null
  if (typeof t !== 'object' || t === null) {
    throw new InvalidOptionsError('checkRls needs a pg.Pool, a pg.Client or an object with query()')
  }
  if (typeof t.withTenant === 'function' && typeof t.doctor === 'function') {
    // A TenantPool's query() needs a tenant: it would fail closed with TenantRequiredError.
    throw new InvalidOptionsError('checkRls was given a TenantPool: call db.doctor() instead')
  }
  const clientLike = looksLikeClient(t)
  if (typeof t.query === 'function' && (clientLike || typeof t.connect !== 'function')) {
    return fn(queryOf(target as QueryableLike), target)
  }
  if (typeof t.connect !== 'function') {
    throw new InvalidOptionsError('checkRls needs a pg.Pool, a pg.Client or an object with query()')
  }
  const client: PgClientLike = await (target as PgPoolLike).connect()
  let result: T
  try {
    result = await fn(queryOf(client as unknown as QueryableLike), client)
  } catch (err) {
    client.release(err instanceof Error ? err : true)
    throw err
  }
  client.release()
  return result
}

function queryOf(target: QueryableLike): Query {
  return async (text, values) => (await target.query(text, values ?? [])).rows
}

// ---------------------------------------------------------------------------------------------
// Catalog reads
// ---------------------------------------------------------------------------------------------

interface LoginRow {
  version: number
  oid: string
  name: string
  superuser: boolean
  bypassrls: boolean
  inherit: boolean
  client_port: number | null
}

interface RoleRow {
  oid: string
  name: string
  superuser: boolean
  bypassrls: boolean
  settable: boolean
  inherits: boolean
  direct: boolean
}

interface TableRow {
  oid: string
  schema: string
  name: string
  rls: boolean
  force: boolean
  owner: string
  columns: string[]
  typname: string
  type_sql: string
  policies: number
}

interface AccessRow {
  oid: string
  role: string
  can_select: boolean
  can_write: boolean
  can_truncate: boolean
  owns: boolean
}

interface PolicyRow {
  table_oid: string
  name: string
  cmd: string
  qual: string | null
  with_check: string | null
}

interface ViewRow {
  oid: string
  schema: string
  name: string
  kind: string
  options: string[] | null
  bases: string[]
}

interface FunctionRow {
  schema: string
  name: string
  args: string
}

/** `true` when `n` (a pg_namespace alias) is one of the schemas to check; `$n` is text[] or null. */
function schemaFilter(alias: string, param: string): string {
  return `(case when ${param}::text[] is null
    then ${alias}.nspname !~ '^pg_' and ${alias}.nspname <> 'information_schema'
    else ${alias}.nspname = any(${param}::text[]) end)`
}

async function diagnose(query: Query, client: unknown, opts: Options): Promise<Finding[]> {
  const [login] = await query<LoginRow>(
    `select current_setting('server_version_num')::int as version,
            r.oid::text as oid, r.rolname::text as name, r.rolsuper as superuser,
            r.rolbypassrls as bypassrls, r.rolinherit as inherit,
            inet_client_port() as client_port
       from pg_roles r where r.rolname = coalesce($1::text, session_user::text)`,
    [opts.loginRole],
  )
  if (login === undefined) {
    throw new InvalidOptionsError(`loginRole ${JSON.stringify(opts.loginRole)} does not exist`)
  }
  const version = Number(login.version)
  const findings: Finding[] = []
  const loginName = quoteTrusted(login.name)
  const loginBypasses = login.superuser || login.bypassrls

  // --- the login role itself --------------------------------------------------------------------
  if (login.superuser) {
    findings.push({
      severity: 'error',
      code: 'LOGIN_ROLE_SUPERUSER',
      object: `role ${login.name}`,
      message: `${login.name} is a superuser: row-level security never applies to it, even with FORCE ROW LEVEL SECURITY, so every tenant's rows are visible to it`,
      // The bootstrap superuser (oid 10) cannot lose SUPERUSER: the fix is another login role.
      fix:
        login.oid === '10'
          ? `CREATE ROLE "app_user" LOGIN NOSUPERUSER NOBYPASSRLS NOINHERIT;\n-- set its password, GRANT it the table privileges it needs, and connect the application as it`
          : `ALTER ROLE ${loginName} NOSUPERUSER;\n-- or connect the application as a dedicated role: CREATE ROLE app_user LOGIN NOSUPERUSER NOBYPASSRLS NOINHERIT;`,
    })
  }
  if (login.bypassrls && !login.superuser) {
    findings.push({
      severity: 'error',
      code: 'LOGIN_ROLE_BYPASSRLS',
      object: `role ${login.name}`,
      message: `${login.name} has BYPASSRLS: row-level security never applies to it, so every tenant's rows are visible to it`,
      fix: `ALTER ROLE ${loginName} NOBYPASSRLS;`,
    })
  }

  // --- the allow-list ------------------------------------------------------------------------
  const allowed = await allowListFindings(query, opts, login, version, findings)
  // The roles whose privileges decide what the application can reach: the login role and every
  // allow-listed role it can switch to. Roles that bypass RLS are reported above.
  const subjects = [login.oid, ...allowed.map((r) => r.oid)]
  const subjectName = new Map<string, string>([
    [login.oid, login.name],
    ...allowed.map((r) => [r.oid, r.name] as [string, string]),
  ])
  const bypasses = new Set<string>(
    [...(loginBypasses ? [login.oid] : []), ...allowed.filter((r) => r.superuser || r.bypassrls).map((r) => r.oid)],
  )

  // --- tenant tables -------------------------------------------------------------------------
  const tables = await query<TableRow>(
    `select c.oid::text as oid, n.nspname::text as schema, c.relname::text as name,
            c.relrowsecurity as rls, c.relforcerowsecurity as force,
            pg_get_userbyid(c.relowner)::text as owner,
            array_agg(a.attname::text order by a.attnum) as columns,
            (array_agg(t.typname::text order by a.attnum))[1] as typname,
            (array_agg(format_type(a.atttypid, null) order by a.attnum))[1] as type_sql,
            (select count(*) from pg_policy p where p.polrelid = c.oid)::int as policies
       from pg_class c
       join pg_namespace n on n.oid = c.relnamespace
       join pg_attribute a on a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped
                          and a.attname = any($1::text[])
       join pg_type t on t.oid = a.atttypid
      where c.relkind in ('r', 'p') and ${schemaFilter('n', '$2')}
      group by c.oid, n.nspname
      order by n.nspname, c.relname`,
    [opts.columns, opts.schemas],
  )
  const tableOids = tables.map((t) => t.oid)
  const access = await accessOf(query, tableOids, subjects)

  for (const table of tables) {
    const rows = access.get(table.oid) ?? []
    const label = `${table.schema}.${table.name}`
    const qualified = `${quoteTrusted(table.schema)}.${quoteTrusted(table.name)}`
    const reachers = rows.filter((r) => r.can_select || r.can_write).map((r) => subjectName.get(r.role)!)
    const readers = rows.filter((r) => r.can_select).map((r) => subjectName.get(r.role)!)
    const how = readers.length > 0 ? `${names(readers)} can read` : `${names(reachers)} can write`
    if (reachers.length > 0 && !table.rls) {
      findings.push({
        severity: 'error',
        code: 'RLS_DISABLED',
        object: `table ${label}`,
        message: `row-level security is disabled on ${label}, which has a tenant column (${table.columns.join(', ')}) and which ${how}: every tenant's rows are exposed`,
        fix:
          table.policies === 0
            ? standardPolicySql(qualified, table, opts)
            : `ALTER TABLE ${qualified} ENABLE ROW LEVEL SECURITY;\nALTER TABLE ${qualified} FORCE ROW LEVEL SECURITY;`,
      })
    }
    if (reachers.length > 0 && table.rls && table.policies === 0) {
      findings.push({
        severity: 'error',
        code: 'RLS_NO_POLICY',
        object: `table ${label}`,
        message: `row-level security is enabled on ${label} but it has no policy: non-owners see no rows and cannot write (default deny), while its owner${table.force ? '' : ' and anything running with the owner\'s rights'} still sees every row. A policy was probably forgotten`,
        fix: standardPolicySql(qualified, table, opts),
      })
    }
    for (const row of rows) {
      const who = subjectName.get(row.role)!
      if (bypasses.has(row.role)) continue // RLS never applies to it: reported above
      if (row.owns && !table.force) {
        findings.push({
          severity: 'error',
          code: 'OWNER_NO_FORCE',
          object: `table ${label}`,
          message: `${who} ${who === table.owner ? 'owns' : `inherits the privileges of ${table.owner}, the owner of`} ${label}, which has no FORCE ROW LEVEL SECURITY: policies do not apply to the owner, so ${who} sees every tenant's rows`,
          fix: `ALTER TABLE ${qualified} FORCE ROW LEVEL SECURITY;\n-- better still: connect as a role that does not own the table and only holds GRANTs`,
        })
      } else if (row.owns) {
        findings.push({
          severity: 'warning',
          code: 'LOGIN_ROLE_OWNS_TABLE',
          object: `table ${label}`,
          message: `${who} ${who === table.owner ? 'owns' : `inherits the privileges of ${table.owner}, the owner of`} ${label}. FORCE ROW LEVEL SECURITY applies the policies to it, but as owner it can disable them (ALTER TABLE ... NO FORCE / DISABLE ROW LEVEL SECURITY, DROP POLICY) and TRUNCATE the table: one SQL injection becomes cross-tenant`,
          fix: `-- make a NOLOGIN role own the table and connect as a role that only holds GRANTs, e.g.\n-- CREATE ROLE schema_owner NOLOGIN;\n-- ALTER TABLE ${qualified} OWNER TO schema_owner;\n-- GRANT SELECT, INSERT, UPDATE, DELETE ON ${qualified} TO ${quoteTrusted(who)};`,
        })
      } else if (row.can_truncate) {
        findings.push({
          severity: 'error',
          code: 'TRUNCATE_GRANTED',
          object: `table ${label}`,
          message: `${who} may TRUNCATE ${label}; TRUNCATE ignores row-level security and deletes every tenant's rows`,
          fix: `REVOKE TRUNCATE ON ${qualified} FROM ${quoteTrusted(who)};\n-- if it is granted to PUBLIC or to a group ${who} belongs to, revoke it there`,
        })
      }
    }
  }

  // --- policies ------------------------------------------------------------------------------
  await policyFindings(query, opts, tables, findings)

  // --- views and materialized views over tenant tables ----------------------------------------
  await viewFindings(query, tableOids, tables, subjects, subjectName, version, findings)

  // --- IMMUTABLE functions that read settings -------------------------------------------------
  const functions = await query<FunctionRow>(
    `select n.nspname::text as schema, p.proname::text as name,
            pg_get_function_identity_arguments(p.oid) as args
       from pg_proc p
       join pg_namespace n on n.oid = p.pronamespace
       join pg_language l on l.oid = p.prolang
      where p.provolatile = 'i' and p.prokind = 'f' and l.lanname not in ('internal', 'c')
        and ${schemaFilter('n', '$1')}
        and not exists (select 1 from pg_depend d where d.classid = 'pg_proc'::regclass
                          and d.objid = p.oid and d.deptype = 'e')
        and (p.prosrc ~* 'current_setting'
             ${version >= 140000 ? `or (p.prosqlbody is not null and pg_get_functiondef(p.oid) ~* 'current_setting')` : ''})
      order by 1, 2, 3`,
    [opts.schemas],
  )
  for (const fn of functions) {
    const signature = `${quoteTrusted(fn.schema)}.${quoteTrusted(fn.name)}(${fn.args})`
    findings.push({
      severity: 'warning',
      code: 'FUNCTION_IMMUTABLE_READS_SETTING',
      object: `function ${fn.schema}.${fn.name}(${fn.args})`,
      message: `${fn.schema}.${fn.name}(${fn.args}) is IMMUTABLE but reads current_setting(): PostgreSQL may evaluate it once when planning and reuse the result in a cached plan, or in an index, for another tenant`,
      fix: `ALTER FUNCTION ${signature} STABLE;`,
    })
  }

  // --- the pooler -------------------------------------------------------------------------------
  if (opts.scope === 'session') {
    if (opts.pgbouncer === 'transaction' || opts.pgbouncer === 'statement') {
      findings.push({
        severity: 'error',
        code: 'SESSION_SCOPE_TRANSACTION_POOLING',
        object: 'connection',
        message: `scope 'session' sets the tenant once per checkout and runs each query in autocommit, but a pooler in ${opts.pgbouncer} mode may send each statement to a different server connection, where another tenant's settings or role can be in force`,
        fix: `-- use scope: 'transaction' in createTenantPool (safe behind PgBouncer in transaction mode),\n-- or set pool_mode = session for this database in pgbouncer.ini`,
      })
    } else if (opts.pgbouncer === undefined && isProxied(client, login.client_port)) {
      findings.push({
        severity: 'warning',
        code: 'SESSION_SCOPE_BEHIND_PROXY',
        object: 'connection',
        message: `the server sees this connection coming from another port than the one this client uses, so a proxy (PgBouncer, a cloud pooler) or NAT sits in between. If it pools in transaction or statement mode, scope 'session' can run a query on a server connection set up for another tenant`,
        fix: `-- use scope: 'transaction' in createTenantPool, or make sure the pooler runs in session mode\n-- and pass pgbouncer: 'session' (CLI: --pgbouncer session) to record that`,
      })
    }
  }

  return findings
}

function names(list: readonly string[]): string {
  return [...new Set(list)].join(', ')
}

/** The standard tenant policy for a table found in the catalogs (trusted names and type). */
function standardPolicySql(qualified: string, table: TableRow, opts: Options): string {
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

const TEXT_TYPES = new Set(['text', 'varchar', 'bpchar', 'name'])

/** The cast for a column's type: none for text types, else `format_type()` (trusted SQL). */
function castFor(table: TableRow): string {
  return TEXT_TYPES.has(table.typname) ? '' : table.type_sql
}

async function accessOf(
  query: Query,
  tableOids: readonly string[],
  subjects: readonly string[],
): Promise<Map<string, AccessRow[]>> {
  const result = new Map<string, AccessRow[]>()
  if (tableOids.length === 0) return result
  const rows = await query<AccessRow>(
    `select c.oid::text as oid, s.oid::text as role,
            has_any_column_privilege(s.oid, c.oid, 'SELECT') as can_select,
            has_any_column_privilege(s.oid, c.oid, 'INSERT, UPDATE')
              or has_table_privilege(s.oid, c.oid, 'DELETE') as can_write,
            has_table_privilege(s.oid, c.oid, 'TRUNCATE') as can_truncate,
            pg_has_role(s.oid, c.relowner, 'USAGE') as owns
       from pg_class c cross join unnest($2::oid[]) as s(oid)
      where c.oid = any($1::oid[])`,
    [tableOids, subjects],
  )
  for (const row of rows) {
    const list = result.get(row.oid) ?? []
    list.push(row)
    result.set(row.oid, list)
  }
  return result
}

async function allowListFindings(
  query: Query,
  opts: Options,
  login: LoginRow,
  version: number,
  findings: Finding[],
): Promise<RoleRow[]> {
  if (opts.roles.length === 0) return []
  const exact = opts.roles.filter((r): r is string => typeof r === 'string')
  const hasPattern = opts.roles.some((r) => r instanceof RegExp)
  // PostgreSQL 16 split membership into INHERIT and SET options: SET decides whether SET ROLE works.
  const settable = version >= 160000 ? `pg_has_role($1::oid, r.oid, 'SET')` : `pg_has_role($1::oid, r.oid, 'MEMBER')`
  const candidates = await query<RoleRow>(
    `select r.oid::text as oid, r.rolname::text as name, r.rolsuper as superuser,
            r.rolbypassrls as bypassrls, ${settable} as settable,
            pg_has_role($1::oid, r.oid, 'USAGE') as inherits,
            exists (select 1 from pg_auth_members m where m.roleid = r.oid and m.member = $1::oid) as direct
       from pg_roles r
      where r.oid <> $1::oid and (r.rolname = any($2::text[]) or $3::boolean)
      order by r.rolname`,
    [login.oid, exact, hasPattern],
  )
  const loginName = quoteTrusted(login.name)
  const v16 = version >= 160000
  const grantSql = (role: string) =>
    v16
      ? `GRANT ${quoteTrusted(role)} TO ${loginName} WITH INHERIT FALSE, SET TRUE;`
      : `GRANT ${quoteTrusted(role)} TO ${loginName};`
  const matched = new Map<string, RoleRow>()
  for (const matcher of opts.roles) {
    const matches = candidates.filter((r) => r.name !== 'none' && isRoleAllowed(r.name, [matcher]))
    for (const r of matches) if (r.settable) matched.set(r.oid, r)
    if (typeof matcher === 'string') {
      const role = matches[0]
      if (role === undefined && matcher !== login.name) {
        findings.push({
          severity: 'warning',
          code: 'ALLOWED_ROLE_NOT_GRANTED',
          object: `role ${matcher}`,
          message: `${matcher} is on the roles allow-list but does not exist: switching to it fails (RoleSwitchError)`,
          fix: `CREATE ROLE ${quoteTrusted(matcher)} NOLOGIN NOSUPERUSER NOBYPASSRLS INHERIT;\n${grantSql(matcher)}`,
        })
      } else if (role !== undefined && !role.settable) {
        findings.push({
          severity: 'warning',
          code: 'ALLOWED_ROLE_NOT_GRANTED',
          object: `role ${matcher}`,
          message: `${matcher} is on the roles allow-list but ${login.name} cannot SET ROLE to it: switching to it fails (RoleSwitchError)`,
          fix: grantSql(matcher),
        })
      }
    } else {
      const missing = matches.filter((r) => !r.settable)
      if (matches.length === 0) {
        findings.push({
          severity: 'warning',
          code: 'ALLOWED_ROLE_NOT_GRANTED',
          object: `roles matching ${String(matcher)}`,
          message: `no role matches ${String(matcher)} on the roles allow-list: switching to such a role fails until one is created and granted to ${login.name}`,
          fix: `-- create tenant roles with createTenantRoleSql(), e.g.\n-- CREATE ROLE "<name>" NOLOGIN; GRANT "<group>" TO "<name>"; GRANT "<name>" TO ${loginName};`,
        })
      } else if (missing.length > 0) {
        const shown = missing.slice(0, 20)
        findings.push({
          severity: 'warning',
          code: 'ALLOWED_ROLE_NOT_GRANTED',
          object: `roles matching ${String(matcher)}`,
          message: `${missing.length} role(s) match ${String(matcher)} on the roles allow-list but ${login.name} cannot SET ROLE to them (${names(shown.map((r) => r.name))}${missing.length > shown.length ? ', ...' : ''}): switching to them fails`,
          fix: [
            ...shown.map((r) => grantSql(r.name)),
            ...(missing.length > shown.length ? [`-- and ${missing.length - shown.length} more`] : []),
            '-- or narrow the pattern if these roles are not tenants',
          ].join('\n'),
        })
      }
    }
  }
  const allowed = [...matched.values()].sort((a, b) => (a.name < b.name ? -1 : 1))

  for (const role of allowed) {
    if (role.superuser || role.bypassrls) {
      findings.push({
        severity: 'error',
        code: 'ALLOWED_ROLE_BYPASSES_RLS',
        object: `role ${role.name}`,
        message: `${role.name} is on the roles allow-list and ${login.name} can switch to it, but it ${role.superuser ? 'is a superuser' : 'has BYPASSRLS'}: a tenant running as it sees every tenant's rows`,
        fix: role.superuser
          ? `REVOKE ${quoteTrusted(role.name)} FROM ${loginName};\n-- and take it off the roles allow-list`
          : `ALTER ROLE ${quoteTrusted(role.name)} NOBYPASSRLS;`,
      })
    }
  }

  if (!login.superuser) {
    const inherited = allowed.filter((r) => r.inherits)
    if (inherited.length > 0) {
      const shown = inherited.slice(0, 20)
      const direct = shown.filter((r) => r.direct)
      findings.push({
        severity: 'warning',
        code: 'LOGIN_ROLE_INHERITS_TENANT_ROLES',
        object: `role ${login.name}`,
        message: `${login.name} inherits the privileges of ${inherited.length} allow-listed role(s) (${names(shown.map((r) => r.name))}${inherited.length > shown.length ? ', ...' : ''}): outside a tenant scope it holds every tenant's table privileges at once. It only needs to be able to SET ROLE to them`,
        fix: v16
          ? [
              `ALTER ROLE ${loginName} NOINHERIT; -- the default for grants made from now on`,
              ...direct.map((r) => `GRANT ${quoteTrusted(r.name)} TO ${loginName} WITH INHERIT FALSE;`),
              ...(inherited.length > direct.length
                ? ['-- some are inherited through other roles, or more than shown: re-grant those WITH INHERIT FALSE too']
                : []),
            ].join('\n')
          : `ALTER ROLE ${loginName} NOINHERIT;`,
      })
    }
  }
  return allowed
}

async function policyFindings(
  query: Query,
  opts: Options,
  tables: readonly TableRow[],
  findings: Finding[],
): Promise<void> {
  // Every policy in the schemas checked: the setting checks apply to any table, the WITH CHECK
  // check to tenant tables.
  const policies = await query<PolicyRow & { schema: string; table: string }>(
    `select p.polrelid::text as table_oid, p.polname::text as name, p.polcmd::text as cmd,
            pg_get_expr(p.polqual, p.polrelid) as qual,
            pg_get_expr(p.polwithcheck, p.polrelid) as with_check,
            n.nspname::text as schema, c.relname::text as table
       from pg_policy p
       join pg_class c on c.oid = p.polrelid
       join pg_namespace n on n.oid = c.relnamespace
      where ${schemaFilter('n', '$1')}
      order by n.nspname, c.relname, p.polname`,
    [opts.schemas],
  )
  const tenantTables = new Set(tables.map((t) => t.oid))
  const COMMANDS: Record<string, string> = { r: 'SELECT', a: 'INSERT', w: 'UPDATE', d: 'DELETE', '*': 'ALL' }
  for (const policy of policies) {
    const label = `${policy.schema}.${policy.table}`
    const qualified = `${quoteTrusted(policy.schema)}.${quoteTrusted(policy.table)}`
    const object = `policy ${policy.name} on ${label}`
    const alter = `ALTER POLICY ${quoteTrusted(policy.name)} ON ${qualified}`
    const command = COMMANDS[policy.cmd] ?? policy.cmd
    if (tenantTables.has(policy.table_oid) && policy.with_check === null && (policy.cmd === 'a' || policy.cmd === 'w' || policy.cmd === '*')) {
      const insertOnly = policy.cmd === 'a'
      findings.push({
        severity: 'error',
        code: 'POLICY_NO_WITH_CHECK',
        object,
        message: insertOnly
          ? `the INSERT policy ${policy.name} on ${label} has no WITH CHECK: it admits no row at all, so inserts depend on whatever other policies allow. State the tenant rule explicitly`
          : `the ${command} policy ${policy.name} on ${label} has no WITH CHECK: PostgreSQL then checks written rows against USING, which is only a tenant boundary while USING is exactly the tenant rule (an OR in USING lets a tenant write rows into another tenant). State the write rule explicitly`,
        fix:
          insertOnly || policy.qual === null
            ? `${alter} WITH CHECK (${tenantTables.has(policy.table_oid) ? standardCondition(tables.find((t) => t.oid === policy.table_oid)!, opts.setting) : 'false'});`
            : `${alter} WITH CHECK (${policy.qual});`,
      })
    }
    const calls = [
      ...(policy.qual === null ? [] : findSettingCalls(policy.qual)),
      ...(policy.with_check === null ? [] : findSettingCalls(policy.with_check)),
    ]
    const noNullif = calls.filter((c) => !c.nullif)
    const noInitplan = calls.filter((c) => !c.initplan)
    if (noNullif.length === 0 && noInitplan.length === 0) continue
    const rewrite = [
      policy.qual === null ? undefined : `USING (${wrapSettingCalls(policy.qual)})`,
      policy.with_check === null ? undefined : `WITH CHECK (${wrapSettingCalls(policy.with_check)})`,
    ].filter((part) => part !== undefined)
    const fix = `${alter}\n  ${rewrite.join('\n  ')};`
    if (noNullif.length > 0) {
      findings.push({
        severity: 'warning',
        code: 'POLICY_SETTING_NO_NULLIF',
        object,
        message: `policy ${policy.name} on ${label} compares with ${settingNames(noNullif)} without nullif(..., ''): after a session has used a custom setting it reads '' instead of NULL, so an unset tenant matches rows whose tenant column is '' (and casts fail) instead of matching nothing`,
        fix,
      })
    }
    if (noInitplan.length > 0) {
      findings.push({
        severity: 'warning',
        code: 'POLICY_SETTING_NO_INITPLAN',
        object,
        message: `policy ${policy.name} on ${label} calls ${settingNames(noInitplan)} outside a (SELECT ...) wrapper: PostgreSQL may evaluate it for every row instead of once per statement (an InitPlan)`,
        fix,
      })
    }
  }
}

function standardCondition(table: TableRow, setting: string): string {
  return tenantConditionSql(quoteTrusted(table.columns[0]!), setting, castFor(table))
}

function settingNames(calls: readonly SettingCall[]): string {
  return names(calls.map((c) => `current_setting(${c.setting === undefined ? '...' : quoteLiteral(c.setting)})`))
}

async function viewFindings(
  query: Query,
  tableOids: readonly string[],
  tables: readonly TableRow[],
  subjects: readonly string[],
  subjectName: ReadonlyMap<string, string>,
  version: number,
  findings: Finding[],
): Promise<void> {
  if (tableOids.length === 0) return
  // Views (and materialized views) that read a tenant table, directly or through other views.
  const views = await query<ViewRow & { readers: string[] | null }>(
    `with recursive deps(view_oid, base_oid) as (
       select distinct r.ev_class, d.refobjid
         from pg_depend d join pg_rewrite r on r.oid = d.objid
        where d.classid = 'pg_rewrite'::regclass and d.refclassid = 'pg_class'::regclass
          and d.refobjid = any($1::oid[]) and r.ev_class <> d.refobjid
       union
       select r.ev_class, deps.base_oid
         from deps
         join pg_depend d on d.refobjid = deps.view_oid and d.classid = 'pg_rewrite'::regclass
                         and d.refclassid = 'pg_class'::regclass
         join pg_rewrite r on r.oid = d.objid
        where r.ev_class <> deps.view_oid
     )
     select v.oid::text as oid, n.nspname::text as schema, v.relname::text as name,
            v.relkind::text as kind, v.reloptions::text[] as options,
            array_agg(distinct deps.base_oid::text) as bases,
            (select array_agg(s.oid::text) from unnest($2::oid[]) as s(oid)
              where has_any_column_privilege(s.oid, v.oid, 'SELECT')) as readers
       from deps
       join pg_class v on v.oid = deps.view_oid
       join pg_namespace n on n.oid = v.relnamespace
      where v.relkind in ('v', 'm')
      group by v.oid, n.nspname
      order by n.nspname, v.relname`,
    [tableOids, subjects],
  )
  const tableLabel = new Map(tables.map((t) => [t.oid, `${t.schema}.${t.name}`]))
  for (const view of views) {
    const readers = (view.readers ?? []).map((oid) => subjectName.get(oid)!).filter(Boolean)
    if (readers.length === 0) continue
    const label = `${view.schema}.${view.name}`
    const qualified = `${quoteTrusted(view.schema)}.${quoteTrusted(view.name)}`
    const bases = names(view.bases.map((oid) => tableLabel.get(oid) ?? oid))
    if (view.kind === 'm') {
      findings.push({
        severity: 'error',
        code: 'MATVIEW_OVER_TENANT_TABLE',
        object: `materialized view ${label}`,
        message: `materialized view ${label} stores rows of ${bases} as its owner saw them when refreshed, and materialized views have no row-level security: ${names(readers)} can read every tenant's rows from it`,
        fix: `REVOKE ALL ON ${qualified} FROM ${readers.map(quoteTrusted).join(', ')}, PUBLIC;\n-- or replace it with a view WITH (security_invoker = true), or a table with its own policy`,
      })
      continue
    }
    const invoker = (view.options ?? []).some((o) =>
      /^security_invoker=(true|on|yes|1|t|y)$/i.test(o),
    )
    if (invoker) continue
    findings.push({
      severity: version >= 150000 ? 'error' : 'warning',
      code: 'VIEW_NOT_SECURITY_INVOKER',
      object: `view ${label}`,
      message: `view ${label} reads ${bases} with the rights of its owner, not of the querying role: if the owner bypasses RLS (owner without FORCE, superuser, BYPASSRLS) or policies use current_user, ${names(readers)} can see other tenants' rows through it`,
      fix:
        version >= 150000
          ? `ALTER VIEW ${qualified} SET (security_invoker = true);`
          : `-- PostgreSQL 14 has no security_invoker: make sure the view's owner is subject to RLS\n-- (not superuser, no BYPASSRLS, FORCE ROW LEVEL SECURITY on ${bases}) and that policies do not use current_user`,
    })
  }
}

/** Whether the server sees another client port than our socket's: a proxy or NAT in between. */
function isProxied(client: unknown, serverSeenPort: number | null): boolean {
  const localPort = localPortOf(client)
  if (localPort === undefined) return false // Unix socket or unknown driver: cannot tell
  return serverSeenPort === null || Number(serverSeenPort) !== localPort
}

const SEVERITY_ORDER = { error: 0, warning: 1 } as const

function sortFindings(findings: Finding[]): Finding[] {
  return findings
    .map((f, i) => ({ f, i }))
    .sort(
      (a, b) =>
        SEVERITY_ORDER[a.f.severity] - SEVERITY_ORDER[b.f.severity] || a.i - b.i,
    )
    .map(({ f }) => f)
}

// ---------------------------------------------------------------------------------------------
// Reading deparsed policy expressions
// ---------------------------------------------------------------------------------------------

/** One `current_setting(...)` call in an expression, and what wraps it. */
export interface SettingCall {
  /** The setting name when the first argument is a literal. */
  readonly setting: string | undefined
  /** Inside a `nullif(...)` call. */
  readonly nullif: boolean
  /** Inside a `(SELECT ...)` subquery, which PostgreSQL evaluates once as an InitPlan. */
  readonly initplan: boolean
  /** Offsets of the call (from the function name to its closing parenthesis, exclusive). */
  readonly start: number
  readonly end: number
  /** Offsets of the innermost enclosing `nullif(...)` call, if any. */
  readonly nullifStart: number | undefined
  readonly nullifEnd: number | undefined
}

interface Frame {
  fn: string
  fnStart: number
  select: boolean
  end: number
}

/**
 * Finds every `current_setting(...)` call in a SQL expression as `pg_get_expr` deparses it, and
 * whether it is wrapped in `nullif(...)` and in a `(SELECT ...)` subquery. String literals and
 * quoted identifiers are skipped. Internal (exported for tests).
 */
export function findSettingCalls(expr: string): SettingCall[] {
  const stack: Frame[] = []
  const pending: Array<{ call: Omit<SettingCall, 'end' | 'nullifEnd'>; frame: Frame; nullifFrame: Frame | undefined }> = []
  let word = ''
  let wordStart = -1
  let awaitingFirst: Frame | undefined
  let i = 0
  while (i < expr.length) {
    const ch = expr[i]!
    if (/\s/.test(ch)) {
      i++
      continue
    }
    if (ch === "'") {
      const escapes = word === 'e' && wordStart === i - 1
      i = skipString(expr, i, escapes)
      word = ''
      awaitingFirst = undefined
      continue
    }
    if (ch === '"') {
      const start = i
      let name = ''
      i++
      while (i < expr.length) {
        if (expr[i] === '"') {
          if (expr[i + 1] === '"') {
            name += '"'
            i += 2
            continue
          }
          i++
          break
        }
        name += expr[i]
        i++
      }
      word = name
      wordStart = start
      awaitingFirst = undefined
      continue
    }
    if (/[A-Za-z_]/.test(ch)) {
      const start = i
      while (i < expr.length && /[A-Za-z0-9_$.]/.test(expr[i]!)) i++
      const token = expr.slice(start, i)
      const parts = token.split('.')
      word = parts[parts.length - 1]!.toLowerCase()
      wordStart = start
      if (awaitingFirst !== undefined && token.toLowerCase() === 'select') awaitingFirst.select = true
      awaitingFirst = undefined
      continue
    }
    if (ch === '(') {
      const frame: Frame = { fn: word, fnStart: word === '' ? i : wordStart, select: false, end: -1 }
      if (word === 'current_setting') {
        const literal = /^\s*'((?:[^']|'')*)'/.exec(expr.slice(i + 1))
        const nullifFrame = [...stack].reverse().find((f) => f.fn === 'nullif')
        pending.push({
          call: {
            setting: literal ? literal[1]!.replaceAll("''", "'") : undefined,
            nullif: nullifFrame !== undefined,
            initplan: stack.some((f) => f.select),
            start: wordStart,
            nullifStart: nullifFrame?.fnStart,
          },
          frame,
          nullifFrame,
        })
      }
      stack.push(frame)
      awaitingFirst = frame
      word = ''
      i++
      continue
    }
    if (ch === ')') {
      const frame = stack.pop()
      if (frame !== undefined) frame.end = i + 1
      word = ''
      awaitingFirst = undefined
      i++
      continue
    }
    word = ''
    awaitingFirst = undefined
    i++
  }
  return pending.map(({ call, frame, nullifFrame }) => ({
    ...call,
    end: frame.end === -1 ? expr.length : frame.end,
    nullifEnd: nullifFrame === undefined ? undefined : nullifFrame.end === -1 ? expr.length : nullifFrame.end,
  }))
}

function skipString(expr: string, start: number, backslashEscapes: boolean): number {
  let i = start + 1
  while (i < expr.length) {
    const ch = expr[i]
    if (backslashEscapes && ch === '\\') {
      i += 2
      continue
    }
    if (ch === "'") {
      if (expr[i + 1] === "'") {
        i += 2
        continue
      }
      return i + 1
    }
    i++
  }
  return i
}

/**
 * Rewrites an expression so that every `current_setting(...)` call is read as
 * `(SELECT nullif(current_setting(...), ''))`: wrapping what is missing, keeping the rest of the
 * expression as PostgreSQL deparsed it. Internal (exported for tests).
 */
export function wrapSettingCalls(expr: string): string {
  const edits: Array<{ start: number; end: number; text: string }> = []
  for (const call of findSettingCalls(expr)) {
    if (call.nullif && call.initplan) continue
    if (!call.nullif) {
      const inner = `nullif(${expr.slice(call.start, call.end)}, '')`
      edits.push({ start: call.start, end: call.end, text: call.initplan ? inner : `(SELECT ${inner})` })
    } else {
      const start = call.nullifStart!
      const end = call.nullifEnd!
      edits.push({ start, end, text: `(SELECT ${expr.slice(start, end)})` })
    }
  }
  // Apply from the end; skip edits that overlap one already applied.
  edits.sort((a, b) => b.start - a.start)
  let out = expr
  let limit = Infinity
  for (const edit of edits) {
    if (edit.end > limit) continue
    out = out.slice(0, edit.start) + edit.text + out.slice(edit.end)
    limit = edit.start
  }
  return out
}
