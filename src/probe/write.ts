/**
 * The write check: as one tenant, in savepoints that are always rolled back, which rows of the
 * others it can UPDATE or DELETE. UPDATE and DELETE triggers (and ON DELETE actions) fire inside
 * those savepoints, and are undone with them; effects outside the database (a trigger that calls
 * out, a sequence's nextval) are not.
 *
 * - `UPDATE t SET c = c WHERE <identity> = ANY(rows another tenant saw)` and the same DELETE:
 *   PostgreSQL applies the SELECT policies too to a statement that reads columns, so these find
 *   rows the tenant can both see and change.
 * - `DELETE FROM t` with no WHERE reads no column: only the DELETE policies apply. Compared with
 *   `DELETE ... WHERE <identity> IS NOT NULL` (which reads one), it finds rows the tenant can
 *   delete without seeing them: a DELETE policy wider than the SELECT policy.
 */
import type { ProbeTable } from './catalog.js'
import { identityOf, identitySql } from './identity.js'
import { messageOf, type Sight } from './read.js'
import type { ProbeSession } from './session.js'
import { quoteTrusted } from '../sql/ident.js'

/** What one tenant could change of one table. */
export interface WriteResult {
  /** Rows of each other tenant (by label) this one could UPDATE / DELETE; absent: not tried. */
  readonly updated: ReadonlyMap<string, number>
  readonly deleted: ReadonlyMap<string, number>
  /** Rows it can DELETE with no WHERE minus those it can DELETE among the ones it sees. */
  readonly blindDeletes: number | null
  /** Rows of a shared table it could UPDATE / DELETE. */
  readonly sharedWrites: number | null
  /** The statements not tried for want of a privilege (or of a column to set). */
  readonly untried: ReadonlyArray<'UPDATE' | 'DELETE'>
  readonly notes: readonly string[]
}

/**
 * Tries the writes as `actor` on `table`. `others`: the other tenants' sights of it, by label.
 * `own`: what the actor saw.
 */
export async function tryWrites(
  session: ProbeSession,
  table: ProbeTable,
  actor: string,
  own: Sight,
  others: ReadonlyMap<string, Sight>,
  shared: boolean,
): Promise<WriteResult> {
  const notes: string[] = []
  const updated = new Map<string, number>()
  const deleted = new Map<string, number>()
  const id = identitySql(identityOf(table))
  const target = `${table.sql} as t`
  const attempt = async (what: string, text: string, values?: readonly unknown[]): Promise<number | null> => {
    try {
      return await session.undone(() => session.count(text, values))
    } catch (err) {
      notes.push(`${what} as ${actor} stopped with an error, so it proves nothing: ${messageOf(err)}`)
      return null
    }
  }
  const canUpdate = own.privileges.update && table.updatable !== null
  const untried: Array<'UPDATE' | 'DELETE'> = []
  if (!own.privileges.update) untried.push('UPDATE')
  else if (table.updatable === null) notes.push('UPDATE not tried: no column can be set to itself')
  if (!own.privileges.delete) untried.push('DELETE')
  const set = canUpdate ? `${quoteTrusted(table.updatable!)} = t.${quoteTrusted(table.updatable!)}` : ''

  let sharedWrites: number | null = null
  if (shared) {
    const u = canUpdate ? await attempt('UPDATE', `update ${target} set ${set} where ${id} is not null`) : null
    const d = own.privileges.delete ? await attempt('DELETE', `delete from ${table.sql}`) : null
    sharedWrites = u === null && d === null ? null : Math.max(u ?? 0, d ?? 0)
    return { updated, deleted, blindDeletes: null, sharedWrites, untried, notes }
  }

  for (const [label, sight] of others) {
    if (sight.kind !== 'rows' || sight.ids.size === 0) continue
    const ids = [...sight.ids]
    if (canUpdate) {
      const n = await attempt('UPDATE', `update ${target} set ${set} where ${id} = any($1::text[])`, [ids])
      if (n !== null) updated.set(label, n)
    }
    if (own.privileges.delete) {
      const n = await attempt('DELETE', `delete from ${target} where ${id} = any($1::text[])`, [ids])
      if (n !== null) deleted.set(label, n)
    }
  }
  let blindDeletes: number | null = null
  if (own.privileges.delete) {
    const all = await attempt('DELETE with no WHERE', `delete from ${table.sql}`)
    const seen = all === null ? null : await attempt('DELETE', `delete from ${target} where ${id} is not null`)
    if (all !== null && seen !== null) blindDeletes = all - seen
  }
  return { updated, deleted, blindDeletes, sharedWrites, untried, notes }
}
