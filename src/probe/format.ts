/** The probe's entries as text: one line per table (rows seen, verdict), then what leaks and the fix. */
import type { ProbeEntry } from './types.js'

/**
 * Renders entries as a table: TABLE, rows seen with no tenant and by each tenant, VERDICT; under a
 * table that leaks or failed, each leak, the reason and the fix (SQL is never wrapped). Ends with
 * a summary line.
 *
 * @example
 * ```ts
 * process.stdout.write(formatProbe(await probeIsolation({ connectionString, tenants: ['a', 'b'] })))
 * ```
 */
export function formatProbe(entries: readonly ProbeEntry[]): string {
  if (entries.length === 0) return 'No table found in the schemas probed: nothing was checked.\n'
  const tenants = entries[0]!.tenantRows.map((t) => t.tenant)
  const header = ['TABLE', 'NO TENANT', ...tenants, 'VERDICT']
  const cell = (n: number | null) => (n === null ? '-' : String(n))
  const rows = entries.map((e) => [
    e.table,
    cell(e.noTenantRows),
    ...e.tenantRows.map((t) => cell(t.rows)),
    e.status === 'leak' ? 'LEAK' : e.status === 'error' ? 'ERROR' : e.shared ? `${e.status} (shared)` : e.status,
  ])
  const widths = header.map((h, i) => Math.min(40, Math.max(h.length, ...rows.map((r) => r[i]!.length))))
  const line = (cells: readonly string[]) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join('  ').trimEnd()
  const out: string[] = [line(header), line(widths.map((w) => '-'.repeat(w)))]
  entries.forEach((e, i) => {
    out.push(line(rows[i]!))
    if (e.status === 'pass' && e.notes.length === 0) return
    for (const leak of e.leaks) out.push(`    leak: ${leak.message}`)
    if (e.status !== 'pass') out.push(`    why: ${e.reason}`)
    if (e.fix !== null) out.push('    fix:', ...e.fix.split('\n').map((l) => `      ${l}`))
    for (const note of e.notes) out.push(`    note: ${note}`)
  })
  const count = (status: ProbeEntry['status']) => entries.filter((e) => e.status === status).length
  out.push('', `${count('pass')} passed, ${count('leak')} leaking, ${count('error')} failed, ${count('skipped')} skipped (rows counted as the login role with no tenant, and as each tenant).`)
  return `${out.join('\n')}\n`
}

/**
 * The exit code of `pg-tenant probe` for these entries: 1 when a table leaks or could not be
 * checked, 2 when no table was checked at all, 0 otherwise (skipped tables are listed, not failed).
 *
 * @example
 * ```ts
 * process.exitCode = probeExitCode(await probeIsolation({ connectionString, tenants: ['a', 'b'] }))
 * ```
 */
export function probeExitCode(entries: readonly ProbeEntry[]): 0 | 1 | 2 {
  if (entries.some((e) => e.status === 'leak' || e.status === 'error')) return 1
  return entries.some((e) => e.status === 'pass') ? 0 : 2
}
