/**
 * node:diagnostics_channel: each scope publishes start and end, each statement sent through it a
 * query message, and its client a release or a destroy, all carrying the same scope id, the tenant
 * and the backend pid. Messages are compared with what the server itself reports.
 */
import diagnostics from 'node:diagnostics_channel'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import {
  createTenantPool,
  diagnosticsChannels,
  ScopeClosedError,
  TenantMismatchError,
  type DestroyMessage,
  type QueryMessage,
  type ScopeEndMessage,
  type ScopeMessage,
  type TenantPool,
} from '../setup/pg-tenant.js'
import { createTestDatabase, type TestDatabase } from '../setup/fixtures.js'

let t: TestDatabase
beforeAll(async () => {
  t = await createTestDatabase()
})
afterAll(() => t.drop())

type Seen = { channel: string; message: ScopeMessage & Record<string, any> }
const seen: Seen[] = []
const listeners = Object.values(diagnosticsChannels).map((channel) => {
  const listener = (message: unknown) => seen.push({ channel, message: message as Seen['message'] })
  return [channel, listener] as const
})
const subscribe = () => {
  for (const [channel, listener] of listeners) diagnostics.subscribe(channel, listener)
}
const unsubscribe = () => {
  for (const [channel, listener] of listeners) diagnostics.unsubscribe(channel, listener)
}
afterEach(() => {
  unsubscribe()
  seen.length = 0
})

const pidOf = async (db: TenantPool) =>
  (await db.query<{ pid: number }>('select pg_backend_pid() as pid')).rows[0]!.pid
const short = (s: Seen) => s.channel.replace('pg-tenant:', '')

