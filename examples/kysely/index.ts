/**
 * Starts the Kysely example on a PostgreSQL server, on the events schema of the fastify-events
 * example (organisations, events with a UUID org_id, policies on app.tenant_id).
 */
import http from 'node:http'
import pg from 'pg'
import { createTenantPool } from '../../src/index.js'
import { createEventsDatabase, DEMO_ORGANISATIONS } from '../fastify-events/database.js'
import { listenHttp, type DemoOptions, type RunningDemo } from '../shared/demo.js'
import { createKyselyApp } from './app.js'

export async function start(options: DemoOptions): Promise<RunningDemo> {
  const log = options.log ?? true
  const database = await createEventsDatabase(options.adminUrl, options.name ?? 'kysely_events')
  const pool = new pg.Pool({ connectionString: database.appUrl, max: 10 })
  pool.on('error', (err) => log && console.error('pg pool:', err.message))
  const db = createTenantPool(pool)
  for (const [i, org] of DEMO_ORGANISATIONS.entries()) {
    await db.withTenant(org.org_id, async () => {
      for (let k = 0; k <= i; k++) await db.query('insert into events (event_type, event_value) values ($1, $2)', ['seed', k])
    })
  }
  const { app, kysely } = createKyselyApp(db, log)
  const server = http.createServer(app)
  const url = await listenHttp(server, options.port ?? 3002)
  const [acme, globex] = DEMO_ORGANISATIONS
  return {
    title: 'kysely (queries without tenants, scoped by the middleware)',
    url,
    probe: { url: database.appUrl, args: DEMO_ORGANISATIONS.flatMap((org) => ['--tenant', org.org_id]) },
    curl: [
      `curl -s ${url}/events -H 'x-org-id: ${acme!.org_id}'`,
      `curl -s ${url}/events/count -H 'x-org-id: ${globex!.org_id}'`,
      `curl -s ${url}/events -H 'x-org-id: ${acme!.org_id}' -H 'content-type: application/json' -d '{"event_type":"login"}'`,
      `curl -s ${url}/events -H 'x-org-id: ${acme!.org_id}' -H 'content-type: application/json' -d '{"event_type":"x","org_id":"${globex!.org_id}"}'  # 403 by policy`,
      `curl -s ${url}/events/pair -H 'x-org-id: ${acme!.org_id}' -H 'content-type: application/json' -d '{"first":{"event_type":"a"},"second":{"event_type":"b"}}'`,
      `curl -s ${url}/events -H 'x-org-id: not-a-uuid'     # 400`,
      `curl -s ${url}/events                              # 401: no organisation`,
    ],
    async close() {
      await new Promise<void>((resolve) => server.close(() => resolve()))
      await kysely.destroy() // ends db.pool, which ends the wrapped pool
    },
    drop: () => database.drop(),
  }
}
