/**
 * The Fastify app of the events example. In your own code the imports are `from 'pg-tenant'` and
 * `from 'pg-tenant/fastify'`; the examples import the sources so that they run without a build.
 */
import Fastify, { type FastifyError, type FastifyInstance } from 'fastify'
import { errorResponseOf, tenantPlugin } from '../../src/adapters/fastify.js'
import type { TenantPool } from '../../src/index.js'
import { httpError, logAnswered } from '../shared/errors.js'
import { orgIdOf } from './database.js'

interface NewEvent {
  event_type: string
  event_value?: number
  org_id?: string
}

const newEvent = {
  type: 'object',
  required: ['event_type'],
  additionalProperties: false,
  properties: {
    event_type: { type: 'string', minLength: 1, maxLength: 100 },
    event_value: { type: 'integer', minimum: -(2 ** 31), maximum: 2 ** 31 - 1 }, // PostgreSQL's int
    // Accepted so that the demo can show the policy refusing a row for another organisation.
    org_id: { type: 'string', format: 'uuid' },
  },
} as const

const returning = 'returning event_id, org_id, event_type, event_value, occurred_at'

/** `log`: log errors to the console, 5xx in full and refusals in one line (default true). */
export async function createEventsApp(db: TenantPool, log = true): Promise<FastifyInstance> {
  const app = Fastify({ logger: false })
  const insertEvent = async ({ event_type, event_value, org_id }: NewEvent) => {
    const { rows } =
      org_id === undefined
        ? await db.query(`insert into events (event_type, event_value) values ($1, $2) ${returning}`, [
            event_type,
            event_value ?? null,
          ])
        : await db.query(`insert into events (org_id, event_type, event_value) values ($1, $2, $3) ${returning}`, [
            org_id,
            event_type,
            event_value ?? null,
          ])
    return rows[0]
  }

  // One answer for every error: { error: { code, message } } with the status of its code (see
  // errorResponseOf): 403 RLS_VIOLATION for a write the policy refuses (42501), 400 for a body the
  // schema refuses (with the schema's message), 500 with a generic message for the rest.
  // PostgreSQL's message and the stack go to the log only.
  app.setErrorHandler((err: FastifyError, _request, reply) => {
    const answer = errorResponseOf(err, { expose: err.validation !== undefined })
    if (log) logAnswered(err, answer)
    return reply.code(answer.status).send(answer.body)
  })
  app.setNotFoundHandler((_request, reply) => {
    const answer = errorResponseOf(httpError(404, 'no such route'))
    return reply.code(answer.status).send(answer.body)
  })

  app.get('/', async () => ({
    example: 'fastify-events: a tenant id in app.tenant_id, RLS on organization and events',
    routes: ['GET /org', 'GET /events', 'GET /events/:id', 'POST /events', 'POST /events/batch', 'GET /events/stats'],
  }))

  // The tenant routes live in their own context: the plugin applies to it, and `GET /` above
  // stays public.
  await app.register(async (api) => {
    await api.register(tenantPlugin, {
      db,
      // No header: 401 TENANT_REQUIRED; not one UUID (or the header sent twice): 400 INVALID_TENANT.
      resolve: (request) => orgIdOf(request.headers['x-org-id']),
      closePool: true,
    })

    api.get('/org', async () => {
      // No WHERE clause: the policy shows this organisation only.
      const { rows } = await db.query('select org_id, name, created_at from organization')
      return rows[0]
    })

    api.get<{ Querystring: { type?: string } }>('/events', async (request) => {
      const { rows } = await db.query(
        `select event_id, org_id, event_type, event_value, occurred_at from events
          where $1::text is null or event_type = $1 order by event_id`,
        [request.query.type ?? null],
      )
      return rows
    })

    api.get<{ Params: { id: string } }>(
      '/events/:id',
      // bigserial ids: a malformed one is a 400 from the schema, never a PostgreSQL error.
      { schema: { params: { type: 'object', properties: { id: { type: 'string', pattern: '^[1-9][0-9]{0,17}$' } } } } },
      async (request) => {
        const { rows } = await db.query(
          'select event_id, org_id, event_type, event_value, occurred_at from events where event_id = $1',
          [request.params.id],
        )
        if (rows.length === 0) throw httpError(404, 'no such event') // another's event looks absent
        return rows[0]
      },
    )

    api.post<{ Body: NewEvent }>('/events', { schema: { body: newEvent } }, async (request, reply) => {
      // org_id defaults to the request's organisation; naming another one is refused by the
      // policy's WITH CHECK (403 RLS_VIOLATION).
      return reply.code(201).send(await insertEvent(request.body))
    })

    api.post<{ Body: { events: NewEvent[] } }>(
      '/events/batch',
      {
        schema: {
          body: {
            type: 'object',
            required: ['events'],
            properties: { events: { type: 'array', minItems: 1, maxItems: 100, items: newEvent } },
          },
        },
      },
      async (request, reply) => {
        // All or nothing, for the request's organisation: one row the policy refuses and none is
        // kept.
        const created = await db.transaction(async () => {
          const out = []
          for (const event of request.body.events) out.push(await insertEvent(event))
          return out
        })
        return reply.code(201).send(created)
      },
    )

    api.get('/events/stats', async (request) => {
      const { rows } = await db.query(
        `select event_type, count(*)::int as count, coalesce(sum(event_value), 0)::int as total
           from events group by event_type order by event_type`,
      )
      return { org_id: request.tenant, stats: rows }
    })
  })
  return app
}
