/**
 * `maxPerTenant`: one tenant's flood never holds more than its quota of connections, counted on
 * the SERVER (each statement of a tenant names its backend after the tenant it sees, through
 * `application_name`, which pg_stat_activity shows to the admin connection), so other tenants'
 * queries get through; every way a scope ends gives its slot back; bounded waits refuse with
 * TenantQuotaError and nothing runs; nested scopes take no second slot.
 */
import type http from 'node:http'
import express from 'express'
import Fastify from 'fastify'
import pg from 'pg'
import Cursor from 'pg-cursor'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { tenantMiddleware } from '../../src/adapters/express.js'
import { tenantPlugin } from '../../src/adapters/fastify.js'
import {
  createTenantPool,
  errorResponseOf,
  TenantQuotaError,
  type ScopeMode,
  type TenantPool,
  type TenantPoolOptions,
} from '../setup/pg-tenant.js'
import { createTestDatabase, type TestDatabase } from '../setup/fixtures.js'
import { listen } from '../setup/http.js'

let t: TestDatabase
beforeAll(async () => {
  t = await createTestDatabase()
})
afterAll(() => t.drop())

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))
const MARK = 'pgtq:'

/**
 * A statement that names its backend after the tenant it runs as (transaction-locally: the name
 * lasts as long as the statement's transaction, so as long as the tenant holds the connection),
 * then sleeps.
 */
const marked = (seconds: number) =>
  `select set_config('application_name', '${MARK}' || current_setting('app.tenant_id', true), true) as app, pg_sleep(${seconds})`

/** Backends per tenant right now, as the server sees them. */
async function backendsByTenant(): Promise<Map<string, number>> {
  const { rows } = await t.admin<{ app: string; n: string }>(
    `select application_name as app, count(*) as n from pg_stat_activity
      where datname = current_database() and application_name like '${MARK}%' group by 1`,
  )
  return new Map(rows.map((r) => [r.app.slice(MARK.length), Number(r.n)]))
}

/** Polls the server until stopped; `max(tenant)`: the most backends the tenant held at once. */
function watchBackends() {
  const most = new Map<string, number>()
  let running = true
  const loop = (async () => {
    while (running) {
      for (const [tenant, n] of await backendsByTenant()) most.set(tenant, Math.max(n, most.get(tenant) ?? 0))
      await sleep(10)
    }
  })()
  return {
    async stop(): Promise<(tenant: string) => number> {
      running = false
      await loop
      return (tenant) => most.get(tenant) ?? 0
    },
  }
}

async function until(condition: () => boolean | Promise<boolean>, what: string, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await sleep(5)
  }
}

type Db = TenantPool<pg.Pool>
const quotaDb = (max: number, options: TenantPoolOptions = {}): Db => createTenantPool(t.pool({ max }), options)

/** One operation of `tenant` of each kind pg-tenant has, in turn (k picks which), running `sql`. */
function operation(db: Db, tenant: string, k: number, sql: string): Promise<string> {
  const app = (result: unknown) => (result as { rows: Array<{ app: string }> }).rows[0]!.app
  switch (k % 5) {
    case 0: // a lone query
      return db.runWithTenant(tenant, () => db.query(sql)).then(app)
    case 1: // a withTenant scope
      return db.withTenant(tenant, async () => app(await db.query(sql)))
    case 2: // db.transaction under runWithTenant
      return db.runWithTenant(tenant, () => db.transaction(async () => app(await db.query(sql))))
    case 3: // an ORM's client
      return db.runWithTenant(tenant, async () => {
        const client = await db.pool.connect()
        try {
          return app(await client.query(sql))
        } finally {
          client.release()
        }
      })
    default: // db.pool.query
      return db.runWithTenant(tenant, () => db.pool.query(sql)).then(app)
  }
}

/**
 * The flood: `count` slow operations of org_flood, of every kind, at once; meanwhile org_quiet
 * runs 20 one-row queries one after another, starting once the flood queues.
 */
