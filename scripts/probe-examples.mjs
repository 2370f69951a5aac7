// `npm run probe:examples` (and a CI step): runs `pg-tenant probe` (the built dist/cli.js) against
// each example app's database, as its login role, with the tenants the example seeds. Starts an
// embedded PostgreSQL, creates and seeds each example through its own start() (port 0, quiet),
// probes it, and exits 1 if any probe did not exit 0. Each probe's table is printed as it is.
import { execFile } from 'node:child_process'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { register } from 'tsx/esm/api'
import { startEmbeddedPostgres } from './embedded-postgres.mjs'

register() // the examples are TypeScript
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const cli = path.join(root, 'dist/cli.js')

const examples = [
  { name: 'express-salespeople', module: '../examples/express-salespeople/index.ts', database: 'probe_sales' },
  { name: 'fastify-events', module: '../examples/fastify-events/index.ts', database: 'probe_events' },
  { name: 'kysely', module: '../examples/kysely/index.ts', database: 'probe_kysely' },
]

function probe(args) {
  return new Promise((resolve) => {
    execFile(process.execPath, [cli, 'probe', ...args], { timeout: 120_000 }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : 2, stdout, stderr })
    })
  })
}

const postgres = await startEmbeddedPostgres()
let failed = 0
try {
  for (const example of examples) {
    const { start } = await import(example.module)
    const demo = await start({ adminUrl: postgres.url, port: 0, log: false, name: example.database })
    try {
      const args = ['--url', demo.probe.url, ...demo.probe.args]
      console.log(`\n== ${example.name}: pg-tenant probe ${demo.probe.args.join(' ')}`)
      const { code, stdout, stderr } = await probe(args)
      process.stdout.write(stdout)
      process.stderr.write(stderr)
      console.log(`exit code ${code}`)
      if (code !== 0) failed++
    } finally {
      await demo.close()
      await demo.drop()
    }
  }
} finally {
  await postgres.stop()
}
if (failed > 0) {
  console.error(`\n${failed} example(s) did not pass the probe`)
  process.exitCode = 1
} else {
  console.log('\nevery example passed the probe')
}
