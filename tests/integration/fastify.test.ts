/**
 * `pg-tenant/fastify` with real Fastify 5 servers on loopback, real HTTP (node's fetch) and a real
 * PostgreSQL where a non-owner login role is subject to RLS.
 */
import http from 'node:http'
import { drizzle } from 'drizzle-orm/node-postgres'
import { pgTable, text } from 'drizzle-orm/pg-core'
import Fastify, { type FastifyInstance } from 'fastify'
import pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { httpStatusOf, tenantPlugin } from '../../src/adapters/fastify.js'
import { createTenantPool, isRlsViolation, TenantRequiredError, type TenantPool } from '../setup/pg-tenant.js'
import { createTestDatabase, type TestDatabase } from '../setup/fixtures.js'
import { call, callVia, jitter, pooled, shuffled, sleep } from '../setup/http.js'
import { callRepeated } from './example-checks.js'

const TENANTS = ['org_a', 'org_b', 'org_c', 'org_d']

let t: TestDatabase
let db: TenantPool
beforeAll(async () => {
  t = await createTestDatabase()
  db = createTenantPool(t.pool({ max: 4 }), { roles: t.roles.sales })
  await Promise.all(
    t.roles.sales.map((role) =>
      db.withTenant({ role }, () => db.query('insert into clients (name) values ($1)', [`of ${role}`])),
    ),
  )
})
afterAll(() => t.drop())

interface TestApp {
  readonly app: FastifyInstance
  readonly url: string
  /** How many requests reached a route handler. */
  readonly hits: () => number
}

async function startApp(options: { required?: boolean } = {}): Promise<TestApp> {
  let hits = 0
  const app = Fastify()
  await app.register(tenantPlugin, {
    db,
    required: options.required ?? true,
    resolve: (request) => {
      if (request.headers['x-resolver-throws']) {
        throw Object.assign(new Error('resolver failed'), { statusCode: 418 })
      }
      const role = request.headers['x-sales']
      if (role !== undefined) return { role: String(role) }
      const id = request.headers['x-org-id']
      return request.headers['x-async-resolve'] ? sleep(1).then(() => id) : id
    },
  })
  // The application's own hooks, added after the plugin, see the tenant in every phase, before
  // and after the body is parsed.
  const seen = (request: { headers: Record<string, unknown> }, phase: string) => {
    ;(request as unknown as Record<string, unknown>)[`seen_${phase}`] = db.currentTenant() ?? null
  }
  app.addHook('onRequest', async (request) => seen(request, 'onRequest'))
  app.addHook('preParsing', async (request) => seen(request, 'preParsing'))
  app.addHook('preValidation', async (request) => seen(request, 'preValidation'))
  app.addHook('preHandler', async (request) => {
    await jitter(2) // an async hop before the handler
    seen(request, 'preHandler')
    hits++
  })
  const phases = (request: object) =>
    Object.fromEntries(
      ['onRequest', 'preParsing', 'preValidation', 'preHandler'].map((p) => [
        p,
        (request as Record<string, unknown>)[`seen_${p}`],
      ]),
    )

  app.get<{ Querystring: { kind: string } }>('/events', async (request) => {
    await jitter()
    const { rows } = await db.query<{ org_id: string; payload: string }>(
      'select org_id, payload from events where kind = $1',
      [request.query.kind],
    )
    await jitter()
    return { tenant: db.currentTenant(), requestTenant: request.tenant, phases: phases(request), rows }
  })
  app.post<{ Body: { kind: string; payload: string } }>('/events', async (request) => {
    const { kind, payload } = request.body
    await jitter()
    const { rows } = await db.query<{ org_id: string; setting: string }>(
      `insert into events (kind, payload) values ($1, $2)
       returning org_id, current_setting('app.tenant_id', true) as setting`,
      [kind, payload],
    )
    return {
      tenant: db.currentTenant(),
      requestTenant: request.tenant,
      phases: phases(request),
      body: request.body,
      ...rows[0],
    }
  })
  app.post<{ Body: { org_id: string } }>('/events/forged', async (request) => {
    await db.query(`insert into events (org_id, kind) values ($1, 'forged')`, [request.body.org_id])
    return { ok: true }
  })
  app.post<{ Body: { kind: string; n: number; fail?: boolean } }>('/batch', async (request) => {
    const { kind, n, fail } = request.body
    const ids = await db.transaction(async () => {
      const out: string[] = []
      for (let i = 0; i < n; i++) {
        const { rows } = await db.query<{ org_id: string }>(
          'insert into events (kind, payload) values ($1, $2) returning org_id',
          [kind, String(i)],
        )
        out.push(rows[0]!.org_id)
        await jitter(2)
      }
      if (fail) throw new Error('batch failed after the inserts')
      return out
    })
    return { tenant: db.currentTenant(), ids }
  })
  app.get('/clients', async () => {
    const { rows } = await db.query('select salesperson, current_user::text as who from clients')
    await jitter()
    return { tenant: db.currentTenant(), rows }
  })
  app.get('/boom/sync', () => {
    throw new Error('sync boom')
  })
  app.get('/boom/async', async () => {
    await jitter()
    throw new Error('async boom')
  })
  app.get('/whoami', async (request) => ({
    tenant: db.currentTenant() ?? null,
    requestTenant: request.tenant ?? null,
    port: request.raw.socket.remotePort,
  }))
  app.get('/whoami/db', async () => {
    const { rows } = await db.query(`select current_setting('app.tenant_id', true) as setting`)
    return { tenant: db.currentTenant() ?? null, setting: rows[0]?.setting }
  })

  app.setErrorHandler((err: Error & { statusCode?: number; code?: string }, request, reply) => {
    const status = isRlsViolation(err) ? 403 : (err.statusCode ?? 500)
    reply.code(status).send({
      code: err.code ?? null,
      message: err.message,
      tenant: db.currentTenant() ?? null,
      requestTenant: request.tenant ?? null,
      port: request.raw.socket.remotePort,
    })
  })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const { port } = app.server.address() as { port: number }
  return { app, url: `http://127.0.0.1:${port}`, hits: () => hits }
}