async function flood(db: Db, count: number, queued: () => boolean) {
  const started = performance.now()
  let floodDone = 0
  const floodOps = Array.from({ length: count }, (_, k) => operation(db, 'org_flood', k, marked(0.1)))
  const floodAll = Promise.all(floodOps).then((apps) => {
    floodDone = performance.now()
    return apps
  })
  await until(queued, 'the flood to queue')
  const latencies: number[] = []
  for (let i = 0; i < 20; i++) {
    const sent = performance.now()
    const { rows } = await db.runWithTenant('org_quiet', () => db.query<{ t: string }>("select current_setting('app.tenant_id') as t"))
    latencies.push(performance.now() - sent)
    expect(rows[0]!.t).toBe('org_quiet')
  }
  const quietDone = performance.now()
  const apps = await floodAll
  return { apps, latencies, quietDone, floodDone, floodMs: floodDone - started }
}

describe('a flooding tenant', () => {
  it.each<ScopeMode>(['transaction', 'session'])('never holds more than maxPerTenant connections on the server, and another tenant gets through meanwhile (scope %s)', async (scope) => {
    const db = quotaDb(4, { maxPerTenant: 2, scope })
    const watch = watchBackends()
    let busiest: unknown
    const run = await flood(db, 30, () => {
      const quota = db.stats().quota!
      if (quota.waiting > 0) busiest = quota.busiest[0]
      return quota.waiting > 0
    })
    const most = await watch.stop()

    // Every queued operation of the flood completed, each as org_flood.
    expect(run.apps).toEqual(Array(30).fill(`${MARK}org_flood`))
    // On the server: the flood used its quota, and never more.
    expect(most('org_flood')).toBe(2)
    // While it queued, db.stats() said who: org_flood holding 2, the rest of its work waiting.
    expect(busiest).toMatchObject({ tenant: 'org_flood', held: 2 })
    expect((busiest as { waiting: number }).waiting).toBeGreaterThan(0)
    // The quiet tenant's 20 queries all finished before the flood did, none of them waiting long.
    expect(run.quietDone).toBeLessThan(run.floodDone)
    expect(Math.max(...run.latencies)).toBeLessThan(run.floodMs / 3)
    expect(db.stats().quota).toMatchObject({ held: 0, waiting: 0, refused: 0, busiest: [] })
    await db.end()
  })

  it('takes the whole pool without maxPerTenant: the quiet tenant waits behind the flood (the control)', async () => {
    const db = quotaDb(4)
    const run = await flood(db, 30, () => db.pool.waitingCount > 0)
    expect(run.apps).toHaveLength(30)
    // Its first query queued behind most of the flood in the pool's own queue.
    expect(run.latencies[0]).toBeGreaterThan(run.floodMs / 2)
    expect(db.stats().quota).toBeUndefined()
    await db.end()
  })
})

/**
 * After whatever happened: the gate holds nothing, org_a can again hold exactly `quota` connections
 * at once (it asks for twice that), seen on the server, and the gate holds nothing once they are done.
 */
async function expectFullQuota(db: Db, quota: number): Promise<void> {
  // A db.pool.connect() client's release() returns at once, while its connection is still being
  // cleaned: its slot is held until the connection is back in the pool (or destroyed).
  await until(() => db.stats().quota!.held === 0, 'every slot to be given back', 5_000)
  expect(db.stats().quota).toMatchObject({ held: 0, waiting: 0 })
  const watch = watchBackends()
  const apps = await Promise.all(Array.from({ length: quota * 2 }, () => db.runWithTenant('org_a', () => db.query(marked(0.3)))))
  const most = await watch.stop()
  expect(apps).toHaveLength(quota * 2)
  expect(most('org_a')).toBe(quota)
  expect(db.stats().quota).toMatchObject({ held: 0, waiting: 0 })
}

/** Terminates every backend that runs a marked statement of `tenant` now. */
async function terminateTenantBackends(tenant: string): Promise<number> {
  const { rows } = await t.admin<{ pid: number }>(`select pid from pg_stat_activity where application_name = $1`, [`${MARK}${tenant}`])
  for (const { pid } of rows) await t.admin('select pg_terminate_backend($1)', [pid])
  return rows.length
}

