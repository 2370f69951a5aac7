/**
 * The pg range pg-tenant is tested with, and the pg these tests run on.
 *
 * - `peerDependencies.pg` in package.json starts at PG_FLOOR, the oldest pg 8.x on which the whole
 *   suite passes; scripts/pg-matrix.sh runs the tests that exercise the driver on that floor
 *   (`floor` reads it from package.json), a middle version and the latest (.ci/run). Moving the
 *   floor means changing PG_FLOOR here, package.json and the README's "Versions" line together.
 * - The pg installed in node_modules (the one every test imports) is at or above the floor, so a
 *   matrix run cannot test a pg outside the range without failing here.
 * - What sets the floor, from the bottom up: pg's Query writes its statement's Sync inside `submit`
 *   and nothing from its result handlers since 8.4.1 (checked below: before, pg sent Sync only once
 *   CommandComplete or an error came back, so pg-tenant's statements behind the caller's were never
 *   sent, and a failing tenant statement left the connection waiting for a Sync forever). pg's
 *   Connection wrote a Flush before every Sync until 8.9.0, which the tests that compare wire
 *   messages do not expect. And 8.16.3 is where `@prisma/adapter-pg` 7's own dependency range
 *   (`pg ^8.16.3`) begins: with an older pg, npm installs it a second copy, whose `PrismaPg` does
 *   not take `db.pool` for a `pg.Pool` and opens a pool of its own.
 *
 * No database is needed: the pool is never connected.
 */
import fs from 'node:fs'
import { createRequire } from 'node:module'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import pg from 'pg'
import { describe, expect, it } from 'vitest'

/** The oldest pg 8.x the whole suite passes on; `peerDependencies.pg` starts here. */
const PG_FLOOR = '8.16.3'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..')
const require = createRequire(import.meta.url)

type Version = [number, number, number]

function parse(version: string): Version {
  const match = /^(\d+)\.(\d+)\.(\d+)/.exec(version)
  if (!match) throw new Error(`not a version: ${version}`)
  return [Number(match[1]), Number(match[2]), Number(match[3])]
}

function compare(a: string, b: string): number {
  const [x, y] = [parse(a), parse(b)]
  for (let i = 0; i < 3; i++) if (x[i] !== y[i]) return x[i]! - y[i]!
  return 0
}

/** The version in the nearest package.json named `name` at or above `file`. */
function packageVersionAt(file: string, name: string): string | undefined {
  for (let dir = path.dirname(file); ; dir = path.dirname(dir)) {
    const candidate = path.join(dir, 'package.json')
    if (fs.existsSync(candidate)) {
      const pkg = JSON.parse(fs.readFileSync(candidate, 'utf8')) as { name?: string; version?: string }
      if (pkg.name === name) return pkg.version
    }
    if (path.dirname(dir) === dir) return undefined
  }
}

/**
 * The version of the pg a pool's Client class was loaded from: the module whose exports are that
 * class (pg/lib/client.js, or pg/lib/native for pg-native), then its package.json. The way
 * pg-tenant can name the pg it refuses: `require('pg/package.json')` throws
 * ERR_PACKAGE_PATH_NOT_EXPORTED on pg 8.15.0 to 8.16.0, and a sibling `require.resolve('pg')` may
 * find another copy than the application's.
 */
function pgVersionOfPool(pool: object): string | undefined {
  // pg-pool keeps the Client class it makes clients with; @types/pg does not declare it.
  const Client = (pool as { Client?: unknown }).Client
  if (typeof Client !== 'function') return undefined
  for (const mod of Object.values(require.cache)) {
    if (mod !== undefined && mod.exports === Client) return packageVersionAt(mod.filename, 'pg')
  }
  return undefined
}

const installed = packageVersionAt(require.resolve('pg'), 'pg')!

describe('the pg range', () => {
  it(`peerDependencies.pg starts at the tested floor, ${PG_FLOOR}, and stays below 9`, () => {
    const pkg = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')) as {
      peerDependencies: Record<string, string>
    }
    const range = pkg.peerDependencies.pg!
    // `^8.x.y` or `>=8.x.y <9`: the forms the README and scripts/pg-matrix.sh (`floor`) understand.
    const caret = /^\^(8\.\d+\.\d+)$/.exec(range)
    const bounded = /^>=\s*(8\.\d+\.\d+)\s+<\s*9(\.0\.0)?$/.exec(range)
    expect(caret ?? bounded, `peerDependencies.pg is "${range}"`).not.toBeNull()
    expect((caret ?? bounded)![1]).toBe(PG_FLOOR)
  })

  it('runs on a pg at or above the floor', () => {
    expect(parse(installed)[0]).toBe(8)
    expect(compare(installed, PG_FLOOR), `pg ${installed} is below the floor ${PG_FLOOR}`).toBeGreaterThanOrEqual(0)
    // scripts/pg-matrix.sh names the version it installed: the tests really import that one.
    const wanted = process.env.PG_MATRIX_PG
    if (wanted) expect(installed).toBe(wanted)
  })

  it("finds the version of the pg a pool comes from through the module that exports the pool's Client", () => {
    const pool = new pg.Pool()
    expect(pgVersionOfPool(pool)).toBe(installed)
    return pool.end()
  })

  /** pg's Query run against a connection that records what is written, as pg-tenant's Recorder does. */
  function dryRun(text: string, values: unknown[]) {
    const calls: string[] = []
    const record = (name: string) => () => void calls.push(name)
    const connection = {
      parsedStatements: {},
      submittedNamedStatements: {},
      stream: {},
      parse: record('parse'),
      bind: record('bind'),
      describe: record('describe'),
      execute: record('execute'),
      flush: record('flush'),
      sync: record('sync'),
      close: record('close'),
      query: record('query'),
    }
    type QueryLike = {
      callback?: (err: Error | null) => void
      submit(c: unknown): unknown
      handleCommandComplete(msg: unknown, c: unknown): void
      handleReadyForQuery(c: unknown): void
      handleError(err: Error, c: unknown): void
    }
    const Query = (pg.Client as unknown as { Query: new (text: string, values: unknown[]) => QueryLike }).Query
    const query = new Query(text, values)
    query.callback = () => {}
    return { calls, connection, query, submitted: query.submit(connection) }
  }

  it("relies on pg's Query writing its Sync inside submit, after Parse, Bind, Describe and Execute", () => {
    const { calls, submitted } = dryRun('select $1::text', ['x'])
    expect(submitted).toBeNull()
    // pg < 8.4.1: [..., 'execute', 'flush'], and the Sync only once CommandComplete came back.
    expect(calls).toEqual(['parse', 'bind', 'describe', 'execute', 'sync'])
  })

  it("relies on pg's Query writing nothing from its CommandComplete, ReadyForQuery and error handlers", () => {
    const done = dryRun('select $1::text', ['x'])
    done.calls.length = 0
    done.query.handleCommandComplete({ text: 'SELECT 0', command: 'SELECT', rowCount: 0 }, done.connection)
    done.query.handleReadyForQuery(done.connection)
    const failed = dryRun('select $1::text', ['x'])
    failed.calls.length = 0
    failed.query.handleError(new Error('the server refused it'), failed.connection)
    // pg < 8.4.1 wrote a Sync from each (`if (this.isPreparedStatement) connection.sync()`).
    expect([...done.calls, ...failed.calls]).toEqual([])
  })
})
