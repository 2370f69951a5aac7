/**
 * The prefix's Bind + Execute, encoded by pg-tenant once per tenant, must be byte for byte what
 * pg's own serializer (pg-protocol) writes for the same messages.
 */
import { serialize } from 'pg-protocol'
import { describe, expect, it } from 'vitest'
import { bindAndExecute } from '../../src/driver/wire.js'

const pgBytes = (statement: string, values: string[]) =>
  Buffer.concat([serialize.bind({ statement, values }), serialize.execute({})])

describe('bindAndExecute', () => {
  it.each([
    ['ascii', ['app.tenant_id', 'org_42']],
    ['utf-8', ['app.tenant_id', 'société_😀_東京']],
    ['three values', ['app.tenant_id', 'org_1', 'sales_7']],
    ['no values', []],
  ])('matches pg-protocol: %s', (_, values) => {
    expect(bindAndExecute('pg_tenant_0123456789abcdef', values)).toEqual(pgBytes('pg_tenant_0123456789abcdef', values))
  })
})