describe('the quota is given back on every way out', () => {
  const QUOTA = 2

  it('after SQL errors, in every kind of work, with waiters queued behind them', async () => {
    const db = quotaDb(4, { maxPerTenant: QUOTA })
    const outcomes = await Promise.allSettled(Array.from({ length: 10 }, (_, k) => operation(db, 'org_a', k, 'select 1/0 as app')))
    expect(outcomes.every((o) => o.status === 'rejected' && /division by zero/.test(String(o.reason)))).toBe(true)
    await expectFullQuota(db, QUOTA)
    await db.end()
  })

  it('after callbacks that throw, with and without a query sent, and a client released with an error', async () => {
    const db = quotaDb(4, { maxPerTenant: QUOTA })
    const boom = new Error('boom')
    const thrown = await Promise.allSettled([
      ...Array.from({ length: 4 }, () =>
        db.withTenant('org_a', async () => {
          await db.query('select 1')
          throw boom
        }),
      ),
      db.withTenant('org_a', () => {
        throw boom
      }),
      db.runWithTenant('org_a', () =>
        db.transaction(async () => {
          await db.query('select 1')
          throw boom
        }),
      ),
      db.runWithTenant('org_a', async () => {
        const client = await db.pool.connect()
        await client.query('select 1')
        client.release(boom) // destroys the connection, as pg does
        throw boom
      }),
    ])
    expect(thrown.map((o) => (o.status === 'rejected' ? o.reason : o.value))).toEqual(Array(7).fill(boom))
    await expectFullQuota(db, QUOTA)
    await db.end()
  })

  it('after connections lost mid-statement (pg_terminate_backend), in a lone query, a scope and a client', async () => {
    const db = quotaDb(4, { maxPerTenant: QUOTA })
    const all = Promise.allSettled([
      db.runWithTenant('org_a', () => db.query(marked(30))),
      db.withTenant('org_a', () => db.query(marked(30))),
      db.runWithTenant('org_a', async () => {
        const client = await db.pool.connect()
        try {
          return await client.query(marked(30))
        } finally {
          client.release()
        }
      }),
    ])
    // Two at a time hold the quota: terminate them as they come, until all three failed.
    let settled = false
    void all.then(() => (settled = true))
    let terminated = 0
    while (!settled) {
      terminated += await terminateTenantBackends('org_a')
      await sleep(20)
    }
    const outcomes = await all
    expect(terminated).toBeGreaterThanOrEqual(3)
    expect(outcomes.map((o) => o.status)).toEqual(['rejected', 'rejected', 'rejected'])
    await expectFullQuota(db, QUOTA)
    await db.end()
  })

  it("after timeouts: a statement's query_timeout, and the pool's connectionTimeoutMillis", async () => {
    const db = quotaDb(4, { maxPerTenant: QUOTA })
    const timedOut = await Promise.allSettled(
      Array.from({ length: 4 }, () => db.runWithTenant('org_a', () => db.query({ text: 'select pg_sleep(5)', query_timeout: 50 }))),
    )
    expect(timedOut.every((o) => o.status === 'rejected' && /timeout/i.test(String(o.reason)))).toBe(true)
    await expectFullQuota(db, QUOTA)
    await db.end()

    // A pool of 1 held by another tenant: org_a passes its quota, then the pool's checkout times out.
    const small = createTenantPool(t.pool({ max: 1, connectionTimeoutMillis: 50 }), { maxPerTenant: 1 })
    let release!: () => void
    const held = small.withTenant('org_other', async () => {
      await small.query('select 1')
      await new Promise<void>((resolve) => (release = resolve))
    })
    await until(() => release !== undefined && small.stats().quota!.held === 1, 'org_other to hold the pool')
    const checkout = await small.runWithTenant('org_a', () => small.query('select 1')).catch((e: unknown) => e)
    expect(String(checkout)).toMatch(/timeout/i)
    expect(checkout).not.toBeInstanceOf(TenantQuotaError)
    expect(small.stats().quota).toMatchObject({ held: 1, busiest: [{ tenant: 'org_other', held: 1, waiting: 0 }] })
    release()
    await held
    const { rows } = await small.runWithTenant('org_a', () => small.query("select current_setting('app.tenant_id') as t"))
    expect(rows).toEqual([{ t: 'org_a' }])
    expect(small.stats().quota).toMatchObject({ held: 0, waiting: 0 })
    await small.end()
  })
})

