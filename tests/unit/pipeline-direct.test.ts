/**
 * A statement with primitive values is written by pg's own Query straight after the tenant prefix
 * (no recorder). pg cannot fail there, but if a driver ever did, the prefix would sit on the wire
 * without its Sync: the socket must be destroyed and the query fail, never left for reuse. No
 * server can produce that failure, so a stand-in connection and Query play it.
 */
import { describe, expect, it } from 'vitest'
import { TenantQuery, type QueryClass } from '../../src/driver/pipeline.js'

function connection() {
  const written: string[] = []
  const stream = {
    destroyed: false,
    writable: true,
    cork() {},
    uncork() {},
    write(chunk: Uint8Array) {
      written.push(String.fromCharCode(chunk[0]!))
      return true
    },
    destroy() {
      this.destroyed = true
    },
  }
  const conn = {
    stream,
    written,
    parsedStatements: {},
    submittedNamedStatements: {},
    parse: () => written.push('P'),
    bind: () => written.push('B'),
    describe: () => written.push('D'),
    execute: () => written.push('E'),
    sync: () => written.push('S'),
    flush: () => written.push('H'),
    close: () => written.push('C'),
    query: () => written.push('Q'),
    prependListener: () => conn,
    prependOnceListener: () => conn,
    removeListener: () => conn,
  }
  return conn
}

/** A Query that fails in submit after the prefix was written, as no pg version does. */
function failingQuery(how: 'return' | 'throw'): QueryClass {
  return class {
    callback?: (err: Error | null) => void
    submit() {
      if (how === 'throw') throw new Error('driver bug')
      return new Error('driver bug')
    }
    handleRowDescription() {}
    handleDataRow() {}
    handleCommandComplete() {}
    handleEmptyQuery() {}
    handleError() {}
    handleReadyForQuery() {}
    handlePortalSuspended() {}
    handleCopyInResponse() {}
    handleCopyData() {}
  } as unknown as QueryClass
}

describe('a statement written directly after the prefix', () => {
  it.each(['return', 'throw'] as const)('whose write fails (%s): socket destroyed, query failed', async (how) => {
    const conn = connection()
    const prefix = [{ text: 'select set_config($1, $2, true)', values: ['app.tenant_id', 'org_1'] }]
    const query = new TenantQuery(failingQuery(how), { text: 'select $1::int', values: [1] }, prefix)
    expect(query.submit(conn as never)).toBeNull() // written: pg must not start another query here
    // The prefix reached the socket (so the failure left it mid-pipeline: the case under test),
    // and no Sync followed it: the server must never run the prefix as a transaction of its own.
    // Which messages the prefix is made of is the driver's business, not asserted.
    expect(conn.written.length).toBeGreaterThan(0)
    expect(conn.written).not.toContain('S')
    expect(conn.stream.destroyed).toBe(true)
    await expect(query.done).rejects.toThrow('driver bug')
  })

  it('values that are not primitives go through the recorder: a failure writes nothing', async () => {
    const conn = connection()
    const prefix = [{ text: 'select set_config($1, $2, true)', values: ['app.tenant_id', 'org_1'] }]
    const query = new TenantQuery(failingQuery('return'), { text: 'select $1', values: [{ a: 1 }] }, prefix)
    expect(query.submit(conn as never)).toBeInstanceOf(Error)
    expect(conn.written).toEqual([]) // nothing at all: the client stays usable
    expect(conn.stream.destroyed).toBe(false)
  })
})