describe('channels', () => {
  it('are the documented names', () => {
    expect(diagnosticsChannels).toEqual({
      scopeStart: 'pg-tenant:scope:start',
      scopeEnd: 'pg-tenant:scope:end',
      query: 'pg-tenant:query',
      release: 'pg-tenant:release',
      destroy: 'pg-tenant:destroy',
    })
  })

  it('a withTenant scope: start, its queries, release, end, with one scope id, tenant and pid', async () => {
    const db = createTenantPool(t.pool({ max: 1 }))
    subscribe()
    const pid = await db.withTenant('org_diag', async () => {
      await db.query('select 1')
      return pidOf(db)
    })
    expect(seen.map(short)).toEqual(['scope:start', 'query', 'query', 'release', 'scope:end'])
    const ids = new Set(seen.map((s) => s.message.scopeId))
    expect(ids.size).toBe(1)
    for (const { message } of seen) {
      expect(message).toMatchObject({ tenant: 'org_diag', kind: 'transaction' })
    }
    for (const { message } of seen.slice(1)) expect(message.pid).toBe(pid)
    const queries = seen.filter((s) => s.channel === diagnosticsChannels.query).map((s) => s.message as QueryMessage)
    expect(queries.map((q) => [q.text, q.outcome, q.sent, q.rowCount])).toEqual([
      ['select 1', 'ok', true, 1],
      ['select pg_backend_pid() as pid', 'ok', true, 1],
    ])
    expect(queries.every((q) => q.durationMs >= 0 && 'values' in q === false)).toBe(true)
    expect(seen[3]!.message).toMatchObject({ verified: true })
    const end = seen[4]!.message as ScopeEndMessage
    expect(end.outcome).toBe('ok')
    expect(end.error).toBeUndefined()
    expect(end.durationMs).toBeGreaterThanOrEqual(queries[0]!.durationMs)
  })

  it('runWithTenant: one single scope per query; withoutTenant: tenant undefined', async () => {
    const db = createTenantPool(t.pool({ max: 1 }))
    subscribe()
    await db.runWithTenant({ id: 'org_a', settings: { 'app.user_id': 'u_1' } }, async () => {
      await db.query('select 1')
      await db.query('select 2')
    })
    await db.withoutTenant(() => db.query('select 3'))
    const starts = seen.filter((s) => s.channel === diagnosticsChannels.scopeStart).map((s) => s.message)
    expect(starts.map((m) => [m.kind, m.tenant])).toEqual([
      ['single', { id: 'org_a', settings: { 'app.user_id': 'u_1' } }],
      ['single', { id: 'org_a', settings: { 'app.user_id': 'u_1' } }],
      ['single', undefined],
    ])
    expect(new Set(starts.map((m) => m.scopeId)).size).toBe(3)
    expect(seen.filter((s) => s.channel === diagnosticsChannels.scopeEnd)).toHaveLength(3)
  })

  it('a failing scope: the SQL error on the query and on the end; a scope with no query: no client', async () => {
    const db = createTenantPool(t.pool({ max: 1 }))
    subscribe()
    const err = await db.withTenant('org_fail', () => db.query('select 1/0')).catch((e: unknown) => e)
    await db.withTenant('org_idle', () => 'nothing sent')
    const query = seen.find((s) => s.channel === diagnosticsChannels.query)!.message as QueryMessage
    expect(query).toMatchObject({ outcome: 'error', sent: true, error: err })
    const ends = seen.filter((s) => s.channel === diagnosticsChannels.scopeEnd).map((s) => s.message as ScopeEndMessage)
    expect(ends.map((e) => [e.tenant, e.outcome, e.error, e.pid])).toEqual([
      ['org_fail', 'error', err, expect.any(Number)],
      ['org_idle', 'ok', undefined, undefined],
    ])
    // The rolled-back client was clean: released, not destroyed.
    expect(seen.filter((s) => s.channel === diagnosticsChannels.release)).toHaveLength(1)
  })

  it('a floating query after the scope ended: published as refused, never sent', async () => {
    const db = createTenantPool(t.pool({ max: 1 }))
    subscribe()
    let floating!: Promise<unknown>
    await db.withTenant('org_float', async () => {
      // Started inside the scope, so it carries the scope's context; runs after it ended.
      floating = new Promise((r) => setTimeout(r, 20)).then(() => db.query('delete from events'))
    })
    const err = await floating.catch((e: unknown) => e)
    expect(err).toBeInstanceOf(ScopeClosedError)
    expect(seen.map(short)).toEqual(['scope:start', 'scope:end', 'query'])
    expect(seen[2]!.message).toMatchObject({ text: 'delete from events', sent: false, outcome: 'error', error: err })
  })

  it('nesting: a joined scope publishes nothing of its own; a mismatch publishes nothing', async () => {
    const db = createTenantPool(t.pool({ max: 1 }))
    subscribe()
    await db.withTenant('org_n', () => db.withTenant('org_n', () => db.query('select 1')))
    const mismatch = await db
      .withTenant('org_n', () => db.withTenant('org_other', () => 1))
      .catch((e: unknown) => e)
    expect(mismatch).toBeInstanceOf(TenantMismatchError)
    expect(seen.map(short)).toEqual(['scope:start', 'query', 'release', 'scope:end', 'scope:start', 'scope:end'])
  })

  it('a terminated backend: destroy with reason broken, and the error on the scope end', async () => {
    const db = createTenantPool(t.pool({ max: 1 }))
    subscribe()
    const err = await db
      .withTenant('org_kill', async () => {
        const pid = await pidOf(db)
        await t.admin('select pg_terminate_backend($1)', [pid])
        await new Promise((r) => setTimeout(r, 50))
        await db.query('select 1')
      })
      .catch((e: unknown) => e)
    expect(err).toBeInstanceOf(Error)
    const destroy = seen.find((s) => s.channel === diagnosticsChannels.destroy)!.message as DestroyMessage
    expect(destroy).toMatchObject({ tenant: 'org_kill', reason: 'broken' })
    expect(seen.at(-1)!.message).toMatchObject({ outcome: 'error', error: err })
    expect(db.stats()).toMatchObject({ destroyed: 1, destroyedBy: { broken: 1 }, dirty: 0 })
  })

  it('publishes nothing once unsubscribed', async () => {
    const db = createTenantPool(t.pool({ max: 1 }))
    subscribe()
    await db.withTenant('org_loud', () => db.query('select 1'))
    expect(seen.length).toBeGreaterThan(0) // the same scope is heard while subscribed
    unsubscribe()
    seen.length = 0
    await db.withTenant('org_quiet', () => db.query('select 1'))
    expect(seen).toEqual([])
    for (const channel of Object.values(diagnosticsChannels)) {
      expect(diagnostics.hasSubscribers(channel)).toBe(false)
    }
  })
})