describe('bounded waits', () => {
  const count = async (kind: string) =>
    Number((await t.admin<{ n: string }>('select count(*) as n from events where kind = $1', [kind])).rows[0]!.n)

  /** Holds org_a's only slot (a scope with a statement sent) until the returned function is called. */
  async function holdSlot(db: Db): Promise<() => Promise<void>> {
    let release!: () => void
    const held = db.withTenant('org_a', async () => {
      await db.query('select 1')
      await new Promise<void>((resolve) => (release = resolve))
    })
    await until(() => release !== undefined && db.stats().quota!.held === 1, 'org_a to hold its slot')
    return async () => {
      release()
      await held
    }
  }

  const insert = (db: Db, kind: string) => db.query('insert into events (kind) values ($1)', [kind])

  it('maxWaitMs: every kind of work refuses with TenantQuotaError after the wait, and nothing of it runs', async () => {
    const db = quotaDb(4, { maxPerTenant: { connections: 1, maxWaitMs: 100 } })
    const done = await holdSlot(db)
    const started = performance.now()
    const refusals = await Promise.allSettled([
      db.runWithTenant('org_a', () => insert(db, 'refused-wait')),
      db.withTenant('org_a', () => insert(db, 'refused-wait')),
      db.runWithTenant('org_a', () => db.transaction(() => insert(db, 'refused-wait'))),
      db.runWithTenant('org_a', async () => {
        const client = await db.pool.connect() // refused here: no client is handed out
        await client.query('insert into events (kind) values ($1)', ['refused-wait'])
      }),
      db.runWithTenant('org_a', () => db.pool.query('insert into events (kind) values ($1)', ['refused-wait'])),
    ])
    expect(performance.now() - started).toBeGreaterThanOrEqual(95)
    for (const outcome of refusals) {
      expect(outcome.status).toBe('rejected')
      const err = (outcome as PromiseRejectedResult).reason as TenantQuotaError
      expect(err).toBeInstanceOf(TenantQuotaError)
      expect(err).toMatchObject({ code: 'TENANT_QUOTA_EXCEEDED', reason: 'timeout', status: 429, connections: 1 })
      expect(errorResponseOf(err)).toMatchObject({ status: 429, headers: { 'Retry-After': '1' } })
    }
    expect(db.stats().quota).toMatchObject({ held: 1, waiting: 0, refused: 5 })
    // Another tenant was never held back.
    await db.withTenant('org_b', () => insert(db, 'not-refused'))
    await done()
    expect(await count('refused-wait')).toBe(0)
    expect(await count('not-refused')).toBe(1)
    // The slot is free again: org_a runs.
    await db.runWithTenant('org_a', () => insert(db, 'after-wait'))
    expect(await count('after-wait')).toBe(1)
    expect(db.stats().quota).toMatchObject({ held: 0, waiting: 0, refused: 5 })
    await db.end()
  })

  it('maxWaiting: past the queue length an operation is refused at once; 0 lets none wait', async () => {
    const db = quotaDb(4, { maxPerTenant: { connections: 1, maxWaiting: 2 } })
    const done = await holdSlot(db)
    const queued = [db.runWithTenant('org_a', () => insert(db, 'queued')), db.runWithTenant('org_a', () => insert(db, 'queued'))]
    await until(() => db.stats().quota!.waiting === 2, 'two waiters')
    const refused = await db.runWithTenant('org_a', () => insert(db, 'refused-queue')).catch((e: unknown) => e)
    expect(refused).toBeInstanceOf(TenantQuotaError)
    expect(refused).toMatchObject({ reason: 'queue-full' })
    await done()
    await Promise.all(queued)
    expect(await count('queued')).toBe(2)
    expect(await count('refused-queue')).toBe(0)
    await db.end()

    const strict = quotaDb(4, { maxPerTenant: { connections: 1, maxWaiting: 0 } })
    const doneStrict = await holdSlot(strict)
    const started = performance.now()
    const now = await strict.withTenant('org_a', () => insert(strict, 'refused-now')).catch((e: unknown) => e)
    expect(now).toMatchObject({ code: 'TENANT_QUOTA_EXCEEDED', reason: 'queue-full' })
    expect(performance.now() - started).toBeLessThan(1000) // not a wait: refused at once
    await doneStrict()
    expect(await count('refused-now')).toBe(0)
    expect(strict.stats().quota).toMatchObject({ held: 0, waiting: 0, refused: 1 })
    await strict.end()
  })
})

