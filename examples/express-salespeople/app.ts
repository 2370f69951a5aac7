/**
 * The Express app of the salespeople example. In your own code the imports are
 * `from 'pg-tenant'` and `from 'pg-tenant/express'`; the examples import the sources so that
 * they run without a build.
 */
import { timingSafeEqual } from 'node:crypto'
import express, { type NextFunction, type Request, type RequestHandler, type Response } from 'express'
import type pg from 'pg'
import { tenantMiddleware } from '../../src/adapters/express.js'
import { InvalidTenantError, isRlsViolation, type TenantPool } from '../../src/index.js'
import { createSalesperson, type SalesDatabase } from './database.js'

export interface SalesAppOptions {
  /** The tenant pool, on the app's login role, with the salesperson roles as its allow-list. */
  readonly db: TenantPool
  /** A plain pool on the CREATEROLE admin role, for creating salespeople only. */
  readonly admin: pg.Pool
  readonly database: Pick<SalesDatabase, 'roleOf' | 'name'>
  /** The bearer token of the admin routes. */
  readonly adminToken: string
  /** Log 5xx errors to the console. Default true. */
  readonly log?: boolean
}

/** Express 4 does not catch rejected promises; Express 5 does. This works with both. */
const route =
  (fn: (req: Request, res: Response) => Promise<unknown>): RequestHandler =>
  (req, res, next) => {
    fn(req, res).catch(next)
  }

const httpError = (status: number, message: string) => Object.assign(new Error(message), { status })

export function createSalesApp({ db, admin, database, adminToken, log = true }: SalesAppOptions): express.Express {
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
      if (typeof name !== 'string' || name.trim() === '' || name.length > 100) {
        throw httpError(400, 'name must be a non-empty string of at most 100 characters')
      }
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
        if (id === undefined) return undefined // 401
        if (!/^[1-9][0-9]{0,9}$/.test(id)) throw new InvalidTenantError('x-salesperson-id must be a salesperson id')
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
      const { rows } = await db.query('select id, name, salesperson_id from clients where id = $1', [
        Number(req.params.id) || 0,
      ])
      if (rows.length === 0) throw httpError(404, 'no such client') // another's client looks absent
      res.json(rows[0])
    }),
  )
  sales.post(
    '/clients',
    route(async (req, res) => {
      const { name, salesperson_id } = req.body as { name?: unknown; salesperson_id?: unknown }
      if (typeof name !== 'string' || name === '') throw httpError(400, 'name must be a string')
      // salesperson_id defaults to the current salesperson; naming another one is refused by the
      // policy's WITH CHECK (a 403 from the error handler below).
      const { rows } =
        salesperson_id === undefined
          ? await db.query('insert into clients (name) values ($1) returning id, name, salesperson_id', [name])
          : await db.query(
              'insert into clients (name, salesperson_id) values ($1, $2) returning id, name, salesperson_id',
              [name, salesperson_id],
            )
      res.status(201).json(rows[0])
    }),
  )
  sales.post(
    '/clients/batch',
    route(async (req, res) => {
      const { names } = req.body as { names?: unknown }
      if (!Array.isArray(names) || names.some((n) => typeof n !== 'string' || n === '')) {
        throw httpError(400, 'names must be an array of strings')
      }
      // All or nothing, as the request's salesperson.
      const created = await db.transaction(async () => {
        const out = []
        for (const name of names as string[]) {
          const { rows } = await db.query('insert into clients (name) values ($1) returning id, name', [name])
          out.push(rows[0])
        }
        return out
      })
      res.status(201).json(created)
    }),
  )
  app.use(sales)

  app.use((err: any, _req: Request, res: Response, _next: NextFunction) => {
    if (isRlsViolation(err)) {
      res.status(403).json({ error: 'forbidden: the row-level security policy refused this write' })
      return
    }
    const status = typeof err?.status === 'number' ? err.status : 500
    if (status >= 500 && log) console.error(err)
    res.status(status).json({ error: status >= 500 ? 'internal error' : err.message, code: err.code })
  })
  return app
}
