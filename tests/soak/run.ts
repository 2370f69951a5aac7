/**
 * `npm run soak`: the torture test (tests/soak/torture.ts) at length, on a fresh embedded
 * PostgreSQL on loopback (or DATABASE_URL, a superuser URL), with a database, roles and schema of
 * its own that it drops afterwards.
 *
 *   npm run soak                                   1,000,000 operations, at most 60 minutes
 *   npm run soak -- --operations 200000 --minutes 10 --seed 42
 *   npm run soak -- --operations 50000 --weight pg_terminate_backend=10   (more of one fault)
 *   PG_TENANT_SOAK_SERVER_LOG=1 npm run soak                 (the server's log too: checkpoints, slow statements)
 *
 * Prints progress every 50,000 operations and the full report at the end; exits 1 if any
 * invariant failed.
 */
import { parseArgs } from 'node:util'
import { startEmbeddedPostgres } from '../../scripts/embedded-postgres.mjs'
import { createDatabase } from '../setup/database.js'
import { formatReport, runTorture } from './torture.js'

const { values } = parseArgs({
  options: {
    operations: { type: 'string', default: '1000000' },
    minutes: { type: 'string', default: '60' },
    seed: { type: 'string' },
    concurrency: { type: 'string', default: '16' },
    // e.g. --weight pg_terminate_backend=10: inject more of one fault (names as in the report).
    weight: { type: 'string', multiple: true, default: [] },
  },
})
const weights = Object.fromEntries(
  values.weight.map((w) => {
    const at = w.lastIndexOf('=')
    return [w.slice(0, at), Number(w.slice(at + 1))]
  }),
)
const operations = Number(values.operations)
const minutes = Number(values.minutes)
if (!Number.isInteger(operations) || operations < 1 || !(minutes > 0)) {
  console.error('usage: npm run soak -- [--operations N] [--minutes M] [--seed S] [--concurrency C] [--weight kind=n]...')
  process.exit(2)
}

const server = process.env.DATABASE_URL
  ? { url: process.env.DATABASE_URL, stop: async () => {} }
  : await startEmbeddedPostgres(
      // PG_TENANT_SOAK_SERVER_LOG=1: the server's log on stdout, with checkpoints and statements
      // slower than 500 ms, to tell a stalled server from a stalled client.
      process.env.PG_TENANT_SOAK_SERVER_LOG === '1'
        ? {
            log: true,
            settings: { log_checkpoints: 'on', log_min_duration_statement: '500', log_line_prefix: '%m [%p] ' },
          }
        : {},
    )
const db = await createDatabase(server.url, 0)
let failed = true
try {
  const version = (await db.admin<{ v: string }>('select version() as v')).rows[0]!.v
  console.log(`soak: ${operations.toLocaleString('en')} operations, at most ${minutes} min, on ${version}, Node ${process.version}`)
  const started = Date.now()
  const report = await runTorture({
    appUrl: db.appUrl,
    adminUrl: db.adminUrl,
    roles: db.roles.sales,
    operations,
    timeLimitMs: minutes * 60_000,
    concurrency: Number(values.concurrency),
    weights,
    ...(values.seed === undefined ? {} : { seed: Number(values.seed) }),
    progressEvery: 50_000,
    onProgress: (r) => {
      const rate = Math.round(r.operations / ((Date.now() - started) / 1000))
      console.log(
        `  ${r.operations.toLocaleString('en')} operations, ${rate}/s: ${r.terminations} terminations, ` +
          `${r.hogs} exhaustions, ${r.stats.verified} releases verified, dirty ${r.stats.dirty}, ` +
          `foreign rows ${r.foreignRowsRead}, unexpected ${r.unexpected.length}, violations ${r.violations.length}`,
      )
    },
  })
  console.log(`\n${formatReport(report)}`)
  failed = report.violations.length > 0
} finally {
  await db.drop()
  await server.stop()
}
process.exit(failed ? 1 : 0)
