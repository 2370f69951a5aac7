/**
 * The read check: what one session sees of each table, as counts and row identities. Each table is
 * read in a savepoint of its own (rolled back), so that one failing read does not end the others.
 */
import type { ProbeTable, Privileges } from './catalog.js'
import { readPrivileges } from './catalog.js'
import { identityOf, identitySql } from './identity.js'
import type { ProbeSession } from './session.js'

/** What one session saw of one table. */
export type Sight =
  | { readonly kind: 'unreadable'; readonly privileges: Privileges }
  | { readonly kind: 'error'; readonly message: string; readonly privileges: Privileges }
  | {
      readonly kind: 'rows'
      readonly rows: number
      /** The identities of the rows seen, at most maxRows of them. */
      readonly ids: ReadonlySet<string>
      readonly truncated: boolean
      readonly privileges: Privileges
    }

const NONE: Privileges = { select: false, update: false, delete: false }

/** Reads every table in `tables` as this session's role; by table oid. */
export async function readAll(
  session: ProbeSession,
  tables: readonly ProbeTable[],
  maxRows: number,
): Promise<Map<string, Sight>> {
  const privileges = await readPrivileges(session.query, tables)
  const sights = new Map<string, Sight>()
  for (const table of tables) {
    const granted = privileges.get(table.oid) ?? NONE
    if (!granted.select) {
      sights.set(table.oid, { kind: 'unreadable', privileges: granted })
      continue
    }
    try {
      sights.set(table.oid, await session.undone(() => readOne(session, table, maxRows, granted)))
    } catch (err) {
      sights.set(table.oid, { kind: 'error', message: messageOf(err), privileges: granted })
    }
  }
  return sights
}

async function readOne(session: ProbeSession, table: ProbeTable, maxRows: number, privileges: Privileges): Promise<Sight> {
  // The window count is taken over every row before LIMIT: exact count, bounded identities.
  const rows = await session.query<{ n: string; id: string }>(
    `select count(*) over () as n, ${identitySql(identityOf(table))} as id from ${table.sql} as t limit $1`,
    [maxRows],
  )
  const total = rows.length === 0 ? 0 : Number(rows[0]!.n)
  return { kind: 'rows', rows: total, ids: new Set(rows.map((r) => r.id)), truncated: total > rows.length, privileges }
}

/** A database error's message with its SQLSTATE. */
export function messageOf(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code
    return typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) ? `${err.message} (SQLSTATE ${code})` : err.message
  }
  return String(err)
}
