/**
 * `npm start`: the examples on one embedded PostgreSQL, Express on 3000, Fastify on 3001 and the
 * Kysely app on 3002 (EXPRESS_PORT, FASTIFY_PORT and KYSELY_PORT change them; a taken port falls
 * back to a free one).
 */
import { start as startExpress } from './express-salespeople/index.js'
import { start as startFastify } from './fastify-events/index.js'
import { start as startKysely } from './kysely/index.js'
import { runDemos } from './shared/demo.js'

await runDemos([
  { start: startExpress, port: Number(process.env.EXPRESS_PORT ?? 3000) },
  { start: startFastify, port: Number(process.env.FASTIFY_PORT ?? 3001) },
  { start: startKysely, port: Number(process.env.KYSELY_PORT ?? 3002) },
])
