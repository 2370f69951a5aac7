/**
 * Runs the checks: reads the catalogs (catalog.ts) in a fixed order, builds the subjects of each
 * kind, hands each to the rules of its kind (checks/index.ts) and returns the findings, errors
 * first, otherwise in the order they were found.
 */
import { quoteTrusted } from '../sql/ident.js'
import {
  readAccess,
  readAllowList,
  readImmutableSettingReaders,
  readLogin,
  readMissingSchemas,
  readPolicies,
  readTenantTables,
  readViews,
  type Query,
} from './catalog.js'
import { RULES } from './checks/index.js'
import { names } from './fixes.js'
import type { DoctorOptions } from './options.js'
import type { Context, PolicySubject, Rule, SubjectKind, Subjects, TenantTable, ViewSubject } from './rule.js'
import type { Finding } from './types.js'

const COMMANDS: Record<string, string> = { r: 'SELECT', a: 'INSERT', w: 'UPDATE', d: 'DELETE', '*': 'ALL' }

/** Every finding on the database behind `query`, errors first. */
export async function diagnose(query: Query, client: unknown, opts: DoctorOptions): Promise<Finding[]> {
  const findings: Finding[] = []
  const run = <K extends SubjectKind>(kind: K, subject: Subjects[K]) => {
    for (const rule of RULES[kind] as readonly Rule<K>[]) {
      const found = rule.check(subject, ctx)
      if (found === undefined) continue
      if (Array.isArray(found)) findings.push(...(found as readonly Finding[]))
      else findings.push(found as Finding)
    }
  }

  // The login role, then the allow-list.
  const login = await readLogin(query, opts)
  const version = Number(login.version)
  const ctx: Context = { opts, login, version, loginName: quoteTrusted(login.name) }
  run('login', login)
  const allowList = await readAllowList(query, opts, login, version)
  run('allowList', allowList)

  // The roles whose privileges decide what the application can reach: the login role and every
  // allow-listed role it can switch to. Roles that bypass RLS are reported above.
  const subjects = [login.oid, ...allowList.allowed.map((r) => r.oid)]
  const subjectName = new Map<string, string>([
    [login.oid, login.name],
    ...allowList.allowed.map((r) => [r.oid, r.name] as [string, string]),
  ])
  const bypasses = new Set<string>([
    ...(login.superuser || login.bypassrls ? [login.oid] : []),
    ...allowList.allowed.filter((r) => r.superuser || r.bypassrls).map((r) => r.oid),
  ])

  // Tenant tables, and each subject role's rights on them.
  const tables = await readTenantTables(query, opts)
  // A selection that matched nothing is reported, not passed: an empty result must mean checked.
  run('selection', { tables: tables.length, missingSchemas: await readMissingSchemas(query, opts) })
  const tableOids = tables.map((t) => t.oid)
  const access = await readAccess(query, tableOids, subjects)
  for (const row of tables) {
    const rows = access.get(row.oid) ?? []
    const table: TenantTable = {
      row,
      label: `${row.schema}.${row.name}`,
      qualified: `${quoteTrusted(row.schema)}.${quoteTrusted(row.name)}`,
      reachers: rows.filter((r) => r.can_select || r.can_write).map((r) => subjectName.get(r.role)!),
      readers: rows.filter((r) => r.can_select).map((r) => subjectName.get(r.role)!),
    }
    run('table', table)
    for (const accessRow of rows) {
      if (bypasses.has(accessRow.role)) continue // RLS never applies to it: reported above
      run('access', { table, row: accessRow, who: subjectName.get(accessRow.role)! })
    }
  }

  // Every policy in the schemas checked: the setting checks apply to any table, the WITH CHECK
  // check to tenant tables.
  const tenantTables = new Map(tables.map((t) => [t.oid, t]))
  for (const row of await readPolicies(query, opts)) {
    const label = `${row.schema}.${row.table}`
    const policy: PolicySubject = {
      row,
      label,
      object: `policy ${row.name} on ${label}`,
      alter: `ALTER POLICY ${quoteTrusted(row.name)} ON ${quoteTrusted(row.schema)}.${quoteTrusted(row.table)}`,
      command: COMMANDS[row.cmd] ?? row.cmd,
      tenantTable: tenantTables.get(row.table_oid),
    }
    run('policy', policy)
  }

  // Views and materialized views over tenant tables that a subject role can read.
  const tableLabel = new Map(tables.map((t) => [t.oid, `${t.schema}.${t.name}`]))
  for (const row of await readViews(query, tableOids, subjects)) {
    const readers = (row.readers ?? []).map((oid) => subjectName.get(oid)!).filter(Boolean)
    if (readers.length === 0) continue
    const view: ViewSubject = {
      row,
      label: `${row.schema}.${row.name}`,
      qualified: `${quoteTrusted(row.schema)}.${quoteTrusted(row.name)}`,
      bases: names(row.bases.map((oid) => tableLabel.get(oid) ?? oid)),
      readers,
    }
    run('view', view)
  }

  // IMMUTABLE functions that read settings.
  for (const fn of await readImmutableSettingReaders(query, opts, version)) run('function', fn)

  // The pooler.
  run('connection', { client })

  return sortFindings(findings)
}

const SEVERITY_ORDER = { error: 0, warning: 1 } as const

function sortFindings(findings: Finding[]): Finding[] {
  return findings
    .map((f, i) => ({ f, i }))
    .sort((a, b) => SEVERITY_ORDER[a.f.severity] - SEVERITY_ORDER[b.f.severity] || a.i - b.i)
    .map(({ f }) => f)
}
