/**
 * What the driver needs from the installed pg, checked once, when a pool is wrapped, so that a pg
 * it cannot drive is refused with an error that says why, never run into a wrong result or a hang.
 *
 * The pool's Client class (pg-pool keeps it as `pool.Client`) is all there is to look at then: no
 * connection is opened. Its Query class is dry-run against a recording stand-in for a Connection:
 * - it must be node-postgres' JavaScript Query (pg-native's has none of its handlers);
 * - its `submit` must write a statement with values as Parse, Bind, Describe, Execute, Sync and
 *   return no error: pg before 8.4.1 wrote Flush there and sent the Sync only once the result came
 *   back, so what pg-tenant writes after the statement (the reset) would never be sent, and a
 *   failing tenant statement would leave the connection waiting for a Sync;
 * - its result and error handlers must write nothing (the same versions wrote Sync from them).
 * pg's own pipeline mode (`pipeline: true`, pg 8.23) is refused too: pg-tenant sends one statement
 * at a time. A pool look-alike without `Client` is checked on its first client instead
 * ({@link checkClient}).
 */
import { createRequire } from 'node:module'
import fs from 'node:fs'
import path from 'node:path'
import { InternalError, InvalidOptionsError } from '../errors.js'
import type { PgClientLike } from './types.js'

const HANDLERS = [
  'submit',
  'handleRowDescription',
  'handleDataRow',
  'handleCommandComplete',
  'handleEmptyQuery',
  'handleError',
  'handleReadyForQuery',
  'handlePortalSuspended',
  'handleCopyInResponse',
  'handleCopyData',
] as const
const STATEMENT_WRITES = 'parse,bind,describe,execute,sync'

/**
 * Checks the pg behind `pool`. Throws `InvalidOptionsError`, naming the pg version and what it
 * lacks, when the driver cannot drive it; does nothing for a pool look-alike without `Client`.
 */
export function checkPool(pool: object): void {
  const Client = (pool as { Client?: unknown }).Client
  if (typeof Client !== 'function') return
  if ((pool as { options?: { pipeline?: unknown } }).options?.pipeline) {
    throw refuse(Client, "the pool's clients use pg's pipeline mode (pipeline: true), which pg-tenant does not drive")
  }
  const missing = missingCapability(Client as { Query?: unknown })
  if (missing !== undefined) throw refuse(Client, missing)
}

/** What the Client class lacks, or undefined when the driver can drive it. */
function missingCapability(Client: { Query?: unknown }): string | undefined {
  const Query = Client.Query as (new (config: object) => Record<string, (...args: unknown[]) => unknown>) | undefined
  const prototype = (Query as { prototype?: Record<string, unknown> } | undefined)?.prototype
  if (typeof Query !== 'function' || prototype === undefined || HANDLERS.some((name) => typeof prototype[name] !== 'function')) {
    const native = typeof prototype?.then === 'function' || typeof (Client as { prototype?: { native?: unknown } }).prototype?.native !== 'undefined'
    return native
      ? 'it is a pg-native client; pg-tenant needs node-postgres\' JavaScript client (pg.Pool, not pg.native.Pool)'
      : "its Query is not node-postgres' (no submit and result handlers); pg-tenant needs node-postgres' JavaScript client"
  }
  const noop = () => undefined
  try {
    const query = new Query({ text: 'select $1::text', values: ['pg-tenant'], callback: noop })
    const connection = recordingConnection()
    const refused = query.submit!(connection)
    if (refused) return `its Query refused a plain statement (${String(refused)})`
    if (connection.calls.join(',') !== STATEMENT_WRITES) {
      return `its Query writes a statement as ${connection.calls.join(', ')}, not ending with Sync (pg-tenant needs pg 8.4.1 or later)`
    }
    connection.calls.length = 0
    query.handleCommandComplete!({ text: 'SELECT 1', command: 'SELECT', rowCount: 1 }, connection)
    query.handleReadyForQuery!(connection)
    const failing = new Query({ text: 'select $1::text', values: ['pg-tenant'], callback: noop })
    failing.submit!(recordingConnection())
    failing.handleError!(new InternalError('capability check (never thrown)'), connection)
    if (connection.calls.length > 0) {
      return `its Query writes ${connection.calls.join(', ')} from its result handlers (pg-tenant needs pg 8.4.1 or later)`
    }
  } catch (err) {
    return `its Query failed a dry run (${err instanceof Error ? err.message : String(err)})`
  }
  return undefined
}

/** A stand-in for pg's Connection that records what a Query writes on it. */
function recordingConnection(): Record<string, unknown> & { calls: string[] } {
  const calls: string[] = []
  const record = (name: string) => () => {
    calls.push(name)
  }
  return {
    calls,
    parsedStatements: {},
    submittedNamedStatements: {},
    stream: { cork: noop, uncork: noop },
    parse: record('parse'),
    bind: record('bind'),
    describe: record('describe'),
    execute: record('execute'),
    sync: record('sync'),
    flush: record('flush'),
    close: record('close'),
    query: record('query'),
    sendCopyFail: record('sendCopyFail'),
  }
}

function noop(): void {}

/**
 * Checks a checked-out client the pool-time check could not see (a pool look-alike's, or a
 * client a subclass set up differently): returns why the driver cannot drive it, or undefined.
 */
export function checkClient(client: PgClientLike): string | undefined {
  const candidate = client as unknown as {
    pipeline?: unknown
    connection?: { parse?: unknown; sync?: unknown; prependListener?: unknown; parsedStatements?: unknown; stream?: { write?: unknown } }
  }
  if (candidate.pipeline === true) return "the client uses pg's pipeline mode (pipeline: true), which pg-tenant does not drive"
  const connection = candidate.connection
  if (
    typeof connection?.parse !== 'function' ||
    typeof connection.sync !== 'function' ||
    typeof connection.prependListener !== 'function' ||
    typeof connection.parsedStatements !== 'object' ||
    typeof connection.stream?.write !== 'function'
  ) {
    return "the client is not node-postgres' JavaScript client (pg 8.x, not pg-native)"
  }
  return undefined
}

function refuse(Client: unknown, why: string): InvalidOptionsError {
  return new InvalidOptionsError(`pg-tenant cannot drive pg ${pgVersionOf(Client) ?? '(version unknown)'}: ${why}`)
}

/**
 * The version of the pg a Client class was loaded from: the module whose exports are that class
 * (pg/lib/client.js, or pg/lib/native), then the nearest package.json named pg. Only looked up to
 * name it in an error. (`require('pg/package.json')` throws on pg 8.15.0 to 8.16.0, and a
 * `require.resolve('pg')` from here may find another copy than the application's.)
 */
export function pgVersionOf(Client: unknown): string | undefined {
  try {
    // require.cache is one for the process, whichever module asks (and import.meta cannot be written
    // in code that is also built as CommonJS).
    for (const mod of Object.values(createRequire(path.join(process.cwd(), 'pg-tenant.js')).cache)) {
      if (mod !== undefined && mod.exports === Client) return versionAt(mod.filename)
    }
  } catch {
    // no module cache to read (a bundle): the version stays unknown
  }
  return undefined
}

function versionAt(file: string): string | undefined {
  for (let dir = path.dirname(file); path.dirname(dir) !== dir; dir = path.dirname(dir)) {
    const candidate = path.join(dir, 'package.json')
    if (!fs.existsSync(candidate)) continue
    const pkg = JSON.parse(fs.readFileSync(candidate, 'utf8')) as { name?: string; version?: string }
    if (pkg.name === 'pg') return pkg.version
  }
  return undefined
}
