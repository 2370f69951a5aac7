/**
 * parseDatabaseUrl (src/cli/database-url.ts), the check every CLI subcommand runs on --url and
 * DATABASE_URL before pg's lenient parser sees it. tests/integration/cli.test.ts runs it through
 * the built command line.
 */
import { describe, expect, it } from 'vitest'
import { describeDatabaseUrl, parseDatabaseUrl } from '../../src/cli/database-url.js'
import { UsageError } from '../../src/cli/usage-error.js'
import { TenantPoolError } from '../../src/errors.js'

const failure = (raw: string, options?: Parameters<typeof parseDatabaseUrl>[1]): UsageError => {
  try {
    parseDatabaseUrl(raw, options)
  } catch (err) {
    return err as UsageError
  }
  throw new UsageError(`accepted ${raw}`)
}

describe('parseDatabaseUrl', () => {
  it.each([
    ['postgres://app:s3cret@db.internal:5433/shop', 'db.internal:5433/shop'],
    ['postgresql://db/shop?sslmode=verify-full', 'db/shop'],
    ['POSTGRES://db/shop', 'db/shop'],
    ['postgres://[::1]:5432/shop', '[::1]:5432/shop'],
    ['postgres://app@/shop', 'localhost/shop'],
    ['postgres:///shop?host=/var/run/postgresql', '/var/run/postgresql/shop'],
    ['socket:/var/run/postgresql?db=shop', '/var/run/postgresql/shop'],
  ])('accepts %s (%s)', (raw, where) => {
    const url = parseDatabaseUrl(raw)
    expect(url).toBeInstanceOf(URL)
    expect(describeDatabaseUrl(url)).toBe(where)
    expect(describeDatabaseUrl(url)).not.toContain('s3cret')
  })

  it.each([
    ['not-a-url', 'it does not start with postgres:// or postgresql://'],
    ['app:s3cret@db/shop', 'it does not start with postgres:// or postgresql://'],
    ['http://app:s3cret@db/shop', 'its scheme is "http:"'],
    ['postgres://x:s3cret@:badport/db', 'its port is not a number from 1 to 65535'],
    ['postgres://x:s3cret@db:65536/db', 'its port is not a number from 1 to 65535'],
    ['postgres://db:0/shop', 'its port is 0'],
    ['postgres://db/shop?port=abc', 'its port parameter is not a number'],
    ['postgres://x:s3c#ret@db/shop', 'not percent-encoded'],
    ['/var/run/postgresql shop', 'write socket:/path/to/dir?db=name'],
    ['   ', 'it is empty'],
  ])('refuses %s with a usage error naming the problem, never the password', (raw, problem) => {
    const err = failure(raw, { command: 'probe' })
    expect(err).toBeInstanceOf(UsageError)
    expect(err).toBeInstanceOf(TenantPoolError)
    expect(err.code).toBe('CLI_USAGE')
    expect(err.command).toBe('probe')
    expect(err.message).toMatch(/^--url is not a PostgreSQL connection URL: /)
    expect(err.message).toContain(problem)
    expect(err.message).not.toContain('s3c')
  })

  it('names where the string came from', () => {
    expect(failure('mysql://db/x', { source: 'DATABASE_URL' }).message).toMatch(/^DATABASE_URL is not/)
  })
})
