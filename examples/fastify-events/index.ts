/**
 * Starts the events example on a PostgreSQL server: creates its database, roles, schema and demo
 * data (three organisations, a few events each, written as each organisation), then serves the
 * Fastify app.
 */
import pg from 'pg'
import { createTenantPool } from '../../src/index.js'
import type { DemoOptions, RunningDemo } from '../shared/demo.js'
import { createEventsApp } from './app.js'
import { createEventsDatabase, DEMO_ORGANISATIONS } from './database.js'

export async function start(options: DemoOptions): Promise<RunningDemo> {
  const log = options.log ?? true
  const database = await createEventsDatabase(options.adminUrl, options.name ?? 'events')
  const pool = new pg.Pool({ connectionString: database.appUrl, max: 10 })
  // An idle client whose server went away emits 'error': log it rather than crash.
  pool.on('error', (err) => log && console.error('pg pool:', err.message))
  const db = createTenantPool(pool, { setting: 'app.tenant_id' })

  const demo: Array<[string, number]> = [
    ['signup', 1],
    ['login', 1],
    ['purchase', 40],
  ]
  for (const [i, org] of DEMO_ORGANISATIONS.entries()) {
    await db.withTenant(org.org_id, async () => {
      for (const [type, value] of demo.slice(0, i + 1)) {
        await db.query('insert into events (event_type, event_value) values ($1, $2)', [type, value * (i + 1)])
      }
    })
  }

  const app = await createEventsApp(db, log) // closes the pool when the app closes
  const port = options.port ?? 3001
  try {
    await app.listen({ port, host: '127.0.0.1' })
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE' || port === 0) throw err
    await app.listen({ port: 0, host: '127.0.0.1' })
  }
  const url = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`
  const [acme, globex] = DEMO_ORGANISATIONS
  const json = `-H 'content-type: application/json'`
  return {
    title: 'fastify-events (seed 004: a tenant id in app.tenant_id)',
    url,
    probe: { url: database.appUrl, args: DEMO_ORGANISATIONS.flatMap((org) => ['--tenant', org.org_id]) },
    curl: [
      `curl -s ${url}/events -H 'x-org-id: ${acme!.org_id}'     # Acme's events only`,
      `curl -s ${url}/events -H 'x-org-id: ${globex!.org_id}'     # Globex's events only`,
      `curl -s ${url}/org -H 'x-org-id: ${globex!.org_id}'`,
      `curl -s ${url}/events/stats -H 'x-org-id: ${globex!.org_id}'`,
      `curl -s ${url}/events -H 'x-org-id: ${acme!.org_id}' ${json} -d '{"event_type":"login","event_value":1}'`,
      `curl -s ${url}/events -H 'x-org-id: ${acme!.org_id}' ${json} -d '{"event_type":"x","org_id":"${globex!.org_id}"}'  # 403 by policy`,
      `curl -s ${url}/events/batch -H 'x-org-id: ${acme!.org_id}' ${json} -d '{"events":[{"event_type":"a"},{"event_type":"b"}]}'`,
      `curl -s ${url}/events -H 'x-org-id: not-a-uuid'     # 400`,
      `curl -s ${url}/events -H 'x-org-id: ${acme!.org_id}' -H 'x-org-id: ${globex!.org_id}'  # 400: the header twice`,
      `curl -s ${url}/events                              # 401: no organisation`,
    ],
    close: () => app.close(),
    drop: () => database.drop(),
  }
}
