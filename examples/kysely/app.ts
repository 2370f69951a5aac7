/**
 * An Express app whose queries never mention a tenant: Kysely runs on `db.pool`, and
 * tenantMiddleware binds the organisation of each request. Row-Level Security does the rest.
 *
 * (In your code the imports are 'pg-tenant' and 'pg-tenant/express'.)
 */
import express, { type ErrorRequestHandler } from 'express'
import { Kysely, PostgresDialect, sql, type Generated } from 'kysely'
import type pg from 'pg'
import type { TenantPool } from '../../src/index.js'
import { errorResponseOf, tenantMiddleware } from '../../src/adapters/express.js'
import { orgIdOf, UUID } from '../fastify-events/database.js'
import { httpError, logAnswered } from '../shared/errors.js'

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

interface NewEvent {
  readonly event_type: string
  readonly event_value: number | null
  readonly org_id?: string
}

/** An event to insert, from a request body (the rules of fastify-events' JSON schema): 400 otherwise. */
function newEvent(body: unknown): NewEvent {
  const { event_type, event_value = null, org_id, ...rest } = (typeof body === 'object' && body !== null ? body : {}) as Record<string, unknown>
  if (Object.keys(rest).length > 0) throw httpError(400, `unknown field ${Object.keys(rest)[0]}`)
  if (typeof event_type !== 'string' || event_type.length === 0 || event_type.length > 100 || event_type.includes('\0')) {
    throw httpError(400, 'event_type must be a string of 1 to 100 characters')
  }
  if (event_value !== null && !(Number.isInteger(event_value) && Math.abs(event_value as number) < 2 ** 31)) {
    throw httpError(400, 'event_value must be an integer') // PostgreSQL's int
  }
  // Accepted so that the demo can show the policy refusing a row for another organisation.
  if (org_id !== undefined && (typeof org_id !== 'string' || !UUID.test(org_id))) {
    throw httpError(400, 'org_id must be a UUID')
  }
  return { event_type, event_value: event_value as number | null, ...(org_id === undefined ? {} : { org_id }) }
}

/** `log`: log errors to the console, 5xx in full and refusals in one line (default true). */
export function createKyselyApp(db: TenantPool<pg.Pool>, log = true) {
  const kysely = new Kysely<EventsSchema>({ dialect: new PostgresDialect({ pool: db.pool }) })
  const app = express()
  app.use(express.json())
  // No header: 401 TENANT_REQUIRED; not one UUID (or the header sent twice): 400 INVALID_TENANT.
  app.use(tenantMiddleware(db, { resolve: (req) => orgIdOf(req.get('x-org-id')) }))

  app.get('/events', async (req, res) => {
    let query = kysely.selectFrom('events').selectAll().orderBy('event_id')
    if (typeof req.query.type === 'string') query = query.where('event_type', '=', req.query.type)
    res.json(await query.execute())
  })

  app.get('/org', async (_req, res) => {
    res.json(await kysely.selectFrom('organization').selectAll().executeTakeFirst())
  })

  // org_id defaults to the request's organisation; naming another one is refused by the policy's
  // WITH CHECK (403 RLS_VIOLATION).
  app.post('/events', async (req, res) => {
    const row = await kysely.insertInto('events').values(newEvent(req.body)).returningAll().executeTakeFirstOrThrow()
    res.status(201).json(row)
  })

  // A Kysely transaction: both rows or neither, for the request's organisation. `fail: true`
  // throws between the two inserts (a 500 whose message stays in the log).
  app.post('/events/pair', async (req, res) => {
    const { first, second, fail } = (req.body ?? {}) as Record<string, unknown>
    const a = newEvent(first)
    const b = newEvent(second)
    const rows = await kysely.transaction().execute(async (trx) => {
      const one = await trx.insertInto('events').values(a).returningAll().executeTakeFirstOrThrow()
      if (fail === true) throw new Error('the pair failed after its first insert')
      const two = await trx.insertInto('events').values(b).returningAll().executeTakeFirstOrThrow()
      return [one, two]
    })
    res.status(201).json(rows)
  })

  app.get('/events/count', async (_req, res) => {
    const { rows } = await sql<{ n: number }>`select count(*)::int as n from events`.execute(kysely)
    res.json(rows[0])
  })

  // After /events/count, which it would take for an id.
  app.get('/events/:id', async (req, res) => {
    // bigserial ids: a malformed one is a 400, never a PostgreSQL error.
    if (!/^[1-9][0-9]{0,17}$/.test(req.params.id)) throw httpError(400, 'the event id must be a positive integer')
    const row = await kysely.selectFrom('events').selectAll().where('event_id', '=', req.params.id).executeTakeFirst()
    if (row === undefined) throw httpError(404, 'no such event') // another's event looks absent
    res.json(row)
  })

  app.use((_req, _res, next) => next(httpError(404, 'no such route')))
  // One answer for every error: { error: { code, message } } with the status of its code (see
  // errorResponseOf). PostgreSQL's message and the stack go to the log only.
  const errors: ErrorRequestHandler = (err, _req, res, next) => {
    if (res.headersSent) return next(err)
    const answer = errorResponseOf(err)
    if (log) logAnswered(err, answer)
    res.status(answer.status).json(answer.body)
  }
  app.use(errors)
  return { app, kysely }
}
