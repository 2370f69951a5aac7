/**
 * pg (8.19 and later) warns, once per process, when `client.query()` is called while the client is
 * already running a query: pg 9 will refuse it. pg-tenant never queues two statements on a pg
 * client (a scope runs one at a time), so whatever the caller does concurrently, pg never prints
 * that warning because of pg-tenant. Shown last, raw pg doing the same prints it: the listener
 * would have heard it.
 */
import { createRequire } from 'node:module'
import Cursor from 'pg-cursor'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { createTenantPool } from '../setup/pg-tenant.js'
import { createTestDatabase, type TestDatabase } from '../setup/fixtures.js'

const pgVersion = (createRequire(import.meta.url)('pg/package.json') as { version: string }).version
let t: TestDatabase
const warnings: string[] = []
const onWarning = (warning: Error) => warnings.push(`${warning.name}: ${warning.message}`)
beforeAll(async () => {
  t = await createTestDatabase()
  process.on('warning', onWarning)
})
afterAll(async () => {
  process.off('warning', onWarning)
  await t.drop()
})

const concurrentQueryWarning = (w: string) => w.includes('already executing a query')
const settleWarnings = () => new Promise((r) => setTimeout(r, 20))

it('no concurrent-query warning from anything pg-tenant does, however the caller overlaps it', async () => {
  const db = createTenantPool(t.pool({ max: 2 }))
  // Statements started together in a withTenant scope, with a cursor among them.
  await db.withTenant('org_w', async () => {
    const cursor = await db.query(new Cursor('select generate_series(1, 3) as n'))
    const read = cursor.read(10)
    await Promise.all([read, db.query('select 1'), db.query('select 2'), db.transaction(() => db.query('select 3'))])
    await cursor.close()
  })
  // Lone queries at once, and a db.pool client given several statements without waiting.
  await db.runWithTenant('org_w', async () => {
    await Promise.all(Array.from({ length: 6 }, (_, i) => db.query('select $1::int', [i])))
    const client = await db.pool.connect()
    await Promise.all([client.query('select 1'), client.query('select 2'), client.query('select 3')])
    await Promise.all([client.query('BEGIN'), client.query('select 4'), client.query('COMMIT')])
    client.release()
  })
  await settleWarnings()
  expect(warnings.filter(concurrentQueryWarning)).toEqual([])

  // Raw pg, the same overlap on one client: the warning comes (pg 8.19 and later), so the listener
  // above could hear it.
  const raw = await t.pool({ max: 1 }).connect()
  await Promise.all([raw.query('select 1'), raw.query('select 2'), raw.query('select 3')])
  raw.release()
  await settleWarnings()
  const [major, minor] = pgVersion.split('.').map(Number) as [number, number]
  expect(warnings.filter(concurrentQueryWarning)).toHaveLength(major === 8 && minor < 19 ? 0 : 1)
})
