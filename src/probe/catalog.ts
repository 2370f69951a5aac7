/**
 * The relations the probe checks, read from the catalogs (readable by any role): tables,
 * partitioned tables, views and materialized views of the chosen schemas, their primary key, the column an UPDATE may set to
 * itself, and what explains a leak (RLS flags, owner, whether the login role bypasses RLS).
 */
import { quoteTrusted } from '../sql/ident.js'

/** One query on a session: its rows. */
export type Query = <R = Record<string, any>>(text: string, values?: readonly unknown[]) => Promise<R[]>

/** A table to probe. */
export interface ProbeTable {
  readonly oid: string
  readonly schema: string
  readonly name: string
  /** `schema.name`, as reported. */
  readonly label: string
  /** `"schema"."name"`, for SQL. */
  readonly sql: string
  /** `table` (or partitioned table), `view` or `materialized view`: views are read, never written. */
  readonly kind: 'table' | 'view' | 'materialized view'
  /** A view with `security_invoker = true` (PostgreSQL 15+): it reads as the caller, not its owner. */
  readonly securityInvoker: boolean
  /** Primary key columns in key order; empty without one. */
  readonly primaryKey: readonly string[]
  /** A column `UPDATE ... SET c = c` may name (not generated, not GENERATED ALWAYS AS IDENTITY). */
  readonly updatable: string | null
  readonly rls: boolean
  readonly force: boolean
  readonly policies: number
  /** The login role is, or inherits, the owner. */
  readonly loginOwns: boolean
  readonly owner: string
}

/** The login role, as RLS sees it. */
export interface LoginInfo {
  readonly name: string
  readonly superuser: boolean
  readonly bypassrls: boolean
}

/** The login role (`session_user`): RLS does not apply to a superuser or a BYPASSRLS role. */
export async function readLogin(query: Query): Promise<LoginInfo> {
  const [row] = await query<LoginInfo>(
    `select rolname::text as name, rolsuper as superuser, rolbypassrls as bypassrls
       from pg_roles where rolname = session_user`,
  )
  return row!
}

/** The tables of `schemas` (null: every schema but pg_* and information_schema), by name. */
export async function readTables(query: Query, schemas: readonly string[] | null): Promise<ProbeTable[]> {
  const rows = await query<{
    oid: string
    schema: string
    name: string
    kind: string
    security_invoker: boolean
    primary_key: string[] | null
    updatable: string | null
    rls: boolean
    force: boolean
    policies: number
    login_owns: boolean
    owner: string
  }>(
    `select c.oid::text as oid, n.nspname::text as schema, c.relname::text as name, c.relkind::text as kind,
       coalesce(c.reloptions::text[] && array['security_invoker=true', 'security_invoker=on', 'security_invoker=1',
                                               'security_invoker=yes'], false) as security_invoker,
       (select array_agg(a.attname::text order by k.ord)
          from pg_index i
          cross join unnest(i.indkey) with ordinality k(attnum, ord)
          join pg_attribute a on a.attrelid = i.indrelid and a.attnum = k.attnum
         where i.indrelid = c.oid and i.indisprimary) as primary_key,
       (select a.attname::text from pg_attribute a
         where a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped
           and a.attgenerated = '' and a.attidentity <> 'a'
         order by (a.attnum = any(coalesce((select i.indkey::int2[] from pg_index i
                                              where i.indrelid = c.oid and i.indisprimary), '{}'))) desc,
                  a.attnum
         limit 1) as updatable,
       c.relrowsecurity as rls, c.relforcerowsecurity as force,
       (select count(*)::int from pg_policy p where p.polrelid = c.oid) as policies,
       pg_has_role(session_user, c.relowner, 'USAGE') as login_owns,
       pg_get_userbyid(c.relowner)::text as owner
     from pg_class c
     join pg_namespace n on n.oid = c.relnamespace
     where c.relkind in ('r', 'p', 'v', 'm')
       and case when $1::text[] is null
             then n.nspname !~ '^pg_' and n.nspname <> 'information_schema'
             else n.nspname = any($1::text[]) end
     order by n.nspname, c.relname`,
    [schemas],
  )
  return rows.map((r) => ({
    oid: r.oid,
    schema: r.schema,
    name: r.name,
    label: `${r.schema}.${r.name}`,
    sql: `${quoteTrusted(r.schema)}.${quoteTrusted(r.name)}`,
    kind: r.kind === 'v' ? 'view' : r.kind === 'm' ? 'materialized view' : 'table',
    securityInvoker: r.security_invoker,
    primaryKey: r.kind === 'v' || r.kind === 'm' ? [] : (r.primary_key ?? []),
    updatable: r.kind === 'v' || r.kind === 'm' ? null : r.updatable,
    rls: r.rls,
    force: r.force,
    policies: r.policies,
    loginOwns: r.login_owns,
    owner: r.owner,
  }))
}

/** What the role a session runs as (`current_user`) may do on each table. */
export interface Privileges {
  readonly select: boolean
  readonly update: boolean
  readonly delete: boolean
}

/** The current role's privileges on `tables` (schema USAGE included), by oid. */
export async function readPrivileges(query: Query, tables: readonly ProbeTable[]): Promise<Map<string, Privileges>> {
  const rows = await query<{ oid: string; usage: boolean; s: boolean; u: boolean; d: boolean }>(
    `select c.oid::text as oid, has_schema_privilege(c.relnamespace, 'USAGE') as usage,
       has_table_privilege(c.oid, 'SELECT') as s, has_table_privilege(c.oid, 'UPDATE') as u,
       has_table_privilege(c.oid, 'DELETE') as d
     from pg_class c where c.oid = any($1::oid[])`,
    [tables.map((t) => t.oid)],
  )
  return new Map(rows.map((r) => [r.oid, { select: r.usage && r.s, update: r.usage && r.u, delete: r.usage && r.d }]))
}