describe('a cursor', () => {
  it('holds its slot until pg is done with it, then gives it back', async () => {
    const db = quotaDb(4, { maxPerTenant: 1 })
    await db.runWithTenant('org_a', async () => {
      const cursor = await db.query(new Cursor("select current_setting('app.tenant_id') as t from generate_series(1, 3)"))
      expect(db.stats().quota).toMatchObject({ held: 1 })
      // Meanwhile org_a's next statement waits for the cursor's slot.
      let later = false
      const next = db.query('select 1').then(() => (later = true))
      const rows = await new Promise<unknown[]>((resolve, reject) => cursor.read(10, (err, r) => (err ? reject(err) : resolve(r))))
      expect(rows).toEqual([{ t: 'org_a' }, { t: 'org_a' }, { t: 'org_a' }])
      expect(later).toBe(false)
      await new Promise<void>((resolve, reject) => cursor.close((err) => (err ? reject(err) : resolve())))
      await next
      expect(later).toBe(true)
    })
    await until(() => db.stats().quota!.held === 0, 'the cursor slot to be given back')
    expect(db.stats().quota).toMatchObject({ held: 0, waiting: 0 })
    await db.end()
  })
})

describe('over HTTP', () => {
  /** The app's own frameworks' default error handlers answer 429 with Retry-After: 1. */
  async function overQuota(handler: http.RequestListener, db: Db): Promise<void> {
    let release!: () => void
    const held = db.withTenant('org_a', async () => {
      await db.query('select 1')
      await new Promise<void>((resolve) => (release = resolve))
    })
    await until(() => release !== undefined && db.stats().quota!.held === 1, 'org_a to hold its slot')
    const server = await listen(handler)
    try {
      const refused = await fetch(`${server.url}/tenant`, { headers: { 'x-org-id': 'org_a' } })
      await refused.text()
      expect(refused.status).toBe(429)
      expect(refused.headers.get('retry-after')).toBe('1')
      const other = await fetch(`${server.url}/tenant`, { headers: { 'x-org-id': 'org_b' } })
      expect(other.status).toBe(200)
      expect(await other.json()).toEqual({ t: 'org_b' })
    } finally {
      release()
      await held
      await server.close()
    }
  }
  const tenantRoute = async (db: Db) =>
    (await db.query<{ t: string }>("select current_setting('app.tenant_id') as t")).rows[0]

  it('Express answers a refused request 429 with Retry-After', async () => {
    const db = quotaDb(4, { maxPerTenant: { connections: 1, maxWaiting: 0 } })
    const app = express()
    app.use(tenantMiddleware(db, { resolve: (req: express.Request) => req.get('x-org-id') }))
    app.get('/tenant', (_req, res, next) => {
      tenantRoute(db).then((row) => res.json(row), next)
    })
    await overQuota(app as unknown as http.RequestListener, db)
    await db.end()
  })

  it('Fastify answers a refused request 429 with Retry-After', async () => {
    const db = quotaDb(4, { maxPerTenant: { connections: 1, maxWaiting: 0 } })
    const app = Fastify()
    await app.register(tenantPlugin, { db, resolve: (request) => request.headers['x-org-id'] })
    app.get('/tenant', () => tenantRoute(db))
    await app.ready()
    await overQuota((req, res) => app.routing(req, res), db)
    await app.close()
    await db.end()
  })
})

describe('nested work of one tenant', () => {
  it('takes no second slot: a quota of 1 never deadlocks a scope on itself', async () => {
    const db = quotaDb(4, { maxPerTenant: { connections: 1, maxWaitMs: 5_000 } })
    const held: number[] = []
    const seen = () => held.push(db.stats().quota!.held)
    const pids = await db.runWithTenant('org_a', () =>
      db.withTenant('org_a', async () => {
        const pid = async () => (await db.query<{ pid: number }>('select pg_backend_pid() as pid')).rows[0]!.pid
        const found = [await pid()]
        seen()
        found.push(await db.withTenant('org_a', pid)) // joins
        found.push(await db.transaction(pid)) // a savepoint
        found.push(await db.runWithTenant('org_a', pid)) // the scope's client
        const client = await db.pool.connect() // the scope's own client
        found.push((await client.query('select pg_backend_pid() as pid')).rows[0].pid)
        client.release()
        found.push(((await db.pool.query('select pg_backend_pid() as pid')) as { rows: Array<{ pid: number }> }).rows[0]!.pid)
        seen()
        return found
      }),
    )
    expect(new Set(pids).size).toBe(1)
    expect(held).toEqual([1, 1])
    expect(db.stats().quota).toMatchObject({ held: 0, waiting: 0, refused: 0 })
    await db.end()
  })
})
