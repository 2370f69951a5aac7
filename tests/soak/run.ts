/**
 * `npm run soak`: the torture test (tests/soak/torture.ts) at length, on a fresh embedded
 * PostgreSQL on loopback (or DATABASE_URL, a superuser URL), with a database, roles and schema of
 * its own that it drops afterwards.
 *
 *   npm run soak                                   1,000,000 operations, at most 60 minutes
 *   npm run soak -- --operations 200000 --minutes 10 --seed 42   (the seed is printed first: replay with it)
 *   npm run soak -- --operations 50000 --weight pg_terminate_backend=10   (more of one fault)
 *   PG_TENANT_SOAK_SERVER_LOG=1 npm run soak                 (the server's log too: checkpoints, slow statements)
 *   npm run soak -- --synchronous-commit on                  (commits wait for the disk, as by default)
 *
 * The embedded server runs with synchronous_commit = off unless told otherwise: on the disks of our
 * CI machines a WAL flush sometimes takes over a second (the server logged COMMITs of 1.6 s), which
 * holds every client of the small pool and times out the checkouts queued behind them, a stall of
 * the disk, not of pg-tenant. Commits are still atomic and visible at once; only a server crash
 * could lose the last ones, and the soak crashes no server. DATABASE_URL runs as that server is.
 *
 * Prints progress every 50,000 operations and the full report at the end; exits 1 if any
 * invariant failed.
 */
import { parseArgs } from 'node:util'
import { startEmbeddedPostgres } from '../../scripts/embedded-postgres.mjs'
import { createDatabase } from '../setup/database.js'
import { formatReport, parseSeed, runTorture } from './torture.js'

const { values } = parseArgs({
  options: {
    operations: { type: 'string', default: '1000000' },
    minutes: { type: 'string', default: '60' },
    seed: { type: 'string' },
    concurrency: { type: 'string', default: '16' },
    // e.g. --weight pg_terminate_backend=10: inject more of one fault (names as in the report).
    weight: { type: 'string', multiple: true, default: [] },
    'synchronous-commit': { type: 'string', default: 'off' },
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
let seed: number
try {
  seed = parseSeed(values.seed)
} catch (err) {
  console.error((err as Error).message)
  process.exit(2)
}
const commitModes = ['on', 'off', 'local', 'remote_write', 'remote_apply']
if (!Number.isInteger(operations) || operations < 1 || !(minutes > 0) || !commitModes.includes(values['synchronous-commit'])) {
  console.error(
    'usage: npm run soak -- [--operations N] [--minutes M] [--seed S] [--concurrency C] [--weight kind=n]... ' +
      '[--synchronous-commit on|off]',
  )
  process.exit(2)
}

const server = process.env.DATABASE_URL
  ? { url: process.env.DATABASE_URL, stop: async () => {} }
  : await startEmbeddedPostgres(
      // PG_TENANT_SOAK_SERVER_LOG=1: the server's log on stdout, with checkpoints and statements
      // slower than 500 ms, to tell a stalled server from a stalled client.
      {
        log: process.env.PG_TENANT_SOAK_SERVER_LOG === '1',
        settings: {
          synchronous_commit: values['synchronous-commit'],
          ...(process.env.PG_TENANT_SOAK_SERVER_LOG === '1'
            ? { log_checkpoints: 'on', log_min_duration_statement: '500', log_line_prefix: '%m [%p] ' }
            : {}),
        },
      },
    )
const db = await createDatabase(server.url, 0)
let failed = true
try {
  const version = (await db.admin<{ v: string }>('select version() as v')).rows[0]!.v
  const commit = (await db.admin<{ s: string }>("select current_setting('synchronous_commit') as s")).rows[0]!.s
  console.log(
    `soak: ${operations.toLocaleString('en')} operations, at most ${minutes} min, on ${version}, ` +
      `synchronous_commit ${commit}, Node ${process.version}`,
  )
  // First, so that a run that hangs or crashes can still be replayed.
  console.log(`soak: seed ${seed} (replay the same operations: npm run soak -- --seed ${seed} with the same options)`)
  const started = Date.now()
  const report = await runTorture({
    appUrl: db.appUrl,
    adminUrl: db.adminUrl,
    roles: db.roles.sales,
    operations,
    timeLimitMs: minutes * 60_000,
    concurrency: Number(values.concurrency),
    weights,
    seed,
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
