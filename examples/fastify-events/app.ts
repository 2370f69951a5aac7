/**
 * The Fastify app of the events example. In your own code the imports are `from 'pg-tenant'` and
 * `from 'pg-tenant/fastify'`; the examples import the sources so that they run without a build.
 */
import Fastify, { type FastifyError, type FastifyInstance } from 'fastify'
import { tenantPlugin } from '../../src/adapters/fastify.js'
import { InvalidTenantError, isRlsViolation, type TenantPool } from '../../src/index.js'

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i

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
    event_value: { type: 'integer' },
    // Accepted so that the demo can show the policy refusing a row for another organisation.
    org_id: { type: 'string', format: 'uuid' },
  },
} as const

/** `log`: log 5xx errors to the console (default true). */
export async function createEventsApp(db: TenantPool, log = true): Promise<FastifyInstance> {
  const app = Fastify({ logger: false })

  // A write the policy refuses (42501) is the tenant's doing: 403, not 500.
  app.setErrorHandler((err: FastifyError, _request, reply) => {
    if (isRlsViolation(err)) {
      return reply.code(403).send({ error: 'forbidden: the row-level security policy refused this write' })
    }
    const status = err.statusCode ?? 500
    if (status >= 500 && log) console.error(err)
    return reply.code(status).send({ error: status >= 500 ? 'internal error' : err.message, code: err.code })
  })

  app.get('/', async () => ({
    example: 'fastify-events: a tenant id in app.tenant_id, RLS on organization and events',
    routes: ['GET /org', 'GET /events', 'POST /events', 'POST /events/batch', 'GET /events/stats'],
  }))

  // The tenant routes live in their own context: the plugin applies to it, and `GET /` above
  // stays public.
  await app.register(async (api) => {
    await api.register(tenantPlugin, {
      db,
      // In a real app the organisation comes from a verified token or the session.
      resolve: (request) => {
        const orgId = request.headers['x-org-id']
        if (orgId === undefined) return undefined // 401
        if (typeof orgId !== 'string' || !UUID.test(orgId)) {
          throw new InvalidTenantError('x-org-id must be an organisation UUID') // 400
        }
        return orgId.toLowerCase()
      },
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

    api.post<{ Body: NewEvent }>('/events', { schema: { body: newEvent } }, async (request, reply) => {
      const { event_type, event_value = null, org_id } = request.body
      // org_id defaults to the request's organisation; naming another one is refused by the
      // policy's WITH CHECK.
      const returning = 'returning event_id, org_id, event_type, event_value, occurred_at'
      const { rows } =
        org_id === undefined
          ? await db.query(`insert into events (event_type, event_value) values ($1, $2) ${returning}`, [
              event_type,
              event_value,
            ])
          : await db.query(
              `insert into events (org_id, event_type, event_value) values ($1, $2, $3) ${returning}`,
              [org_id, event_type, event_value],
            )
      return reply.code(201).send(rows[0])
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
        // All or nothing, for the request's organisation.
        const created = await db.transaction(async () => {
          const out = []
          for (const { event_type, event_value = null } of request.body.events) {
            const { rows } = await db.query(
              `insert into events (event_type, event_value) values ($1, $2) returning event_id, org_id, event_type`,
              [event_type, event_value],
            )
            out.push(rows[0])
          }
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
