/**
 * `npm run example:kysely` (or `npx tsx examples/kysely/main.ts`): runs this example alone on an
 * embedded PostgreSQL. PORT picks the port (default 3002).
 */
import { runDemos } from '../shared/demo.js'
import { start } from './index.js'

await runDemos([{ start, port: Number(process.env.PORT ?? 3002) }])
