/**
 * No silent data loss when the connection is lost: a scope whose callback caught the error of a
 * lost connection (terminated backend, query_timeout) and returned normally never committed, so
 * it must not resolve as if it had.
 */
import net from 'node:net'
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
    let swallowed: unknown
    const outcome = await db
      .withTenant('org_lost', async () => {
        await db.query('insert into events (kind) values ($1)', [kind])
        const { rows } = await db.query<{ pid: number }>('select pg_backend_pid() as pid')
        await t.admin('select pg_terminate_backend($1)', [rows[0]!.pid])
        await new Promise((r) => setTimeout(r, 50))
        swallowed = await db.query('select 1').then(() => 'the query succeeded', (e: unknown) => e)
        return 'looks fine'
      })
      .catch((e: unknown) => e)
    // The connection really was lost: what the callback swallowed was an error.
    expect(swallowed).toBeInstanceOf(Error)
    const stored = await rowsOf(kind)
    if (scope === 'transaction') {
      // Never committed: the caller must not be told otherwise.
      expect(stored).toEqual([])
      expect(outcome).toBeInstanceOf(TransactionAbortedError)
      // It says why: the connection's own failure (the server's 57P01, or the socket's error).
      expect((outcome as Error).cause).toBeInstanceOf(Error)
    } else {
      // Autocommit: the insert was committed before the backend died; nothing was lost.
      expect(stored).toHaveLength(1)
      expect(outcome).toBe('looks fine')
    }
  })

  it('a callback that swallows a query_timeout and returns', async () => {
    const db = createTenantPool(t.pool({ max: 1 }), { scope })
    const kind = `lost-timeout-${scope}`
    let swallowed: unknown
    const outcome = await db
      .withTenant('org_lost', async () => {
        await db.query('insert into events (kind) values ($1)', [kind])
        swallowed = await db
          .query({ text: 'select pg_sleep(1)', query_timeout: 50 })
          .then(() => 'the query succeeded', (e: unknown) => e)
        return 'looks fine'
      })
      .catch((e: unknown) => e)
    expect((swallowed as Error).message).toMatch(/timeout/i) // the timeout really fired
    const stored = await rowsOf(kind)
    if (scope === 'transaction') {
      expect(stored).toEqual([])
      expect(outcome).toBeInstanceOf(TransactionAbortedError)
      expect((outcome as Error).cause).toBe(swallowed) // the timeout that left the statement unanswered
    } else {
      expect(stored).toHaveLength(1)
      expect(outcome).toBe('looks fine')
    }
  })
})

/**
 * A proxy that lets a connection start, then ends it in the same TCP chunk as its first
 * ReadyForQuery with the FATAL a terminated backend sends (57P01). pg parses the whole chunk in
 * one go: pg-pool hands the client out on the ReadyForQuery, and the FATAL arrives before any
 * promise continuation could attach an 'error' listener.
 */
async function startTerminatingProxy(target: URL): Promise<{ url: string; close(): Promise<void> }> {
  const fatal = errorResponse('57P01', 'terminating connection due to administrator command')
  const server = net.createServer((client) => {
    const upstream = net.connect(Number(target.port), target.hostname)
    client.on('error', () => undefined)
    upstream.on('error', () => undefined)
    // Not pipe(): once upstream is destroyed, a piped client socket would stop reading, never see
    // the FIN, and keep the proxy from closing. What the client sends after that is dropped.
    client.on('data', (chunk: Buffer) => {
      if (!upstream.destroyed) upstream.write(chunk)
    })
    let ready = false
    upstream.on('data', (chunk: Buffer) => {
      if (ready) return
      const at = readyForQueryEnd(chunk)
      if (at === -1) {
        client.write(chunk)
        return
      }
      ready = true
      client.end(Buffer.concat([chunk.subarray(0, at), fatal]))
      upstream.destroy()
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const url = new URL(target)
  url.port = String((server.address() as net.AddressInfo).port)
  return { url: url.toString(), close: () => new Promise((resolve) => server.close(() => resolve())) }
}

/** The end of the first ReadyForQuery message ('Z') in a chunk of backend messages, or -1. */
function readyForQueryEnd(chunk: Buffer): number {
  let i = 0
  while (i + 5 <= chunk.length) {
    const length = chunk.readInt32BE(i + 1)
    if (chunk[i] === 0x5a) return i + 1 + length
    i += 1 + length
  }
  return -1
}

function errorResponse(code: string, message: string): Buffer {
  const fields = Buffer.concat(
    [['S', 'FATAL'], ['V', 'FATAL'], ['C', code], ['M', message]].map(([k, v]) => Buffer.from(`${k}${v}\0`)),
  )
  const body = Buffer.concat([fields, Buffer.from([0])])
  const head = Buffer.alloc(5)
  head.write('E', 0)
  head.writeInt32BE(body.length + 4, 1)
  return Buffer.concat([head, body])
}

describe('a backend terminated in the chunk that hands its connection out', () => {
  it('fails the scope and destroys the client, without an unhandled error event', async () => {
    const proxy = await startTerminatingProxy(new URL(t.appUrl))
    try {
      const pool = t.pool({ connectionString: proxy.url, max: 1 })
      const db = createTenantPool(pool)
      for (const run of [
        () => db.withTenant('org_1', () => db.query('select 1')),
        () => db.runWithTenant('org_1', () => db.query('select 1')),
      ]) {
        const err = await run().catch((e: unknown) => e)
        expect((err as Error).message).toMatch(/not queryable|terminat/)
      }
      expect(db.stats()).toMatchObject({ released: 0, destroyed: 2, destroyedBy: { broken: 2 } })
    } finally {
      await proxy.close()
    }
  })
})
