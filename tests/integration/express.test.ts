/**
 * `pg-tenant/express` against Express 5 and Express 4, with real servers on loopback, real HTTP
 * (node's fetch) and a real PostgreSQL where a non-owner login role is subject to RLS.
 */
import http from 'node:http'
import { drizzle } from 'drizzle-orm/node-postgres'
import { pgTable, text } from 'drizzle-orm/pg-core'
import type { NextFunction, Request, RequestHandler, Response } from 'express'
import express5 from 'express'
import express4 from 'express4'
import pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { httpStatusOf, tenantErrorHandler, tenantMiddleware, type TenantMiddleware } from '../../src/adapters/express.js'
import {
  createTenantPool,
  InvalidTenantError,
  isRlsViolation,
  TenantRequiredError,
  type TenantPool,
} from '../setup/pg-tenant.js'
import { createTestDatabase, type TestDatabase } from '../setup/fixtures.js'
import { call, callVia, jitter, listen, pooled, shuffled, sleep, type Listening } from '../setup/http.js'
import { callRepeated } from './example-checks.js'

type Express = typeof express5
const FRAMEWORKS: Array<[string, Express]> = [
  ['express 5', express5],
  ['express 4', express4],
]
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

/** Express 4 does not catch rejected promises: hand them to `next` in both. */
const h =
  (fn: (req: Request, res: Response) => Promise<unknown>): RequestHandler =>
  (req, res, next) => {
    fn(req, res).catch(next)
  }

interface TestApp {
  readonly server: Listening
  /** How many requests reached a route handler. */
  readonly hits: () => number
}

async function startApp(
  express: Express,
  options: { parser: 'before' | 'after'; required?: boolean; middleware?: TenantMiddleware<Request> },
): Promise<TestApp> {
  let hits = 0
  const app = express()
  if (options.parser === 'before') app.use(express.json())
  app.use(
    options.middleware ??
      tenantMiddleware(db, {
        required: options.required ?? true,
        resolve: (req) => {
          if (req.get('x-resolver-throws')) {
            throw Object.assign(new Error('resolver failed'), { status: 418 })
          }
          const role = req.get('x-sales')
          if (role !== undefined) return { role }
          const id = req.get('x-org-id')
          return req.get('x-async-resolve') ? sleep(1).then(() => id) : id
        },
      }),
  )
  if (options.parser === 'after') app.use(express.json())
  // Later middleware sees the tenant too.
  app.use((_req, res, next) => {
    res.locals.middlewareTenant = db.currentTenant() ?? null
    hits++
    next()
  })

  app.get(
    '/events',
    h(async (req, res) => {
      await jitter()
      const { rows } = await db.query<{ org_id: string; payload: string }>(
        'select org_id, payload from events where kind = $1',
        [req.query.kind],
      )
      await jitter()
      res.json({ tenant: db.currentTenant(), middleware: res.locals.middlewareTenant, rows })
    }),
  )
  app.post(
    '/events',
    h(async (req, res) => {
      const { kind, payload } = req.body as { kind: string; payload: string }
      await jitter()
      const { rows } = await db.query<{ org_id: string; setting: string }>(
        `insert into events (kind, payload) values ($1, $2)
         returning org_id, current_setting('app.tenant_id', true) as setting`,
        [kind, payload],
      )
      res.json({ tenant: db.currentTenant(), middleware: res.locals.middlewareTenant, body: req.body, ...rows[0] })
    }),
  )
  app.post(
    '/events/forged',
    h(async (req, res) => {
      const { org_id } = req.body as { org_id: string }
      await db.query(`insert into events (org_id, kind) values ($1, 'forged')`, [org_id])
      res.json({ ok: true })
    }),
  )
  app.post(
    '/batch',
    h(async (req, res) => {
      const { kind, n, fail } = req.body as { kind: string; n: number; fail?: boolean }
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
      res.json({ tenant: db.currentTenant(), ids })
    }),
  )
  app.get('/clients', h(async (_req, res) => {
    const { rows } = await db.query<{ salesperson: string; who: string }>(
      'select salesperson, current_user::text as who from clients',
    )
    await jitter()
    res.json({ tenant: db.currentTenant(), rows })
  }))
  app.get('/boom/sync', () => {
    throw new Error('sync boom')
  })
  app.get(
    '/boom/async',
    h(async () => {
      await jitter()
      throw new Error('async boom')
    }),
  )
  app.get('/whoami', (req, res) => {
    res.json({ tenant: db.currentTenant() ?? null, port: req.socket.remotePort })
  })
  app.get(
    '/whoami/db',
    h(async (_req, res) => {
      const { rows } = await db.query(`select current_setting('app.tenant_id', true) as setting`)
      res.json({ tenant: db.currentTenant() ?? null, setting: rows[0]?.setting })
    }),
  )

  app.use((err: any, req: Request, res: Response, _next: NextFunction) => {
    const status = isRlsViolation(err) ? 403 : typeof err.status === 'number' ? err.status : 500
    res.status(status).json({
      code: err.code ?? null,
      message: err.message,
      // Error handlers run with the request's tenant bound as well.
      tenant: db.currentTenant() ?? null,
      port: req.socket.remotePort,
    })
  })
  return { server: await listen(app), hits: () => hits }
}

