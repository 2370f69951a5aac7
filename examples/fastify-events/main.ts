/**
 * `npm run example:fastify` (or `npx tsx examples/fastify-events/main.ts`): runs this example
 * alone on an embedded PostgreSQL. PORT picks the port (default 3001).
 */
import { runDemos } from '../shared/demo.js'
import { start } from './index.js'

await runDemos([{ start, port: Number(process.env.PORT ?? 3001) }])
