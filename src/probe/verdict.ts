/**
 * The verdict on one table, from what the sessions saw and could change: its leaks, and a reason
 * and a fix taken from the catalog facts that explain them (RLS off, an owner without FORCE, a
 * login role that bypasses RLS, or else the policies themselves).
 */
import type { LoginInfo, ProbeTable } from './catalog.js'
import { describeIdentity, identityOf } from './identity.js'
import type { Sight } from './read.js'
import type { ProbeEntry, ProbeLeak } from './types.js'
import type { WriteResult } from './write.js'

/** Everything known about one table after the probe ran. */
export interface TableEvidence {
  readonly table: ProbeTable
  readonly login: LoginInfo
  readonly setting: string
  readonly shared: boolean
  /** The no-tenant session's sight, per setting state probed (`unset`, `empty`). */
  readonly noTenant: ReadonlyArray<{ readonly state: string; readonly sight: Sight }>
  /** Each tenant's sight, in the order given. */
  readonly tenants: ReadonlyArray<{ readonly label: string; readonly sight: Sight }>
  /** Each tenant's write results, by label (absent: not tried). */
  readonly writes: ReadonlyMap<string, WriteResult>
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`
}

function rowsOf(sight: Sight): number | null {
  return sight.kind === 'rows' ? sight.rows : null
}

/** The entry for one table. */
export function verdictOf(e: TableEvidence): ProbeEntry {
  const { table } = e
  const identity = identityOf(table)
  const notes: string[] = []
  const leaks: ProbeLeak[] = []
  const tenantRows = e.tenants.map(({ label, sight }) => ({ tenant: label, rows: rowsOf(sight) }))
  const counted = e.noTenant.map(({ sight }) => rowsOf(sight)).filter((n): n is number => n !== null)
  const noTenantRows = counted.length === 0 ? null : Math.max(...counted)
  const base = { table: table.label, kind: table.kind, shared: e.shared, identity, noTenantRows, tenantRows }

  if (e.tenants.every(({ sight }) => sight.kind === 'unreadable')) {
    return {
      ...base,
      ok: false,
      status: 'skipped',
      leaks,
      notes,
      reason: 'no tenant has SELECT on it (or USAGE on its schema), so it was not checked',
      fix: null,
    }
  }
  const failed = e.tenants.filter(({ sight }) => sight.kind === 'error')
  if (failed.length > 0) {
    const [first] = failed
    return {
      ...base,
      ok: false,
      status: 'error',
      leaks,
      notes,
      reason: `reading it as ${first!.label} failed, so it was not checked: ${(first!.sight as { message: string }).message}`,
      fix: 'check that the tenants given are valid for this database (their ids parse, their roles exist)',
    }
  }
  for (const { label, sight } of e.tenants) {
    if (sight.kind === 'unreadable') notes.push(`${label} has no SELECT on it`)
    if (sight.kind === 'rows' && sight.truncated) notes.push(`${label} sees ${sight.rows} rows: identities compared for the first ${sight.ids.size}`)
  }

  // Fail-open: rows with no tenant bound.
  for (const { state, sight } of e.noTenant) {
    if (sight.kind === 'error') notes.push(`with the setting ${state}, reading it with no tenant fails closed: ${sight.message}`)
  }
  if (!e.shared && noTenantRows !== null && noTenantRows > 0) {
    const states = e.noTenant.filter(({ sight }) => (rowsOf(sight) ?? 0) > 0).map(({ state }) => state)
    leaks.push({
      kind: 'no-tenant',
      rows: noTenantRows,
      tenants: [],
      message: `${plural(noTenantRows, 'row')} visible with no tenant bound (setting ${states.join(' or ')}, no role switched)`,
    })
  }

  // The same rows seen by two tenants.
  if (!e.shared) {
    for (let i = 0; i < e.tenants.length; i++) {
      for (let j = i + 1; j < e.tenants.length; j++) {
        const a = e.tenants[i]!
        const b = e.tenants[j]!
        if (a.sight.kind !== 'rows' || b.sight.kind !== 'rows') continue
        let both = 0
        for (const id of a.sight.ids) if (b.sight.ids.has(id)) both++
        if (both > 0) {
          leaks.push({
            kind: 'shared-rows',
            rows: both,
            tenants: [a.label, b.label],
            message: `${plural(both, 'row')} seen by both ${a.label} and ${b.label}`,
          })
        }
      }
    }
  }

  // Writes.
  for (const { label } of e.tenants) {
    const w = e.writes.get(label)
    if (w === undefined) continue
    notes.push(...w.notes)
    for (const [owner, n] of w.updated) {
      if (n > 0) leaks.push({ kind: 'cross-tenant-update', rows: n, tenants: [owner, label], message: `${label} can UPDATE ${plural(n, 'row')} that ${owner} sees` })
    }
    for (const [owner, n] of w.deleted) {
      if (n > 0) leaks.push({ kind: 'cross-tenant-delete', rows: n, tenants: [owner, label], message: `${label} can DELETE ${plural(n, 'row')} that ${owner} sees` })
    }
    if (w.blindDeletes !== null && w.blindDeletes > 0) {
      leaks.push({ kind: 'blind-delete', rows: w.blindDeletes, tenants: [label], message: `${label} can DELETE ${plural(w.blindDeletes, 'row')} it cannot see (DELETE with no WHERE)` })
    }
    if (w.sharedWrites !== null && w.sharedWrites > 0) {
      leaks.push({ kind: 'shared-write', rows: w.sharedWrites, tenants: [label], message: `${label} can change ${plural(w.sharedWrites, 'row')} of this shared table` })
    }
  }
  for (const statement of ['UPDATE', 'DELETE'] as const) {
    const without = e.tenants.filter(({ label }) => e.writes.get(label)?.untried.includes(statement)).map(({ label }) => label)
    if (without.length === 0) continue
    const who = without.length === e.writes.size ? '' : ` as ${without.join(', ')}`
    notes.push(`${statement} not tried${who}: no ${statement} privilege`)
  }
  const uniqueNotes = [...new Set(notes)]

  if (leaks.length === 0) {
    const seen = e.tenants.some(({ sight }) => (rowsOf(sight) ?? 0) > 0)
    if (!seen) uniqueNotes.push('no tenant sees a row, so this proves little: seed rows for each tenant')
    return {
      ...base,
      ok: true,
      status: 'pass',
      leaks,
      notes: uniqueNotes,
      reason: e.shared
        ? 'declared shared: no tenant could change its rows'
        : `no rows seen with no tenant, none seen by two tenants, none changed across tenants (rows told apart by ${describeIdentity(identity)})`,
      fix: null,
    }
  }
  const { reason, fix } = explain(e, leaks)
  return { ...base, ok: false, status: 'leak', leaks, notes: uniqueNotes, reason, fix }
}

/** Why rows leak, from the catalog, and what to change. */
function explain(e: TableEvidence, leaks: readonly ProbeLeak[]): { reason: string; fix: string } {
  const { table, login } = e
  if (login.superuser || login.bypassrls) {
    return {
      reason: `the login role ${login.name} is ${login.superuser ? 'a superuser' : 'BYPASSRLS'}: row-level security does not apply to it`,
      fix: `connect as a role without them, or: ALTER ROLE ${quote(login.name)} NOSUPERUSER NOBYPASSRLS;`,
    }
  }
  if (table.kind === 'materialized view') {
    return {
      reason: 'a materialized view has no row-level security: whoever may read it sees every row it holds',
      fix: `REVOKE SELECT ON ${table.sql} FROM <the application's roles>;\n-- or use a view WITH (security_invoker = true) over the tenant tables instead`,
    }
  }
  if (table.kind === 'view') {
    return {
      reason: table.securityInvoker
        ? 'a table this view reads lets rows through (the view reads as the caller): probe its tables'
        : `the view reads its tables with its owner's rights (${table.owner}), not the caller's: the owner's RLS, or none, applies`,
      fix: table.securityInvoker
        ? `-- fix the policies of the tables ${table.label} reads`
        : `ALTER VIEW ${table.sql} SET (security_invoker = true);  -- PostgreSQL 15+\n-- or revoke SELECT on it from the application's roles`,
    }
  }
  if (!table.rls) {
    return {
      reason: 'row-level security is not enabled on it: every role with SELECT sees every row',
      fix: `ALTER TABLE ${table.sql} ENABLE ROW LEVEL SECURITY;\nALTER TABLE ${table.sql} FORCE ROW LEVEL SECURITY;\n` +
        `-- and a policy: pg-tenant policy --schema ${table.schema} --table ${table.name} --column <tenant column>` +
        (e.shared ? '' : `\n-- or, if every tenant may read it, declare it shared (--shared ${table.label}) and grant no UPDATE or DELETE`),
    }
  }
  if (table.loginOwns && !table.force) {
    return {
      reason: `the login role ${login.name} owns it${table.owner === login.name ? '' : ` (as a member of ${table.owner})`} and row-level security is not forced: owners bypass RLS`,
      fix: `ALTER TABLE ${table.sql} FORCE ROW LEVEL SECURITY;\n-- better: ALTER TABLE ${table.sql} OWNER TO <a role the application does not log in as>;`,
    }
  }
  const kinds = new Set(leaks.map((l) => l.kind))
  const parts: string[] = []
  if (kinds.has('no-tenant')) parts.push('a policy lets rows through when no tenant is bound')
  if (kinds.has('shared-rows')) parts.push('a policy lets two tenants see the same rows (an OR branch such as shared rows, or a condition that is not the tenant)')
  if (kinds.has('cross-tenant-update') || kinds.has('cross-tenant-delete')) parts.push('tenants can change rows other tenants see')
  if (kinds.has('blind-delete')) parts.push('a DELETE policy lets a tenant delete rows its SELECT policy hides')
  if (kinds.has('shared-write')) parts.push('tenants can change a table every tenant reads')
  const fixes: string[] = []
  if (kinds.has('no-tenant') || kinds.has('shared-rows') || kinds.has('cross-tenant-update') || kinds.has('cross-tenant-delete')) {
    fixes.push(
      `-- make every policy on ${table.label} match one tenant's rows only, and none when no tenant is bound:`,
      `--   USING (<tenant column> = (select nullif(current_setting('${e.setting}', true), '')))   (or = current_user, one role per tenant)`,
      `-- rows meant for every tenant belong in a table of their own (declare it with --shared)`,
      `-- see the policies: SELECT polname, pg_get_expr(polqual, polrelid) FROM pg_policy WHERE polrelid = '${table.sql.replaceAll("'", "''")}'::regclass;`,
    )
  }
  if (kinds.has('blind-delete')) fixes.push(`-- give DELETE (and UPDATE) policies the same USING as the SELECT policy`)
  if (kinds.has('shared-write')) fixes.push(`REVOKE UPDATE, DELETE ON ${table.sql} FROM <the tenants' role>;`)
  return { reason: parts.join('; '), fix: fixes.join('\n') }
}

function quote(name: string): string {
  return `"${name.replaceAll('"', '""')}"`
}
