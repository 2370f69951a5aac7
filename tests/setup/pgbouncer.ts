/**
 * Starts PgBouncer (from Debian's package, installed by .ci/run) in transaction pooling mode in
 * front of the test server, on a free loopback port, as a non-root user (PgBouncer refuses to run
 * as root). Roles come and go with every test file, so PgBouncer looks them up with an auth_query
 * run as the server's superuser rather than from a fixed user list. The query hands back the one
 * password every test login role has (TEST_ROLE_PASSWORD), in plain text: PgBouncer 1.18 could not
 * log in to PostgreSQL 18 by SCRAM pass-through with the secrets pg_shadow holds.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import net from 'node:net'
import { freePort } from './embedded.js'

/** The password of every login role the fixtures create (an ephemeral server on loopback). */
export const TEST_ROLE_PASSWORD = 'pg-tenant-test-role'

export interface RunningPgBouncer {
  readonly port: number
  stop(): Promise<void>
}

const CANDIDATES = ['/usr/sbin/pgbouncer', '/usr/bin/pgbouncer', '/usr/local/bin/pgbouncer']

/**
 * The PgBouncer binary, or undefined where none is installed. PG_TENANT_PGBOUNCER=off runs the
 * suite as if none were (to see what is skipped then).
 */
export function findPgBouncer(): string | undefined {
  if (process.env.PG_TENANT_PGBOUNCER === 'off') return undefined
  return CANDIDATES.find((file) => fs.existsSync(file))
}

/**
 * The name of the one placeholder test a block of PgBouncer tests has where PgBouncer is not
 * installed (`it.skip(NEEDS_PGBOUNCER)`): the global setup lists these at the end of the run.
 */
export const NEEDS_PGBOUNCER = 'needs PgBouncer: not installed here (.ci/run installs it and requires these tests)'

/** Server connections PgBouncer opens per database and user (`default_pool_size`). */
export const PGBOUNCER_POOL_SIZE = 6
/** The same for the small-pool PgBouncer, where clients share backends (the ORM matrix). */
export const PGBOUNCER_SMALL_POOL_SIZE = 2

export async function startPgBouncer(
  serverUrl: string,
  binary: string,
  options: { poolSize?: number; spread?: boolean } = {},
): Promise<RunningPgBouncer> {
  const poolSize = options.poolSize ?? PGBOUNCER_POOL_SIZE
  // spread: keep the whole server pool open (min_pool_size) and hand its connections out in turn
  // (server_round_robin) rather than the last one used first, so that even strictly sequential
  // transactions of one client land on different backends: anything one of them leaves at session
  // level shows up in the next.
  const spread = options.spread ? `min_pool_size = ${poolSize}\nserver_round_robin = 1\n` : ''
  const server = new URL(serverUrl)
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pg-tenant-pgbouncer-'))
  fs.chmodSync(dir, 0o755)
  const port = await freePort()
  const user = decodeURIComponent(server.username)
  const password = decodeURIComponent(server.password)
  const ini = `[databases]
* = host=${server.hostname} port=${server.port || 5432}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = ${port}
unix_socket_dir =
auth_type = scram-sha-256
auth_file = ${dir}/userlist.txt
auth_user = ${user}
auth_query = SELECT usename, '${TEST_ROLE_PASSWORD}'::text FROM pg_shadow WHERE usename = $1
pool_mode = transaction
max_client_conn = 1000
default_pool_size = ${poolSize}
${spread}server_reset_query =
ignore_startup_parameters = extra_float_digits,options
logfile = ${dir}/pgbouncer.log
`
  fs.writeFileSync(path.join(dir, 'pgbouncer.ini'), ini)
  fs.writeFileSync(path.join(dir, 'userlist.txt'), `"${user}" "${password}"\n`)
  const asRoot = process.getuid?.() === 0
  if (asRoot) {
    for (const file of fs.readdirSync(dir)) fs.chmodSync(path.join(dir, file), 0o644)
    fs.chmodSync(dir, 0o777) // the log file is created by the unprivileged user
  }
  const args = asRoot ? ['-u', 'postgres', path.join(dir, 'pgbouncer.ini')] : [path.join(dir, 'pgbouncer.ini')]
  const child: ChildProcess = spawn(binary, args, { stdio: ['ignore', 'ignore', 'pipe'] })
  let stderr = ''
  child.stderr?.on('data', (d) => (stderr += String(d)))
  await waitForPort(port, child, () => stderr || readLog(dir))
  return {
    port,
    async stop() {
      if (child.exitCode === null) {
        const exited = new Promise((resolve) => child.once('exit', resolve))
        child.kill('SIGTERM')
        await Promise.race([exited, new Promise((r) => setTimeout(r, 3000))])
        if (child.exitCode === null) child.kill('SIGKILL')
      }
      if (!process.env.PG_TENANT_KEEP_PGBOUNCER_LOG) fs.rmSync(dir, { recursive: true, force: true })
    },
  }
}

function readLog(dir: string): string {
  try {
    return fs.readFileSync(path.join(dir, 'pgbouncer.log'), 'utf8')
  } catch {
    return ''
  }
}

async function waitForPort(port: number, child: ChildProcess, why: () => string): Promise<void> {
  const deadline = Date.now() + 10_000
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`pgbouncer exited (${child.exitCode}): ${why()}`)
    const open = await new Promise<boolean>((resolve) => {
      const socket = net.connect(port, '127.0.0.1')
      socket.once('connect', () => {
        socket.destroy()
        resolve(true)
      })
      socket.once('error', () => resolve(false))
    })
    if (open) return
    await new Promise((r) => setTimeout(r, 100))
  }
  child.kill('SIGKILL')
  throw new Error(`pgbouncer did not listen on ${port} within 10 s: ${why()}`)
}
