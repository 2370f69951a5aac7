/**
 * Every catalog read of the doctor, and the rows they return. Only SELECTs on catalogs readable
 * by any role (pg_class, pg_policy, pg_roles, pg_auth_members, pg_proc, pg_depend, pg_rewrite)
 * and privilege functions, so the doctor works as the unprivileged login role itself. SQL is kept
 * compatible with PostgreSQL 14 to 18; version-specific reads take `server_version_num`.
 */
import { InvalidOptionsError } from '../errors.js'
import { isRoleAllowed, type RoleMatcher } from '../tenant.js'
import type { DoctorOptions } from './options.js'

/** One query on the doctor's session: its rows. */
export type Query = <R = Record<string, any>>(text: string, values?: readonly unknown[]) => Promise<R[]>

/** The role checked (the login role), and the server version. */
export interface LoginRow {
  version: number
  oid: string
  name: string
  superuser: boolean
  bypassrls: boolean
  inherit: boolean
  /** The client port the server sees (`inet_client_port()`), null over a Unix socket. */
  client_port: number | null
}

/** A role that may be on the allow-list, as the login role relates to it. */
export interface RoleRow {
  oid: string
  name: string
  superuser: boolean
  bypassrls: boolean
  /** The login role can `SET ROLE` to it. */
  settable: boolean
  /** The login role holds its privileges (membership with INHERIT). */
  inherits: boolean
  /** Granted to the login role directly, not through another role. */
  direct: boolean
}

/** A tenant table: a table or partitioned table with one of the tenant columns. */
export interface TableRow {
  oid: string
  schema: string
  name: string
  rls: boolean
  force: boolean
  owner: string
  /** The tenant columns it has, in column order. */
  columns: string[]
  /** The type name of the first tenant column, and its `format_type()` (trusted SQL). */
  typname: string
  type_sql: string
  /** The type name and `format_type()` of each tenant column, in the order of `columns`. */
  typnames: string[]
  type_sqls: string[]
  /** How many policies it has. */
  policies: number
}

/** What one subject role (the login role or an allowed role) may do on one tenant table. */
export interface AccessRow {
  oid: string
  role: string
  can_select: boolean
  can_write: boolean
  can_truncate: boolean
  /** The role is, or inherits, the table's owner. */
  owns: boolean
}

export interface PolicyRow {
  table_oid: string
  name: string
  /** `pg_policy.polcmd`: `r` SELECT, `a` INSERT, `w` UPDATE, `d` DELETE, `*` ALL. */
  cmd: string
  qual: string | null
  with_check: string | null
  schema: string
  table: string
}

/** A view or materialized view that reads a tenant table, directly or through other views. */
export interface ViewRow {
  oid: string
  schema: string
  name: string
  /** `v` view, `m` materialized view. */
  kind: string
  options: string[] | null
  /** The tenant tables it reads (oids). */
  bases: string[]
  /** The subject roles that can read it (oids), or null. */
  readers: string[] | null
}

export interface FunctionRow {
  schema: string
  name: string
  args: string
}

/** The allow-list resolved against the database. */
export interface AllowList {
  /** Every role an allow-list entry could name (not the login role itself). */
  readonly candidates: readonly RoleRow[]
  /** The roles the allow-list admits and the login role can switch to, by name. */
  readonly allowed: readonly RoleRow[]
}

/** `true` when `n` (a pg_namespace alias) is one of the schemas to check; `$n` is text[] or null. */
function schemaFilter(alias: string, param: string): string {
  return `(case when ${param}::text[] is null
    then ${alias}.nspname !~ '^pg_' and ${alias}.nspname <> 'information_schema'
    else ${alias}.nspname = any(${param}::text[]) end)`
}

/**
 * The login role (`loginRole`, else `session_user`) and the server version.
 * @throws InvalidOptionsError when `loginRole` does not exist
 */
export async function readLogin(query: Query, opts: DoctorOptions): Promise<LoginRow> {
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
  return login
}

/** The candidate roles one allow-list entry names (never the role `none`). */
export function matchesOf(candidates: readonly RoleRow[], matcher: RoleMatcher): RoleRow[] {
  return candidates.filter((r) => r.name !== 'none' && isRoleAllowed(r.name, [matcher]))
}

/** The allow-list against pg_roles and pg_auth_members; no query when it is empty. */
export async function readAllowList(
  query: Query,
  opts: DoctorOptions,
  login: LoginRow,
  version: number,
): Promise<AllowList> {
  if (opts.roles.length === 0) return { candidates: [], allowed: [] }
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
  const matched = new Map<string, RoleRow>()
  for (const matcher of opts.roles) {
    for (const r of matchesOf(candidates, matcher)) if (r.settable) matched.set(r.oid, r)
  }
  const allowed = [...matched.values()].sort((a, b) => (a.name < b.name ? -1 : 1))
  return { candidates, allowed }
}

/** Tables and partitioned tables (in the schemas checked) that have one of the tenant columns. */
export async function readTenantTables(query: Query, opts: DoctorOptions): Promise<TableRow[]> {
  return query<TableRow>(
    `select c.oid::text as oid, n.nspname::text as schema, c.relname::text as name,
            c.relrowsecurity as rls, c.relforcerowsecurity as force,
            pg_get_userbyid(c.relowner)::text as owner,
            array_agg(a.attname::text order by a.attnum) as columns,
            (array_agg(t.typname::text order by a.attnum))[1] as typname,
            (array_agg(format_type(a.atttypid, null) order by a.attnum))[1] as type_sql,
            array_agg(t.typname::text order by a.attnum) as typnames,
            array_agg(format_type(a.atttypid, null) order by a.attnum) as type_sqls,
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
}

/**
 * The schemas named in `schemas` that do not exist (pg_namespace); none when no list was given.
 *
 * @example
 * ```ts
 * await readMissingSchemas(query, { ...opts, schemas: ['public', 'pubilc'] }) // ['pubilc']
 * ```
 */
export async function readMissingSchemas(query: Query, opts: DoctorOptions): Promise<string[]> {
  if (opts.schemas === null || opts.schemas.length === 0) return []
  const rows = await query<{ name: string }>(
    `select s.name from unnest($1::text[]) with ordinality as s(name, i)
      where not exists (select 1 from pg_namespace n where n.nspname = s.name)
      order by s.i`,
    [opts.schemas],
  )
  return rows.map((r) => r.name)
}

/** What each subject role may do on each table, by table oid; no query when there is no table. */
export async function readAccess(
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

/** Every policy in the schemas checked, on any table, with its deparsed expressions. */
export async function readPolicies(query: Query, opts: DoctorOptions): Promise<PolicyRow[]> {
  return query<PolicyRow>(
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
}

/**
 * Views and materialized views (in any schema) that read a tenant table, directly or through
 * other views, with the subject roles that can read them; no query when there is no table.
 */
export async function readViews(
  query: Query,
  tableOids: readonly string[],
  subjects: readonly string[],
): Promise<ViewRow[]> {
  if (tableOids.length === 0) return []
  return query<ViewRow>(
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
}

/**
 * IMMUTABLE functions (in the schemas checked, not from an extension, not internal or C) whose
 * source, or SQL-standard body (PostgreSQL 14+), mentions `current_setting`.
 */
export async function readImmutableSettingReaders(
  query: Query,
  opts: DoctorOptions,
  version: number,
): Promise<FunctionRow[]> {
  return query<FunctionRow>(
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
}