describe('tenantPlugin', () => {
  let s: TestApp
  beforeAll(async () => {
    s = await startApp()
  })
  afterAll(() => s.app.close())

  it('serves 420 interleaved reads and JSON writes of 4 tenants with zero foreign rows', async () => {
    const kind = 'mass fastify'
    for (const tenant of TENANTS) {
      for (let i = 0; i < 2; i++) {
        const r = await call(`${s.url}/events`, { headers: { 'x-org-id': tenant }, json: { kind, payload: tenant } })
        expect(r.status).toBe(200)
      }
    }
    const tasks = shuffled(
      Array.from({ length: 420 }, (_, i) => {
        const tenant = TENANTS[i % TENANTS.length]!
        const headers: Record<string, string> = { 'x-org-id': tenant }
        if (i % 5 === 0) headers['x-async-resolve'] = '1'
        const write = i % 3 === 0
        return async () => {
          const r = write
            ? await call(`${s.url}/events`, { headers, json: { kind, payload: tenant } })
            : await call(`${s.url}/events?kind=${encodeURIComponent(kind)}`, { headers })
          return { tenant, write, ...r }
        }
      }),
    )
    const results = await pooled(tasks, 32)

    let foreign = 0
    let seen = 0
    const writes = new Map(TENANTS.map((id) => [id, 2]))
    for (const r of results) {
      expect(r.status, JSON.stringify(r.body)).toBe(200)
      expect(r.body.tenant).toBe(r.tenant)
      expect(r.body.requestTenant).toBe(r.tenant)
      // Bound in every hook of the application's, before and after body parsing.
      expect(r.body.phases).toEqual({
        onRequest: r.tenant,
        preParsing: r.tenant,
        preValidation: r.tenant,
        preHandler: r.tenant,
      })
      if (r.write) {
        writes.set(r.tenant, writes.get(r.tenant)! + 1)
        expect(r.body.body).toEqual({ kind, payload: r.tenant })
        expect(r.body.org_id).toBe(r.tenant)
        expect(r.body.setting).toBe(r.tenant)
      } else {
        const rows = r.body.rows as Array<{ org_id: string; payload: string }>
        seen += rows.length
        foreign += rows.filter((row) => row.org_id !== r.tenant || row.payload !== r.tenant).length
      }
    }
    expect(foreign).toBe(0)
    expect(seen).toBeGreaterThan(280 * 2)

    // Past RLS, as superuser: each tenant holds exactly the rows its requests wrote.
    const { rows } = await t.admin<{ org_id: string; n: string; wrong: string }>(
      `select org_id, count(*) n, count(*) filter (where org_id <> payload) wrong
         from events where kind = $1 group by org_id order by org_id`,
      [kind],
    )
    expect(rows.map((r) => [r.org_id, Number(r.n), Number(r.wrong)])).toEqual(
      TENANTS.map((id) => [id, writes.get(id)!, 0]),
    )
  })

  it('binds the tenant for the handler of a POST whose JSON body arrives late', async () => {
    // The body is sent in two chunks with a pause between them, so it is parsed on a later
    // 'data'/'end' event than the one that started the request.
    const body = JSON.stringify({ kind: 'slow body', payload: 'org_b' })
    const reply = await new Promise<{ status: number; body: any }>((resolve, reject) => {
      const req = http.request(`${s.url}/events`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), 'x-org-id': 'org_b' },
      })
      req.on('response', (res) => {
        let text = ''
        res.on('data', (c: Buffer) => (text += c))
        res.on('end', () => resolve({ status: res.statusCode!, body: JSON.parse(text) }))
      })
      req.on('error', reject)
      req.write(body.slice(0, 10))
      setTimeout(() => req.end(body.slice(10)), 50)
    })
    expect(reply.status).toBe(200)
    expect(reply.body).toMatchObject({ tenant: 'org_b', org_id: 'org_b', setting: 'org_b' })
    expect(reply.body.phases.preHandler).toBe('org_b')
  })

  it('sets request.tenant to what resolve returned', async () => {
    const role = t.roles.sales[0]!
    const r = await call(`${s.url}/whoami`, { headers: { 'x-sales': role } })
    expect(r.body).toMatchObject({ tenant: { role }, requestTenant: { role } })
    const id = await call(`${s.url}/whoami`, { headers: { 'x-org-id': 'org_c' } })
    expect(id.body).toMatchObject({ tenant: 'org_c', requestTenant: 'org_c' })
  })

  it('keeps role-per-salesperson tenants apart (SET ROLE model)', async () => {
    const results = await pooled(
      shuffled(Array.from({ length: 60 }, (_, i) => t.roles.sales[i % t.roles.sales.length]!)).map(
        (role) => async () => ({ role, ...(await call(`${s.url}/clients`, { headers: { 'x-sales': role } })) }),
      ),
      12,
    )
    let seen = 0
    for (const r of results) {
      expect(r.status).toBe(200)
      expect(r.body.tenant).toEqual({ role: r.role })
      seen += r.body.rows.length
      for (const row of r.body.rows) expect(row).toEqual({ salesperson: r.role, who: r.role })
    }
    expect(seen).toBeGreaterThanOrEqual(60)
  })

  it('answers 401 without a tenant, 400 for an invalid one, 403 for a role off the allow-list', async () => {
    const before = s.hits()
    const none = await call(`${s.url}/events?kind=x`)
    expect(none.status).toBe(401)
    expect(none.body.code).toBe('TENANT_REQUIRED')
    const noneWithBody = await call(`${s.url}/events`, { json: { kind: 'x', payload: 'x' } })
    expect(noneWithBody.status).toBe(401)

    const tooLong = await call(`${s.url}/events?kind=x`, { headers: { 'x-org-id': 'o'.repeat(300) } })
    expect(tooLong.status).toBe(400)
    expect(tooLong.body.code).toBe('INVALID_TENANT')
    const empty = await call(`${s.url}/events`, { headers: { 'x-org-id': '' }, json: { kind: 'x' } })
    expect(empty.status).toBe(400)

    const role = await call(`${s.url}/clients`, { headers: { 'x-sales': t.roles.notGranted } })
    expect(role.status).toBe(403)
    expect(role.body.code).toBe('ROLE_NOT_ALLOWED')

    const thrown = await call(`${s.url}/events?kind=x`, {
      headers: { 'x-org-id': 'org_a', 'x-resolver-throws': '1' },
    })
    expect(thrown.status).toBe(418)
    expect(thrown.body.message).toBe('resolver failed')

    expect(s.hits()).toBe(before)
    const { rows } = await t.admin(`select count(*)::int n from events where kind = 'x'`)
    expect(rows[0].n).toBe(0)
  })

  it("refuses with 400 a tenant from a header sent twice (Node joins it as 'a, b'), not one that contains ', '", async () => {
    const before = s.hits()
    // Two header lines: request.headers['x-org-id'] is 'org_a, org_b', and the resolver returns it.
    const twice = await callRepeated(`${s.url}/whoami`, { 'x-org-id': ['org_a', 'org_b'] })
    expect(twice).toMatchObject({ status: 400, body: { code: 'INVALID_TENANT', tenant: null, requestTenant: null } })
    expect(twice.body.message).toMatch(/x-org-id header, which the request sent more than once/)
    const async = await callRepeated(`${s.url}/whoami`, { 'x-org-id': ['org_a', 'org_b'], 'x-async-resolve': '1' })
    expect(async).toMatchObject({ status: 400, body: { code: 'INVALID_TENANT' } })
    const writes = await callRepeated(`${s.url}/events`, { 'x-org-id': ['org_a', 'org_b'] }, { kind: 'x', payload: 'x' })
    expect(writes).toMatchObject({ status: 400, body: { code: 'INVALID_TENANT' } })
    // A role from a repeated header: 400 as well, before the allow-list is asked.
    const roles = await callRepeated(`${s.url}/clients`, { 'x-sales': [t.roles.sales[0]!, t.roles.sales[1]!] })
    expect(roles).toMatchObject({ status: 400, body: { code: 'INVALID_TENANT' } })
    expect(s.hits()).toBe(before)

    // One header line whose value holds ', ' is a tenant id like any other.
    const once = await call(`${s.url}/whoami/db`, { headers: { 'x-org-id': 'org_a, org_b' } })
    expect(once).toMatchObject({ status: 200, body: { tenant: 'org_a, org_b', setting: 'org_a, org_b' } })
    // Another header sent twice does not matter.
    const other = await callRepeated(`${s.url}/whoami`, { 'x-org-id': 'org_a', 'x-trace': ['1', '2'] })
    expect(other).toMatchObject({ status: 200, body: { tenant: 'org_a', requestTenant: 'org_a' } })
    const { rows } = await t.admin(`select count(*)::int n from events where kind = 'x'`)
    expect(rows[0].n).toBe(0)
  })

  it("answers 401/400 with Fastify's default error handler too", async () => {
    const app = Fastify()
    await app.register(tenantPlugin, { db, resolve: (request) => request.headers['x-org-id'] })
    app.get('/', async () => 'ok')
    await app.listen({ port: 0, host: '127.0.0.1' })
    try {
      const url = `http://127.0.0.1:${(app.server.address() as { port: number }).port}/`
      expect(await call(url)).toMatchObject({ status: 401, body: { statusCode: 401, code: 'TENANT_REQUIRED' } })
      expect(await call(url, { headers: { 'x-org-id': '' } })).toMatchObject({
        status: 400,
        body: { code: 'INVALID_TENANT' },
      })
      expect((await fetch(url, { headers: { 'x-org-id': 'org_a' } })).status).toBe(200)
    } finally {
      await app.close()
    }
  })

  it('answers a write refused by an RLS policy with 403 through isRlsViolation', async () => {
    const r = await call(`${s.url}/events/forged`, { headers: { 'x-org-id': 'org_a' }, json: { org_id: 'org_b' } })
    expect(r.status).toBe(403)
    expect(r.body.code).toBe('42501')
    const { rows } = await t.admin(`select count(*)::int n from events where kind = 'forged'`)
    expect(rows[0].n).toBe(0)
  })

  it('runs db.transaction in a handler: committed as the tenant, or rolled back whole', async () => {
    const kind = 'batch fastify'
    const ok = await call(`${s.url}/batch`, { headers: { 'x-org-id': 'org_c' }, json: { kind, n: 3 } })
    expect(ok.status).toBe(200)
    expect(ok.body).toEqual({ tenant: 'org_c', ids: ['org_c', 'org_c', 'org_c'] })
    const failed = await call(`${s.url}/batch`, {
      headers: { 'x-org-id': 'org_d' },
      json: { kind, n: 3, fail: true },
    })
    expect(failed.status).toBe(500)
    const { rows } = await t.admin<{ org_id: string; n: number }>(
      'select org_id, count(*)::int n from events where kind = $1 group by org_id',
      [kind],
    )
    expect(rows).toEqual([{ org_id: 'org_c', n: 3 }])
  })
})

