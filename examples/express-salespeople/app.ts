/**
 * The Express app of the salespeople example. In your own code the imports are
 * `from 'pg-tenant'` and `from 'pg-tenant/express'`; the examples import the sources so that
 * they run without a build.
 */
import { timingSafeEqual } from 'node:crypto'
import express, { type NextFunction, type Request, type RequestHandler, type Response } from 'express'
import type pg from 'pg'
import { errorResponseOf, tenantMiddleware } from '../../src/adapters/express.js'
import { InvalidTenantError, type TenantPool } from '../../src/index.js'
import { httpError, logAnswered } from '../shared/errors.js'
import { createSalesperson, type SalesDatabase } from './database.js'

export interface SalesAppOptions {
  /** The tenant pool, on the app's login role, with the salesperson roles as its allow-list. */
  readonly db: TenantPool
  /** A plain pool on the CREATEROLE admin role, for creating salespeople only. */
  readonly admin: pg.Pool
  readonly database: Pick<SalesDatabase, 'roleOf' | 'name'>
  /** The bearer token of the admin routes. */
  readonly adminToken: string
  /** Log errors to the console (5xx in full, refusals in one line). Default true. */
  readonly log?: boolean
}

/** Express 4 does not catch rejected promises; Express 5 does. This works with both. */
const route =
  (fn: (req: Request, res: Response) => Promise<unknown>): RequestHandler =>
  (req, res, next) => {
    fn(req, res).catch(next)
  }

/** An id as PostgreSQL's `integer` holds it: 1 to 2147483647, digits only. */
const ID = /^[1-9][0-9]{0,9}$/
const isId = (value: unknown): boolean =>
  (typeof value === 'number' && Number.isInteger(value) && value >= 1 && value <= 2 ** 31 - 1) ||
  (typeof value === 'string' && ID.test(value) && Number(value) <= 2 ** 31 - 1)

/** A name: a non-empty string of at most 100 characters, without NUL (text cannot hold it). */
const isName = (value: unknown): value is string =>
  typeof value === 'string' && value.trim() !== '' && value.length <= 100 && !value.includes('\0')

interface NewClient {
  readonly name: string
  readonly salesperson_id?: number
}

/** A client to create, from a request body: 400 for anything else. */
function newClient(body: unknown, where = 'the body'): NewClient {
  const { name, salesperson_id } = (typeof body === 'object' && body !== null ? body : {}) as Record<string, unknown>
  if (!isName(name)) throw httpError(400, `${where}: name must be a non-empty string of at most 100 characters`)
  if (salesperson_id === undefined) return { name }
  if (typeof salesperson_id !== 'number' || !isId(salesperson_id)) {
    throw httpError(400, `${where}: salesperson_id must be a salesperson id`)
  }
  return { name, salesperson_id }
}

export function createSalesApp({ db, admin, database, adminToken, log = true }: SalesAppOptions): express.Express {
  const insertClient = async ({ name, salesperson_id }: NewClient) => {
    const { rows } =
      salesperson_id === undefined
        ? await db.query('insert into clients (name) values ($1) returning id, name, salesperson_id', [name])
        : await db.query(
            'insert into clients (name, salesperson_id) values ($1, $2) returning id, name, salesperson_id',
            [name, salesperson_id],
          )
    return rows[0]
  }

  const app = express()
  app.use(express.json())

  app.get('/', (_req, res) => {
    res.json({
      example: 'express-salespeople: a database role per salesperson (SET ROLE), RLS on clients',
      routes: ['GET /me', 'GET /clients', 'GET /clients/:id', 'POST /clients', 'POST /clients/batch', 'POST /admin/salespeople'],
    })
  })

  // Admin: creating a salesperson creates their database role. This goes through a separate,
  // privileged pool, never through the tenant pool.
  const expected = Buffer.from(`Bearer ${adminToken}`)
  const requireAdmin: RequestHandler = (req, _res, next) => {
    const given = Buffer.from(req.get('authorization') ?? '')
    const ok = given.length === expected.length && timingSafeEqual(given, expected)
    next(ok ? undefined : httpError(401, 'admin routes need Authorization: Bearer <admin token>'))
  }
  app.post(
    '/admin/salespeople',
    requireAdmin,
    route(async (req, res) => {
      const name = (req.body as { name?: unknown } | undefined)?.name
      if (!isName(name)) throw httpError(400, 'name must be a non-empty string of at most 100 characters')
      res.status(201).json(await createSalesperson(admin, database, name.trim()))
    }),
  )

  // Everything below runs as the salesperson of the request. In a real app the id comes from the
  // session or a verified token; here it is the x-salesperson-id header.
  const sales = express.Router()
  sales.use(
    tenantMiddleware(db, {
      resolve: (req: Request) => {
        const id = req.get('x-salesperson-id')
        if (id === undefined) return undefined // 401 TENANT_REQUIRED
        // 400 INVALID_TENANT, also for the header sent twice ("1, 2", as Node joins it)
        if (!isId(id)) throw new InvalidTenantError('x-salesperson-id must be a salesperson id')
        return { role: database.roleOf(id) } // SET ROLE for each query of this request
      },
    }),
  )
  sales.get(
    '/me',
    route(async (_req, res) => {
      const { rows } = await db.query(
        `select current_user::text as role, s.id, s.name
           from salespeople s where s.id = current_salesperson_id()`,
      )
      res.json(rows[0])
    }),
  )
  sales.get(
    '/clients',
    route(async (_req, res) => {
      // No WHERE clause: the policy keeps other salespeople's clients out.
      const { rows } = await db.query('select id, name, salesperson_id from clients order by id')
      res.json(rows)
    }),
  )
  sales.get(
    '/clients/:id',
    route(async (req, res) => {
      const id = req.params.id
      if (!isId(id)) throw httpError(400, 'the client id must be a positive integer')
      const { rows } = await db.query('select id, name, salesperson_id from clients where id = $1', [id])
      if (rows.length === 0) throw httpError(404, 'no such client') // another's client looks absent
      res.json(rows[0])
    }),
  )
  sales.post(
    '/clients',
    route(async (req, res) => {
      // salesperson_id defaults to the current salesperson; naming another one is refused by the
      // policy's WITH CHECK (403 RLS_VIOLATION from the error handler below).
      res.status(201).json(await insertClient(newClient(req.body)))
    }),
  )
  sales.post(
    '/clients/batch',
    route(async (req, res) => {
      const { clients } = (req.body ?? {}) as { clients?: unknown }
      if (!Array.isArray(clients) || clients.length === 0 || clients.length > 100) {
        throw httpError(400, 'clients must be an array of 1 to 100 clients')
      }
      const valid = clients.map((client, i) => newClient(client, `clients[${i}]`))
      // All or nothing, as the request's salesperson: one row the policy refuses and none is kept.
      const created = await db.transaction(async () => {
        const out = []
        for (const client of valid) out.push(await insertClient(client))
        return out
      })
      res.status(201).json(created)
    }),
  )
  app.use(sales)
  app.use((_req, _res, next) => next(httpError(404, 'no such route')))

  // One answer for every error: { error: { code, message } } with the status of its code (see
  // errorResponseOf). PostgreSQL's message, the role and the stack go to the log only.
  app.use((err: unknown, _req: Request, res: Response, next: NextFunction) => {
    if (res.headersSent) return next(err)
    const answer = errorResponseOf(err)
    if (log) logAnswered(err, answer)
    res.status(answer.status).json(answer.body)
  })
  return app
}
