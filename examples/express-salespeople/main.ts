/**
 * `npm run example:express` (or `npx tsx examples/express-salespeople/main.ts`): runs this example
 * alone on an embedded PostgreSQL. PORT picks the port (default 3000).
 */
import { runDemos } from '../shared/demo.js'
import { start } from './index.js'

await runDemos([{ start, port: Number(process.env.PORT ?? 3000) }])
