/**
 * Only src/driver touches node-postgres' internals. A pg minor release can change them (the
 * Connection's writer, its named-statement bookkeeping, the Query class and its handlers, the
 * client's queue and connection), and a reader must be able to tell which files are allowed to:
 * this test fails when any other file under src/ names one of them. (tests/unit/import-graph.test.ts
 * checks that src/ has no import cycle.)
 */
import fs from 'node:fs'
import path from 'node:path'
import { describe, expect, it } from 'vitest'

const SRC = path.resolve(import.meta.dirname, '../../src')
const DRIVER = path.join(SRC, 'driver')

// pg's private (or version-dependent) surface, as code would reach it.
const PG_INTERNALS: Array<[string, RegExp]> = [
  ["the client's connection", /\.connection\b|\bconnection\?\./],
  ['the socket', /\.stream\b/],
  ["pg's named-statement bookkeeping", /parsedStatements|submittedNamedStatements/],
  ["the client's queue and active query", /_?queryQueue|_?activeQuery|_pulseQueryQueue/],
  ["pg's Query class and its result", /\.Query\b|_result\b|\bconstructor\?\.\s*Query/],
  ['the submittable protocol', /handleReadyForQuery|handleRowDescription|handleDataRow|handleCommandComplete|handlePortalSuspended/],
  ["the connection's event order", /prependListener|prependOnceListener/],
  ["the client's private state", /_txStatus|_ending|_queryable|_connecting|\bprocessID\b|getTransactionStatus/],
]

function sources(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const file = path.join(dir, entry.name)
    if (entry.isDirectory()) return sources(file)
    return entry.name.endsWith('.ts') ? [file] : []
  })
}

/** The code of a file, without its comments and string literals' contents (names in prose are fine). */
function code(file: string): string {
  return fs
    .readFileSync(file, 'utf8')
    .replace(/\/\*[\s\S]*?\*\//g, '')
    .replace(/(^|[^:'"`])\/\/.*$/gm, '$1')
}

describe('the driver boundary', () => {
  const outside = sources(SRC).filter((file) => !file.startsWith(DRIVER + path.sep))

  it('finds the files it checks', () => {
    expect(outside.length).toBeGreaterThan(20)
    expect(outside.some((f) => f.endsWith(path.join('scope', 'scope.ts')))).toBe(true)
  })

  for (const [what, pattern] of PG_INTERNALS) {
    it(`nothing outside src/driver touches ${what}`, () => {
      const offenders = outside.filter((file) => pattern.test(code(file))).map((file) => path.relative(SRC, file))
      expect(offenders).toEqual([])
    })
  }

  it('would catch one (the check can fail)', () => {
    expect(PG_INTERNALS.some(([, pattern]) => pattern.test('client.connection.stream.write(x)'))).toBe(true)
    const driverFiles = sources(DRIVER)
    expect(driverFiles.some((file) => PG_INTERNALS.some(([, pattern]) => pattern.test(code(file))))).toBe(true)
  })
})