describe('tenantPlugin with required: false', () => {
  let s: TestApp
  beforeAll(async () => {
    s = await startApp({ required: false })
  })
  afterAll(() => s.app.close())

  it('lets a request without a tenant through, and its queries fail closed', async () => {
    expect(await call(`${s.url}/whoami`)).toMatchObject({ status: 200, body: { tenant: null, requestTenant: null } })
    const query = await call(`${s.url}/whoami/db`)
    expect(query.status).toBe(401)
    expect(query.body.code).toBe('TENANT_REQUIRED')
    expect((await call(`${s.url}/whoami/db`, { headers: { 'x-org-id': 'org_b' } })).body).toEqual({
      tenant: 'org_b',
      setting: 'org_b',
    })
  })

  it('does not leak the tenant of a request whose handler threw into the next one', async () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 })
    const ports = new Set<number>()
    for (let i = 0; i < 20; i++) {
      const path = i % 2 === 0 ? '/boom/sync' : '/boom/async'
      const boom = await callVia(agent, `${s.url}${path}`, { 'x-org-id': 'org_a' })
      expect(boom.status).toBe(500)
      expect(boom.body.requestTenant).toBe('org_a')
      const next = await callVia(agent, `${s.url}/whoami`)
      expect(next.body).toMatchObject({ tenant: null, requestTenant: null })
      const query = await callVia(agent, `${s.url}/whoami/db`)
      expect(query.status).toBe(401)
      expect(query.body.tenant).toBeNull()
      ports.add(boom.body.port).add(next.body.port).add(query.body.port)
    }
    agent.destroy()
    expect(ports.size).toBe(1) // one keep-alive connection served them all

    const results = await pooled(
      shuffled(Array.from({ length: 120 }, (_, i) => i)).map((i) => () =>
        i % 2 === 0
          ? call(`${s.url}/boom/async`, { headers: { 'x-org-id': TENANTS[i % 4]! } })
          : call(`${s.url}/whoami`),
      ),
      16,
    )
    expect(results.filter((r) => r.status === 500)).toHaveLength(60)
    const bare = results.filter((r) => r.status === 200)
    expect(bare).toHaveLength(60)
    expect(bare.every((r) => r.body.tenant === null && r.body.requestTenant === null)).toBe(true)
  })
})