describe.each(FRAMEWORKS)('%s', (name, express) => {
  describe.each(['before', 'after'] as const)('body parser mounted %s the middleware', (parser) => {
    let app: TestApp
    beforeAll(async () => {
      app = await startApp(express, { parser })
    })
    afterAll(() => app.server.close())

    it('serves 420 interleaved reads and JSON writes of 4 tenants with zero foreign rows', async () => {
      const kind = `mass ${name} ${parser}`
      const url = app.server.url
      // Every tenant has rows before the storm starts, so a leak would have rows to show.
      for (const tenant of TENANTS) {
        for (let i = 0; i < 2; i++) {
          const r = await call(`${url}/events`, {
            headers: { 'x-org-id': tenant },
            json: { kind, payload: tenant },
          })
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
              ? await call(`${url}/events`, { headers, json: { kind, payload: tenant } })
              : await call(`${url}/events?kind=${encodeURIComponent(kind)}`, { headers })
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
        expect(r.body.middleware).toBe(r.tenant)
        if (r.write) {
          writes.set(r.tenant, writes.get(r.tenant)! + 1)
          // The body was parsed, and the row was written as this request's tenant.
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
      expect(seen).toBeGreaterThan(280 * 2) // each read saw at least its tenant's first two rows

      // Past RLS, as superuser: every row carries the tenant of the request that wrote it.
      const { rows } = await t.admin<{ org_id: string; n: string; wrong: string }>(
        `select org_id, count(*) n, count(*) filter (where org_id <> payload) wrong
           from events where kind = $1 group by org_id order by org_id`,
        [kind],
      )
      expect(rows.map((r) => [r.org_id, Number(r.n), Number(r.wrong)])).toEqual(
        TENANTS.map((id) => [id, writes.get(id)!, 0]),
      )
    })

    it('keeps role-per-salesperson tenants apart (SET ROLE model)', async () => {
      const results = await pooled(
        shuffled(
          Array.from({ length: 60 }, (_, i) => t.roles.sales[i % t.roles.sales.length]!).map(
            (role) => async () => ({ role, ...(await call(`${app.server.url}/clients`, { headers: { 'x-sales': role } })) }),
          ),
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
      const url = app.server.url
      const before = app.hits()
      const none = await call(`${url}/events?kind=x`)
      expect(none.status).toBe(401)
      expect(none.body.code).toBe('TENANT_REQUIRED')
      const noneWithBody = await call(`${url}/events`, { json: { kind: 'x', payload: 'x' } })
      expect(noneWithBody.status).toBe(401)

      const tooLong = await call(`${url}/events?kind=x`, { headers: { 'x-org-id': 'o'.repeat(300) } })
      expect(tooLong.status).toBe(400)
      expect(tooLong.body.code).toBe('INVALID_TENANT')
      const empty = await call(`${url}/events`, { headers: { 'x-org-id': '' }, json: { kind: 'x' } })
      expect(empty.status).toBe(400)
      expect(empty.body.code).toBe('INVALID_TENANT')

      const role = await call(`${url}/clients`, { headers: { 'x-sales': t.roles.notGranted } })
      expect(role.status).toBe(403)
      expect(role.body.code).toBe('ROLE_NOT_ALLOWED')
      const superuser = await call(`${url}/clients`, { headers: { 'x-sales': 'postgres' } })
      expect(superuser.status).toBe(403)

      const thrown = await call(`${url}/events?kind=x`, {
        headers: { 'x-org-id': 'org_a', 'x-resolver-throws': '1' },
      })
      expect(thrown.status).toBe(418)
      expect(thrown.body.message).toBe('resolver failed')

      // None of these reached a handler, and none wrote anything.
      expect(app.hits()).toBe(before)
      const { rows } = await t.admin(`select count(*)::int n from events where kind = 'x'`)
      expect(rows[0].n).toBe(0)
    })

    it("refuses with 400 a tenant from a header sent twice (Node joins it as 'a, b'), not one that contains ', '", async () => {
      const url = app.server.url
      const before = app.hits()
      // Two header lines: req.get('x-org-id') is 'org_a, org_b', and the resolver returns it.
      const twice = await callRepeated(`${url}/whoami`, { 'x-org-id': ['org_a', 'org_b'] })
      expect(twice).toMatchObject({ status: 400, body: { code: 'INVALID_TENANT', tenant: null } })
      expect(twice.body.message).toMatch(/x-org-id header, which the request sent more than once/)
      const async = await callRepeated(`${url}/whoami`, { 'x-org-id': ['org_a', 'org_b'], 'x-async-resolve': '1' })
      expect(async).toMatchObject({ status: 400, body: { code: 'INVALID_TENANT' } })
      const writes = await callRepeated(`${url}/events`, { 'x-org-id': ['org_a', 'org_b'] }, { kind: 'x', payload: 'x' })
      expect(writes).toMatchObject({ status: 400, body: { code: 'INVALID_TENANT' } })
      // A role from a repeated header: 400 as well, before the allow-list is asked.
      const roles = await callRepeated(`${url}/clients`, { 'x-sales': [t.roles.sales[0]!, t.roles.sales[1]!] })
      expect(roles).toMatchObject({ status: 400, body: { code: 'INVALID_TENANT' } })
      expect(app.hits()).toBe(before)

      // One header line whose value holds ', ' is a tenant id like any other.
      const once = await call(`${url}/whoami/db`, { headers: { 'x-org-id': 'org_a, org_b' } })
      expect(once).toMatchObject({ status: 200, body: { tenant: 'org_a, org_b', setting: 'org_a, org_b' } })
      // Another header sent twice does not matter, nor the tenant header sent twice with one value
      // that the joined value does not appear in.
      const other = await callRepeated(`${url}/whoami`, { 'x-org-id': 'org_a', 'x-trace': ['1', '2'] })
      expect(other).toMatchObject({ status: 200, body: { tenant: 'org_a' } })
      const { rows } = await t.admin(`select count(*)::int n from events where kind = 'x'`)
      expect(rows[0].n).toBe(0)
    })

    it('answers a write refused by an RLS policy with 403 through isRlsViolation', async () => {
      const r = await call(`${app.server.url}/events/forged`, {
        headers: { 'x-org-id': 'org_a' },
        json: { org_id: 'org_b' },
      })
      expect(r.status).toBe(403)
      expect(r.body.code).toBe('42501')
      expect(r.body.tenant).toBe('org_a')
      const { rows } = await t.admin(`select count(*)::int n from events where kind = 'forged'`)
      expect(rows[0].n).toBe(0)
    })

    it('runs db.transaction in a handler: committed as the tenant, or rolled back whole', async () => {
      const kind = `batch ${name} ${parser}`
      const ok = await call(`${app.server.url}/batch`, {
        headers: { 'x-org-id': 'org_c' },
        json: { kind, n: 3 },
      })
      expect(ok.status).toBe(200)
      expect(ok.body).toEqual({ tenant: 'org_c', ids: ['org_c', 'org_c', 'org_c'] })
      const failed = await call(`${app.server.url}/batch`, {
        headers: { 'x-org-id': 'org_d' },
        json: { kind, n: 3, fail: true },
      })
      expect(failed.status).toBe(500)
      expect(failed.body.tenant).toBe('org_d')
      const { rows } = await t.admin<{ org_id: string; n: number }>(
        'select org_id, count(*)::int n from events where kind = $1 group by org_id',
        [kind],
      )
      expect(rows).toEqual([{ org_id: 'org_c', n: 3 }])
    })
  })

  describe('with required: false', () => {
    let app: TestApp
    beforeAll(async () => {
      app = await startApp(express, { parser: 'before', required: false })
    })
    afterAll(() => app.server.close())

    it('lets a request without a tenant through, and its queries fail closed', async () => {
      const who = await call(`${app.server.url}/whoami`)
      expect(who).toMatchObject({ status: 200, body: { tenant: null } })
      const query = await call(`${app.server.url}/whoami/db`)
      expect(query.status).toBe(401)
      expect(query.body.code).toBe('TENANT_REQUIRED')
      const tenant = await call(`${app.server.url}/whoami/db`, { headers: { 'x-org-id': 'org_b' } })
      expect(tenant.body).toEqual({ tenant: 'org_b', setting: 'org_b' })
    })

    it('does not leak the tenant of a request whose handler threw into the next one', async () => {
      // One keep-alive connection for all: the case where state could carry over.
      const agent = new http.Agent({ keepAlive: true, maxSockets: 1 })
      const ports = new Set<number>()
      for (let i = 0; i < 20; i++) {
        const path = i % 2 === 0 ? '/boom/sync' : '/boom/async'
        const boom = await callVia(agent, `${app.server.url}${path}`, { 'x-org-id': 'org_a' })
        expect(boom.status).toBe(500)
        expect(boom.body.tenant).toBe('org_a') // the error handler ran as the request's tenant
        const next = await callVia(agent, `${app.server.url}/whoami`)
        expect(next.body.tenant).toBeNull()
        const query = await callVia(agent, `${app.server.url}/whoami/db`)
        expect(query.status).toBe(401)
        expect(query.body.tenant).toBeNull()
        ports.add(boom.body.port).add(next.body.port).add(query.body.port)
      }
      agent.destroy()
      expect(ports.size).toBe(1)

      // And concurrently: no tenantless request ever sees a tenant.
      const results = await pooled(
        shuffled(Array.from({ length: 120 }, (_, i) => i)).map((i) => () =>
          i % 2 === 0
            ? call(`${app.server.url}/boom/async`, { headers: { 'x-org-id': TENANTS[i % 4]! } })
            : call(`${app.server.url}/whoami`),
        ),
        16,
      )
      expect(results.filter((r) => r.status === 500)).toHaveLength(60)
      const bare = results.filter((r) => r.status === 200)
      expect(bare).toHaveLength(60)
      expect(bare.every((r) => r.body.tenant === null)).toBe(true)
    })
  })
})

describe('tenantMiddleware', () => {
  it('is a named function and checks its options at set-up', () => {
    const mw = tenantMiddleware(db, { resolve: () => 'org_a' })
    expect(mw.name).toBe('pgTenantMiddleware')
    expect(mw.length).toBe(3)
    expect(() => tenantMiddleware({} as never, { resolve: () => 'x' })).toThrow(/db must be/)
    expect(() => tenantMiddleware(db, {} as never)).toThrow(/resolve must be/)
    expect(() => tenantMiddleware(db, { resolve: () => 'x', required: 'no' as never })).toThrow(/required/)
  })

  it('reports to next exactly once, with the binding for the rest of the chain', async () => {
    const calls: Array<{ err: unknown; tenant: unknown }> = []
    const run = (resolve: () => unknown, required = true) =>
      new Promise<void>((done) => {
        tenantMiddleware(db, { resolve: resolve as never, required })({}, {}, (err?: unknown) => {
          calls.push({ err, tenant: db.currentTenant() })
          done()
        })
      })
    await run(() => 'org_a')
    await run(async () => 'org_b')
    await run(() => undefined)
    await run(() => null, false)
    await run(() => {
      throw undefined // a falsy throw must still stop the request
    })
    await run(() => Promise.reject(new Error('nope')))
    await run(() => ['org_a', 'org_b']) // a header value that came as an array
    expect(calls).toHaveLength(7)
    expect(calls[0]).toEqual({ err: undefined, tenant: 'org_a' })
    expect(calls[1]).toEqual({ err: undefined, tenant: 'org_b' })
    expect(calls[2]!.err).toBeInstanceOf(TenantRequiredError)
    expect((calls[2]!.err as TenantRequiredError).status).toBe(401)
    expect(calls[3]).toEqual({ err: undefined, tenant: undefined })
    expect(calls[4]!.err).toBeInstanceOf(Error)
    expect((calls[5]!.err as Error).message).toBe('nope')
    expect(calls[6]!.err).toBeInstanceOf(InvalidTenantError)
    expect(calls[6]!.err).toMatchObject({ status: 400, statusCode: 400 })
    expect(calls.slice(2).every((c) => c.tenant === undefined)).toBe(true)
  })

  it('tells a header sent twice from its raw lines when the request has no headersDistinct', async () => {
    const run = (req: object, tenant: unknown) =>
      new Promise<unknown>((done) => {
        tenantMiddleware(db, { resolve: () => tenant as string })(req, {}, (err?: unknown) => done(err ?? db.currentTenant()))
      })
    const raw = { rawHeaders: ['X-Org-Id', 'Org_A', 'Host', 'h', 'x-org-id', 'org_b'] }
    expect(await run(raw, 'org_a, org_b')).toBeInstanceOf(InvalidTenantError) // case-insensitive
    expect(await run(raw, { id: 'x', settings: { 'app.user_id': 'u:org_a, org_b' } })).toBeInstanceOf(InvalidTenantError)
    expect(await run(raw, 'org_a')).toBe('org_a')
    expect(await run({ rawHeaders: ['x-org-id', 'org_a, org_b'] }, 'org_a, org_b')).toBe('org_a, org_b')
    expect(await run({}, 'org_a, org_b')).toBe('org_a, org_b') // nothing to tell by: as given
    expect(await run({ headersDistinct: { 'x-org-id': ['a', 'b'] } }, 'a, b')).toBeInstanceOf(InvalidTenantError)
  })

  it("adds nothing to req, and Express's Request type declares nothing of pg-tenant's", () => {
    // Type-checked by `npm run typecheck`: the day the middleware claims a req.tenant, this line
    // fails to compile until the claim has its declaration (and this test its update).
    const read = (req: Request) =>
      // @ts-expect-error tenantMiddleware adds no property to req: use db.currentTenant()
      req.tenant
    const req = { get: () => 'org_a' } as unknown as Request
    let seen: unknown = 'not called'
    tenantMiddleware(db, { resolve: (r: Request) => r.get('x-org-id') })(req, {}, () => {
      seen = db.currentTenant()
    })
    expect(seen).toBe('org_a')
    expect(read(req)).toBeUndefined()
    expect(Object.keys(req)).toEqual(['get'])
  })
})

describe('errors an ORM or the application wrapped', () => {
  const events = pgTable('events', { orgId: text('org_id').notNull(), kind: text('kind').notNull() })
  // tests/setup's createTenantPool returns TenantPool<PgPoolLike>: db.pool is a pg.Pool at run time.
  const orm = () => drizzle(db.pool as unknown as pg.Pool)
  const wrap = (message: string) => (cause: unknown) => {
    throw new Error(message, { cause })
  }

  function wrappedApp(express: Express, answer: 'tenantErrorHandler' | 'httpStatusOf') {
    const app = express()
    app.use(express.json())
    app.use(tenantMiddleware(db, { required: false, resolve: (req) => req.get('x-org-id') }))
    app.post('/drizzle/forged', h(async (req, res) => {
      await orm().insert(events).values({ orgId: (req.body as { org_id: string }).org_id, kind: 'express-orm-forged' })
      res.json({ ok: true })
    }))
    app.get('/drizzle/events', h(async (_req, res) => {
      res.json(await orm().select().from(events))
    }))
    app.post('/wrapped/forged', h(async (_req, res) => {
      await db.query(`insert into events (org_id, kind) values ('org_zz', 'express-orm-forged')`).catch(wrap('could not save'))
      res.json({ ok: true })
    }))
    app.post('/wrapped/grant', h(async (_req, res) => {
      await db.query('insert into parents values (5)').catch(wrap('could not save'))
      res.json({ ok: true })
    }))
    app.get('/wrapped/no-tenant', h(async (_req, res) => {
      await db.query('select 1').catch(wrap('could not read'))
      res.json({ ok: true })
    }))
    app.post('/own-status', h(async (_req, res) => {
      await db.query(`insert into events (org_id, kind) values ('org_zz', 'express-orm-forged')`).catch((cause: unknown) => {
        throw Object.assign(new Error('teapot', { cause }), { status: 418 })
      })
      res.json({ ok: true })
    }))
    app.get('/plain', () => {
      throw new Error('plain')
    })
    if (answer === 'tenantErrorHandler') {
      // Then Express's own final handler, which answers res.statusCode for an error without one.
      app.use(tenantErrorHandler())
    } else {
      app.use((err: any, _req: Request, res: Response, _next: NextFunction) => {
        res.status(httpStatusOf(err) ?? 500).json({ message: err.message, cause: err.cause?.code ?? null })
      })
    }
    return listen(app as unknown as http.RequestListener)
  }

  for (const [name, express] of FRAMEWORKS) {
    for (const answer of ['tenantErrorHandler', 'httpStatusOf'] as const) {
      it(`${name}, ${answer}: 403 for a wrapped RLS refusal, 401 for a wrapped TenantRequiredError`, async () => {
        const server = await wrappedApp(express, answer)
        const status = async (path: string, init: { tenant?: string; json?: unknown } = {}) => {
          const headers: Record<string, string> = {}
          if (init.tenant) headers['x-org-id'] = init.tenant
          if (init.json !== undefined) headers['content-type'] = 'application/json'
          const r = await fetch(`${server.url}${path}`, {
            method: init.json === undefined ? 'GET' : 'POST',
            headers,
            body: init.json === undefined ? undefined : JSON.stringify(init.json),
          })
          await r.arrayBuffer()
          return r.status
        }
        try {
          expect(await status('/drizzle/forged', { tenant: 'org_a', json: { org_id: 'org_b' } })).toBe(403)
          expect(await status('/drizzle/events')).toBe(401) // DrizzleQueryError { cause: TenantRequiredError }
          expect(await status('/drizzle/events', { tenant: 'org_a' })).toBe(200)
          expect(await status('/wrapped/forged', { tenant: 'org_a', json: {} })).toBe(403)
          expect(await status('/wrapped/grant', { tenant: 'org_a', json: {} })).toBe(500)
          expect(await status('/wrapped/no-tenant')).toBe(401)
          expect(await status('/own-status', { tenant: 'org_a', json: {} })).toBe(418)
          expect(await status('/plain', { tenant: 'org_a' })).toBe(500)
          expect(await status('/plain')).toBe(500)
        } finally {
          await server.close()
        }
        const { rows } = await t.admin(`select count(*)::int n from events where kind = 'express-orm-forged'`)
        expect(rows[0].n).toBe(0)
      })
    }
  }

  it('tenantErrorHandler passes the very error on, and leaves a status already chosen alone', () => {
    const handler = tenantErrorHandler()
    expect(handler.length).toBe(4) // Express tells error handlers by their arity
    const rls = Object.assign(new Error('new row violates row-level security policy for table "t"'), {
      code: '42501',
      routine: 'ExecWithCheckOptions',
    })
    const run = (err: unknown, res: { statusCode: number; headersSent: boolean }) => {
      let passed: unknown = 'not called'
      handler(err, {}, res, (e?: unknown) => {
        passed = e
      })
      return { passed, status: res.statusCode }
    }
    const wrapped = new Error('x', { cause: rls })
    expect(run(wrapped, { statusCode: 200, headersSent: false })).toEqual({ passed: wrapped, status: 403 })
    expect(run(wrapped, { statusCode: 404, headersSent: false })).toEqual({ passed: wrapped, status: 404 })
    expect(run(wrapped, { statusCode: 200, headersSent: true })).toEqual({ passed: wrapped, status: 200 })
    const own = Object.assign(new Error('x', { cause: rls }), { statusCode: 409 })
    expect(run(own, { statusCode: 200, headersSent: false })).toEqual({ passed: own, status: 200 })
    const required = new Error('x', { cause: new TenantRequiredError() })
    expect(run(required, { statusCode: 200, headersSent: false }).status).toBe(401)
    expect(run(new Error('plain'), { statusCode: 200, headersSent: false }).status).toBe(200)
    expect(run(undefined, { statusCode: 200, headersSent: false })).toEqual({ passed: undefined, status: 200 })
    // A response that refuses the status: the error still goes on.
    const frozen = Object.freeze({ statusCode: 200, headersSent: false })
    expect(run(wrapped, frozen).passed).toBe(wrapped)
  })
})
