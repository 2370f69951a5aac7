/**
 * A pg the driver cannot drive is refused when the pool is wrapped, with InvalidOptionsError naming
 * the pg version and what it lacks (src/driver/capabilities.ts): never a wrong result, never a
 * hang. Checked against a real pg from before the floor (pg 8.4.0, a devDependency alias), the
 * installed one, and stand-ins for what cannot be installed here (pg-native needs libpq headers to
 * build).
 */
import { createRequire } from 'node:module'
import pg from 'pg'
import { describe, expect, it } from 'vitest'
import { checkClient, checkPool, pgVersionOf } from '../../src/driver/index.js'
import { InvalidOptionsError } from '../../src/errors.js'
import { createTenantPool } from '../../src/index.js'

const require = createRequire(import.meta.url)
const installed = (require('pg/package.json') as { version: string }).version
const OldPg = require('pg-8-4-0') as typeof pg

/** A pool-like object whose clients are of class `Client`. */
const poolOf = (Client: unknown, options: object = {}) => ({ Client, options, connect: async () => ({}), end: async () => undefined })

describe('checkPool', () => {
  it('accepts the installed pg', () => {
    expect(() => checkPool(new pg.Pool())).not.toThrow()
    expect(() => createTenantPool(new pg.Pool())).not.toThrow()
  })

  it('refuses pg 8.4.0 by name: its Query sends Sync only after the result', () => {
    const attempt = () => createTenantPool(new OldPg.Pool() as never)
    expect(attempt).toThrow(InvalidOptionsError)
    expect(attempt).toThrow(/cannot drive pg 8\.4\.0: its Query writes a statement as parse, bind, describe, execute, flush/)
    expect(attempt).toThrow(/pg 8\.4\.1 or later/)
  })

  it("refuses pg's pipeline mode", () => {
    expect(() => checkPool(new pg.Pool({ pipeline: true } as pg.PoolConfig))).toThrow(
      new RegExp(`cannot drive pg ${installed.replaceAll('.', '\\.')}: .*pipeline mode`),
    )
  })

  it('refuses a client whose Query is not node-postgres\' JavaScript one, naming pg-native when it looks like it', () => {
    class NativeQuery {
      then() {}
    }
    expect(() => checkPool(poolOf(class { static Query = NativeQuery }))).toThrow(/pg-native client/)
    expect(() => checkPool(poolOf(class {}))).toThrow(/its Query is not node-postgres'/)
    expect(() => checkPool(poolOf(class {}))).toThrow(/pg \(version unknown\)/)
  })

  it('refuses a Query that writes from its result handlers', () => {
    // pg's Query, whose handleError also writes a Sync (as pg before 8.4.1 did). @types/pg does not
    // declare the handlers, so the method is replaced on a subclass's prototype.
    class SyncingQuery extends pg.Query {}
    const handleError = (pg.Query.prototype as unknown as { handleError: (err: Error, connection: unknown) => unknown }).handleError
    Object.defineProperty(SyncingQuery.prototype, 'handleError', {
      value(this: unknown, err: Error, connection: { sync(): void }) {
        connection.sync()
        return handleError.call(this, err, connection)
      },
    })
    expect(() => checkPool(poolOf(class { static Query = SyncingQuery }))).toThrow(/writes sync from its result handlers/)
  })

  it('leaves a pool look-alike without Client to the check on its first client', () => {
    expect(() => checkPool({ connect: async () => ({}), end: async () => undefined })).not.toThrow()
  })
})

describe('checkClient', () => {
  it("accepts node-postgres' client and refuses what is not it", () => {
    const client = new pg.Client()
    expect(checkClient(client as never)).toBeUndefined()
    expect(checkClient({ release() {} } as never)).toMatch(/not node-postgres' JavaScript client/)
    expect(checkClient(Object.assign(new pg.Client(), { pipeline: true }) as never)).toMatch(/pipeline mode/)
  })
})

describe('pgVersionOf', () => {
  it('names the copy of pg a Client class was loaded from', () => {
    expect(pgVersionOf(pg.Client)).toBe(installed)
    expect(pgVersionOf(OldPg.Client)).toBe('8.4.0')
    expect(pgVersionOf(class {})).toBeUndefined()
  })
})