describe('tenantPlugin options', () => {
  it('ends the pool on close with closePool: true, and not without it', async () => {
    const kept = t.pool({ max: 1 })
    const keptDb = createTenantPool(kept)
    const a = Fastify()
    await a.register(tenantPlugin, { db: keptDb, resolve: () => 'org_a' })
    await a.ready()
    await a.close()
    expect(kept.ended).toBe(false)

    const closed = t.pool({ max: 1 })
    const closedDb = createTenantPool(closed)
    const b = Fastify()
    await b.register(tenantPlugin, { db: closedDb, resolve: () => 'org_a', closePool: true })
    b.get('/', async () => (await closedDb.query('select 1 as one')).rows)
    expect((await b.inject('/')).json()).toEqual([{ one: 1 }])
    await b.close()
    expect(closed.ended).toBe(true)
  })

  it('is registered under the name pg-tenant and refuses unusable options', async () => {
    const app = Fastify()
    await app.register(tenantPlugin, { db, resolve: () => undefined })
    await app.ready()
    expect(app.hasPlugin('pg-tenant')).toBe(true)
    expect(app.hasRequestDecorator('tenant')).toBe(true)
    await app.close()

    for (const [options, message] of [
      [{ db: {}, resolve: () => 'x' }, /db must be/],
      [{ db }, /resolve must be/],
      [{ db, resolve: () => 'x', required: 1 }, /required/],
      [{ db, resolve: () => 'x', closePool: 'yes' }, /closePool/],
    ] as const) {
      const bad = Fastify()
      await expect(bad.register(tenantPlugin, options as never).ready()).rejects.toThrow(message)
      await bad.close()
    }
  })
})

