/**
 * What a rule is. Each file under `checks/` holds one rule: the finding code it yields, what it
 * reads, and the check, which turns one subject (the login role, a tenant table, a policy, ...)
 * into at most a few findings with their fix. Rules do not query: the runner reads the catalogs
 * once (catalog.ts) and hands every rule the subjects of its kind, in a fixed order.
 */
import type { AccessRow, AllowList, FunctionRow, LoginRow, PolicyRow, TableRow, ViewRow } from './catalog.js'
import type { DoctorOptions } from './options.js'
import type { Finding, FindingCode } from './types.js'

/** What every check may read besides its subject. */
export interface Context {
  readonly opts: DoctorOptions
  /** The login role checked. */
  readonly login: LoginRow
  /** `server_version_num`. */
  readonly version: number
  /** The login role's name, quoted for SQL. */
  readonly loginName: string
}

/** A tenant table and who of the subject roles (the login role, allowed roles) can reach it. */
export interface TenantTable {
  readonly row: TableRow
  /** `schema.name`, for messages. */
  readonly label: string
  /** `"schema"."name"`, for fixes. */
  readonly qualified: string
  /** Names of the subject roles that can read or write it. */
  readonly reachers: readonly string[]
  /** Names of the subject roles that can read it. */
  readonly readers: readonly string[]
}

/** One subject role's rights on a tenant table (never a role that bypasses RLS). */
export interface TableAccess {
  readonly table: TenantTable
  readonly row: AccessRow
  /** The role's name. */
  readonly who: string
}

/** A policy in the schemas checked, on a tenant table or not. */
export interface PolicySubject {
  readonly row: PolicyRow
  /** `schema.table`, for messages. */
  readonly label: string
  /** `policy <name> on <schema.table>`. */
  readonly object: string
  /** `ALTER POLICY "name" ON "schema"."table"`, for fixes. */
  readonly alter: string
  /** `SELECT`, `INSERT`, `UPDATE`, `DELETE` or `ALL`. */
  readonly command: string
  /** The tenant table it is on, if it is on one. */
  readonly tenantTable: TableRow | undefined
}

/** A view or materialized view over tenant tables that some subject role can read. */
export interface ViewSubject {
  readonly row: ViewRow
  /** `schema.name`, for messages. */
  readonly label: string
  /** `"schema"."name"`, for fixes. */
  readonly qualified: string
  /** The tenant tables it reads, as a list for messages. */
  readonly bases: string
  /** Names of the subject roles that can read it. */
  readonly readers: readonly string[]
}

/**
 * What the options selected: how many tenant tables, and the schemas named that do not exist.
 *
 * @example
 * ```ts
 * const selection: Selection = { tables: 0, missingSchemas: ['pubilc'] }
 * ```
 */
export interface Selection {
  /** How many tenant tables (with a tenant column, in the schemas checked) were found. */
  readonly tables: number
  /** Schemas named in `schemas` that do not exist. */
  readonly missingSchemas: readonly string[]
}

/** The session the doctor ran on. */
export interface Connection {
  /** The pg client (or queryable) the catalogs were read through. */
  readonly client: unknown
}

/** The kinds of subject, and what a check of each kind is given. */
export interface Subjects {
  login: LoginRow
  allowList: AllowList
  selection: Selection
  table: TenantTable
  access: TableAccess
  policy: PolicySubject
  view: ViewSubject
  function: FunctionRow
  connection: Connection
}

export type SubjectKind = keyof Subjects

/** A finding of one code. */
export type FindingOf<C extends FindingCode> = Finding & { readonly code: C }

/** One rule: one finding code, checked on every subject of one kind. */
export interface Rule<K extends SubjectKind = SubjectKind, C extends FindingCode = FindingCode> {
  readonly code: C
  readonly subject: K
  /** What it reads, for readers of the code: the catalog read (catalog.ts) and the columns. */
  readonly reads: string
  check(subject: Subjects[K], ctx: Context): FindingOf<C> | readonly FindingOf<C>[] | undefined
}
