/**
 * An Express app whose queries never mention a tenant: Kysely runs on `db.pool`, and
 * tenantMiddleware binds the organisation of each request. Row-Level Security does the rest.
 *
 * (In your code the imports are 'pg-tenant' and 'pg-tenant/express'.)
 */
import express, { type ErrorRequestHandler } from 'express'
import { Kysely, PostgresDialect, sql, type Generated } from 'kysely'
import type pg from 'pg'
import { isRlsViolation, type TenantPool } from '../../src/index.js'
import { tenantMiddleware } from '../../src/adapters/express.js'

/** The tables as Kysely sees them: no tenant anywhere in the queries below. */
export interface EventsSchema {
  organization: { org_id: string; name: string }
  events: {
    event_id: Generated<string>
    org_id: Generated<string>
    event_type: string
    event_value: number | null
    occurred_at: Generated<Date>
  }
}

export function createKyselyApp(db: TenantPool<pg.Pool>) {
  const kysely = new Kysely<EventsSchema>({ dialect: new PostgresDialect({ pool: db.pool }) })
  const app = express()
  app.use(express.json())
  app.use(tenantMiddleware(db, { resolve: (req) => req.get('x-org-id') }))

  app.get('/events', async (req, res) => {
    let query = kysely.selectFrom('events').selectAll().orderBy('event_id')
    if (typeof req.query.type === 'string') query = query.where('event_type', '=', req.query.type)
    res.json(await query.execute())
  })

  app.get('/org', async (_req, res) => {
    res.json(await kysely.selectFrom('organization').selectAll().executeTakeFirst())
  })

  app.post('/events', async (req, res) => {
    const row = await kysely
      .insertInto('events')
      .values({ event_type: String(req.body.event_type), event_value: req.body.event_value ?? null, ...(req.body.org_id ? { org_id: req.body.org_id } : {}) })
      .returningAll()
      .executeTakeFirstOrThrow()
    res.status(201).json(row)
  })

  // A Kysely transaction: both rows or neither, for the request's organisation.
  app.post('/events/pair', async (req, res) => {
    const rows = await kysely.transaction().execute(async (trx) => {
      const a = await trx.insertInto('events').values({ event_type: String(req.body.first) }).returningAll().executeTakeFirstOrThrow()
      if (req.body.fail) throw new Error('second insert refused')
      const b = await trx.insertInto('events').values({ event_type: String(req.body.second) }).returningAll().executeTakeFirstOrThrow()
      return [a, b]
    })
    res.status(201).json(rows)
  })

  app.get('/events/count', async (_req, res) => {
    const { rows } = await sql<{ n: number }>`select count(*)::int as n from events`.execute(kysely)
    res.json(rows[0])
  })

  const errors: ErrorRequestHandler = (err, _req, res, _next) => {
    if (isRlsViolation(err)) return void res.status(403).json({ error: 'refused by row-level security' })
    const status = typeof err?.status === 'number' ? err.status : 500
    res.status(status).json({ error: err?.code ?? 'INTERNAL', message: status < 500 ? err.message : 'internal error' })
  }
  app.use(errors)
  return { app, kysely }
}