describe('errors an ORM or the application wrapped', () => {
  const events = pgTable('events', { orgId: text('org_id').notNull(), kind: text('kind').notNull() })
  // tests/setup's createTenantPool returns TenantPool<PgPoolLike>: db.pool is a pg.Pool at run time.
  const orm = () => drizzle(db.pool as unknown as pg.Pool)
  const wrap = (message: string) => (cause: unknown) => {
    throw new Error(message, { cause })
  }
  const forged = `insert into events (org_id, kind) values ('org_zz', 'fastify-orm-forged')`

  async function wrappedApp(answer: 'default' | 'httpStatusOf') {
    const app = Fastify()
    await app.register(tenantPlugin, { db, required: false, resolve: (request) => request.headers['x-org-id'] })
    app.post<{ Body: { org_id: string } }>('/drizzle/forged', async (request) => {
      await orm().insert(events).values({ orgId: request.body.org_id, kind: 'fastify-orm-forged' })
      return { ok: true }
    })
    app.get('/drizzle/events', async () => orm().select().from(events))
    app.post('/wrapped/forged', async () => {
      await db.query(forged).catch(wrap('could not save'))
      return { ok: true }
    })
    app.post('/wrapped/grant', async () => {
      await db.query('insert into parents values (5)').catch(wrap('could not save'))
      return { ok: true }
    })
    app.get('/wrapped/no-tenant', async () => {
      await db.query('select 1').catch(wrap('could not read'))
      return { ok: true }
    })
    app.post('/own-status', async () => {
      await db.query(forged).catch((cause: unknown) => {
        throw Object.assign(new Error('teapot', { cause }), { statusCode: 418 })
      })
      return { ok: true }
    })
    app.post('/status-set', async (_request, reply) => {
      reply.code(404)
      await db.query(forged).catch(wrap('could not save'))
      return { ok: true }
    })
    app.get('/plain', async () => {
      throw new Error('plain')
    })
    app.get('/thrown-tenant-required', async () => {
      // pg-tenant's own error, unwrapped: its statusCode, as before.
      throw new TenantRequiredError()
    })
    if (answer === 'httpStatusOf') {
      app.setErrorHandler((err: Error & { cause?: { code?: string } }, _request, reply) => {
        reply.code(httpStatusOf(err) ?? 500).send({ message: err.message, cause: err.cause?.code ?? null })
      })
    }
    await app.listen({ port: 0, host: '127.0.0.1' })
    return { app, url: `http://127.0.0.1:${(app.server.address() as { port: number }).port}` }
  }

  for (const answer of ['default', 'httpStatusOf'] as const) {
    it(`${answer} error handler: 403 for a wrapped RLS refusal, 401 for a wrapped TenantRequiredError`, async () => {
      const { app, url } = await wrappedApp(answer)
      const post = (path: string, tenant: string, json: unknown = {}) =>
        call(`${url}${path}`, { headers: { 'x-org-id': tenant }, json })
      try {
        const drizzleForged = await post('/drizzle/forged', 'org_a', { org_id: 'org_b' })
        expect(drizzleForged.status).toBe(403)
        const noTenant = await call(`${url}/drizzle/events`) // DrizzleQueryError { cause: TenantRequiredError }
        expect(noTenant.status).toBe(401)
        expect((await call(`${url}/drizzle/events`, { headers: { 'x-org-id': 'org_a' } })).status).toBe(200)
        expect((await post('/wrapped/forged', 'org_a')).status).toBe(403)
        expect((await post('/wrapped/grant', 'org_a')).status).toBe(500)
        expect((await call(`${url}/wrapped/no-tenant`)).status).toBe(401)
        expect((await post('/own-status', 'org_a')).status).toBe(418)
        expect((await call(`${url}/plain`)).status).toBe(500)
        expect((await call(`${url}/thrown-tenant-required`)).status).toBe(401)
        if (answer === 'default') {
          // Fastify's default handler keeps a status the route set, and reports the answered one.
          expect((await post('/status-set', 'org_a')).status).toBe(404)
          expect(drizzleForged.body).toMatchObject({ statusCode: 403 })
          expect(noTenant.body).toMatchObject({ statusCode: 401 })
        }
      } finally {
        await app.close()
      }
      const { rows } = await t.admin(`select count(*)::int n from events where kind = 'fastify-orm-forged'`)
      expect(rows[0].n).toBe(0)
    })
  }
})
