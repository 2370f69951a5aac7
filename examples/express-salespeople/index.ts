/**
 * Starts the salespeople example on a PostgreSQL server: creates its database, roles, schema and
 * demo data (seed 000: Picard with one client, Crusher with two), then serves the Express app.
 */
import http from 'node:http'
import { randomBytes } from 'node:crypto'
import pg from 'pg'
import { createTenantPool } from '../../src/index.js'
import { listenHttp, type DemoOptions, type RunningDemo } from '../shared/demo.js'
import { createSalesApp } from './app.js'
import { createSalesDatabase, createSalesperson } from './database.js'

/** `adminToken`: the bearer token of the admin routes (default: a random one, printed). */
export async function start(options: DemoOptions & { adminToken?: string }): Promise<RunningDemo> {
  const log = options.log ?? true
  const database = await createSalesDatabase(options.adminUrl, options.name ?? 'sales')
  const appPool = new pg.Pool({ connectionString: database.appUrl, max: 10 })
  const adminPool = new pg.Pool({ connectionString: database.adminUrl, max: 2 })
  // An idle client whose server went away emits 'error': log it rather than crash.
  for (const pool of [appPool, adminPool]) pool.on('error', (err) => log && console.error('pg pool:', err.message))

  // Only the salesperson roles may be switched to, whatever a request claims.
  const db = createTenantPool(appPool, { roles: [database.salespersonRole] })

  const picard = await createSalesperson(adminPool, database, 'Picard')
  const crusher = await createSalesperson(adminPool, database, 'Crusher')
  await db.withTenant({ role: picard.role }, () =>
    db.query(`insert into clients (name) values ('client1')`),
  )
  await db.withTenant({ role: crusher.role }, async () => {
    await db.query(`insert into clients (name) values ('client2')`)
    await db.query(`insert into clients (name) values ('client3')`)
  })

  const adminToken = options.adminToken ?? randomBytes(12).toString('hex')
  const server = http.createServer(createSalesApp({ db, admin: adminPool, database, adminToken, log }))
  const url = await listenHttp(server, options.port ?? 3000)
  const json = `-H 'content-type: application/json'`
  return {
    title: 'express-salespeople (seed 000: a database role per salesperson)',
    url,
    // The probe acts as two salespeople: each must see only their own clients and their own row
    // of `salespeople`, and change nothing of the other's.
    probe: {
      url: database.appUrl,
      args: ['--role', picard.role, '--role', crusher.role],
    },
    curl: [
      `curl -s ${url}/clients -H 'x-salesperson-id: ${picard.id}'            # Picard: client1 only`,
      `curl -s ${url}/clients -H 'x-salesperson-id: ${crusher.id}'            # Crusher: client2, client3`,
      `curl -s ${url}/me -H 'x-salesperson-id: ${crusher.id}'`,
      `curl -s ${url}/clients/2 -H 'x-salesperson-id: ${picard.id}'          # 404: Crusher's client`,
      `curl -s ${url}/clients -H 'x-salesperson-id: ${picard.id}' ${json} -d '{"name":"client4"}'`,
      `curl -s ${url}/clients -H 'x-salesperson-id: ${picard.id}' ${json} -d '{"name":"x","salesperson_id":${crusher.id}}'  # 403 by policy`,
      `curl -s ${url}/clients/batch -H 'x-salesperson-id: ${crusher.id}' ${json} -d '{"clients":[{"name":"a"},{"name":"b"}]}'`,
      `curl -s ${url}/clients                                         # 401: no salesperson`,
      `curl -s ${url}/clients -H 'x-salesperson-id: 1 or 1=1'         # 400: not a salesperson id`,
      `curl -s ${url}/clients -H 'x-salesperson-id: 999'              # 403: no such role`,
      `curl -s ${url}/admin/salespeople -H 'authorization: Bearer ${adminToken}' ${json} -d '{"name":"Riker"}'  # creates role ${database.roleOf('<id>')}`,
    ],
    async close() {
      await new Promise<void>((resolve) => {
        server.close(() => resolve())
        server.closeAllConnections()
      })
      await Promise.allSettled([db.end(), adminPool.end()])
    },
    drop: () => database.drop(),
  }
}
