/**
 * No silent data loss when the connection is lost: a scope whose callback caught the error of a
 * lost connection (terminated backend, query_timeout) and returned normally never committed, so
 * it must not resolve as if it had.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createTenantPool, TransactionAbortedError, type ScopeMode } from '../setup/pg-tenant.js'
import { createTestDatabase, type TestDatabase } from '../setup/fixtures.js'

let t: TestDatabase
beforeAll(async () => {
  t = await createTestDatabase()
})
afterAll(() => t.drop())

const rowsOf = async (kind: string) => (await t.admin('select * from events where kind = $1', [kind])).rows

describe.each<ScopeMode>(['transaction', 'session'])('scope %s', (scope) => {
  it('a callback that swallows a terminated backend and returns', async () => {
    const db = createTenantPool(t.pool({ max: 1 }), { scope })
    const kind = `lost-terminated-${scope}`
    const outcome = await db
      .withTenant('org_lost', async () => {
        await db.query('insert into events (kind) values ($1)', [kind])
        const { rows } = await db.query<{ pid: number }>('select pg_backend_pid() as pid')
        await t.admin('select pg_terminate_backend($1)', [rows[0]!.pid])
        await new Promise((r) => setTimeout(r, 50))
        await db.query('select 1').catch(() => undefined)
        return 'looks fine'
      })
      .catch((e: unknown) => e)
    const stored = await rowsOf(kind)
    if (scope === 'transaction') {
      // Never committed: the caller must not be told otherwise.
      expect(stored).toEqual([])
      expect(outcome).toBeInstanceOf(TransactionAbortedError)
    } else {
      // Autocommit: the insert was committed before the backend died; nothing was lost.
      expect(stored).toHaveLength(1)
      expect(outcome).toBe('looks fine')
    }
  })

  it('a callback that swallows a query_timeout and returns', async () => {
    const db = createTenantPool(t.pool({ max: 1 }), { scope })
    const kind = `lost-timeout-${scope}`
    const outcome = await db
      .withTenant('org_lost', async () => {
        await db.query('insert into events (kind) values ($1)', [kind])
        await db.query({ text: 'select pg_sleep(1)', query_timeout: 50 }).catch(() => undefined)
        return 'looks fine'
      })
      .catch((e: unknown) => e)
    const stored = await rowsOf(kind)
    if (scope === 'transaction') {
      expect(stored).toEqual([])
      expect(outcome).toBeInstanceOf(TransactionAbortedError)
    } else {
      expect(stored).toHaveLength(1)
      expect(outcome).toBe('looks fine')
    }
  })
})
