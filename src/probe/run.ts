/**
 * The probe's run: one pool of the login role, a no-tenant session, then each tenant through
 * pg-tenant (read pass, then write pass, every transaction rolled back), then a verdict per table.
 */
import type { PgPoolLike } from '../driver/index.js'
import { InvalidOptionsError } from '../errors.js'
import { createTenantPool } from '../pool.js'
import { readLogin, readTables, type ProbeTable } from './catalog.js'
import { normalizeProbeOptions, type ProbeSettings } from './options.js'
import { readAll, type Sight } from './read.js'
import { asNoTenant, asTenant } from './session.js'
import type { ProbeEntry, ProbeOptions } from './types.js'
import { verdictOf } from './verdict.js'
import { tryWrites, type WriteResult } from './write.js'

/** Runs the probe; see `probeIsolation` in pg-tenant/testing. */
export async function runProbe(options: ProbeOptions): Promise<ProbeEntry[]> {
  const settings = normalizeProbeOptions(options)
  const pool = settings.pool ?? (await poolFor(settings.connectionString!))
  try {
    return await probe(pool, settings)
  } finally {
    if (settings.pool === undefined) await pool.end()
  }
}

async function probe(pool: PgPoolLike, s: ProbeSettings): Promise<ProbeEntry[]> {
  // No tenant first, on the pool's first client: a fresh session, where the setting was never
  // written (NULL), is one of the two states an application's unbound query can meet.
  const first = await asNoTenant(pool, async (session) => {
    const login = await readLogin(session.query)
    const tables = await readTables(session.query, s.schemas)
    const states: Array<{ state: string; sights: Map<string, Sight> }> = []
    const [fresh] = await session.query<{ unset: boolean }>('select current_setting($1, true) is null as unset', [s.setting])
    if (fresh?.unset === true) states.push({ state: 'unset', sights: await readAll(session, tables, s.maxRows) })
    await session.query(`select set_config($1, '', true)`, [s.setting])
    states.push({ state: 'empty', sights: await readAll(session, tables, s.maxRows) })
    return { login, tables, states }
  })
  const { login, tables, states } = first
  for (const label of s.shared) {
    if (!tables.some((t) => t.label === label)) {
      throw new InvalidOptionsError(`shared table ${JSON.stringify(label)} is not a table of the schemas probed`)
    }
  }

  // pg-tenant, as the application uses it: the tenants' roles through the allow-list.
  const db = createTenantPool(pool, { setting: s.setting, roles: s.roles, allowRlsBypass: true })
  const seen = new Map<string, Map<string, Sight>>()
  for (const { tenant, label } of s.tenants) {
    seen.set(label, await asTenant(db, tenant, (session) => readAll(session, tables, s.maxRows)))
  }
  const writes = new Map<string, Map<string, WriteResult>>() // table oid -> tenant label -> result
  for (const { tenant, label } of s.tenants) {
    await asTenant(db, tenant, async (session) => {
      for (const table of tables) {
        const own = seen.get(label)!.get(table.oid)!
        if (own.kind !== 'rows' || table.kind !== 'table') continue // views are read, not written
        const others = new Map<string, Sight>()
        for (const other of s.tenants) if (other.label !== label) others.set(other.label, seen.get(other.label)!.get(table.oid)!)
        const result = await tryWrites(session, table, label, own, others, s.shared.has(table.label))
        let byTenant = writes.get(table.oid)
        if (byTenant === undefined) writes.set(table.oid, (byTenant = new Map()))
        byTenant.set(label, result)
      }
    })
  }

  return tables.map((table: ProbeTable) =>
    verdictOf({
      table,
      login,
      setting: s.setting,
      shared: s.shared.has(table.label),
      noTenant: states.map(({ state, sights }) => ({ state, sight: sights.get(table.oid)! })),
      tenants: s.tenants.map(({ label }) => ({ label, sight: seen.get(label)!.get(table.oid)! })),
      writes: writes.get(table.oid) ?? new Map(),
    }),
  )
}

/** A pool of `pg`, loaded from the user's installation (a peer dependency) at run time. */
async function poolFor(connectionString: string): Promise<PgPoolLike> {
  const specifier = 'pg' // a variable: resolved at run time, never bundled
  let Pool: new (config: object) => PgPoolLike & { on(event: 'error', fn: () => void): unknown }
  try {
    const mod = (await import(specifier)) as { default?: { Pool?: unknown }; Pool?: unknown }
    Pool = (mod.default?.Pool ?? mod.Pool) as typeof Pool
  } catch (err) {
    throw new InvalidOptionsError(`probeIsolation with connectionString needs the pg package (npm install pg): ${(err as Error).message}`)
  }
  // Named, so that pg_stat_activity shows what these sessions are.
  const pool = new Pool({ connectionString, max: 2, connectionTimeoutMillis: 10_000, application_name: 'pg-tenant probe' })
  pool.on('error', () => undefined) // an idle client's lost connection: the next query reports it
  return pool
}
