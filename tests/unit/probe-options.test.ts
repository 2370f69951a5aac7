/**
 * The probe's option checks and output helpers, which need no database: bad options are refused
 * with InvalidOptionsError before anything connects; the exit code follows the entries' statuses.
 */
import { describe, expect, it } from 'vitest'
import { InvalidOptionsError } from '../../src/errors.js'
import { normalizeProbeOptions } from '../../src/probe/options.js'
import { validateConnectionUrl } from '../../src/probe/url.js'
import { formatProbe, probeExitCode, type ProbeEntry } from '../../src/testing/index.js'

const url = 'postgres://app@localhost/app'

describe('normalizeProbeOptions', () => {
  it('fills in the defaults, and the allow-list from the tenants roles', () => {
    const s = normalizeProbeOptions({ connectionString: url, tenants: [{ role: 'r1' }, { role: 'r2', id: 'x' }] })
    expect(s.roles).toEqual(['r1', 'r2'])
    expect(s.tenants.map((t) => t.label)).toEqual(['r1', 'x/r2'])
    expect([s.setting, s.schemas, s.maxRows, [...s.shared]]).toEqual(['app.tenant_id', null, 10_000, []])
  })

  it.each([
    [{ connectionString: url, tenants: ['a'] }, /at least two/],
    [{ connectionString: url, tenants: ['a', 'a'] }, /different/],
    [{ connectionString: url, tenants: ['a', ''] }, /tenant id or an object/],
    [{ tenants: ['a', 'b'] }, /exactly one of pool and connectionString/],
    [{ connectionString: url, pool: {} as never, tenants: ['a', 'b'] }, /exactly one/],
    [{ connectionString: 'mysql://x/y', tenants: ['a', 'b'] }, /postgres:\/\//],
    [{ connectionString: url, tenants: ['a', 'b'], schemas: [] }, /schemas/],
    [{ connectionString: url, tenants: ['a', 'b'], shared: ['nodot'] }, /schema-qualified/],
    [{ connectionString: url, tenants: ['a', 'b'], maxRows: 0 }, /maxRows/],
    [{ connectionString: url, tenants: ['a', 'b'], setting: 'nodot' }, /setting/],
    [{ connectionString: url, tenants: ['a', 'b'], tenant: 'a' }, /unknown probeIsolation option "tenant"/],
  ])('refuses %j', (options, message) => {
    expect(() => normalizeProbeOptions(options as never)).toThrow(InvalidOptionsError)
    expect(() => normalizeProbeOptions(options as never)).toThrow(message)
  })

  it('accepts postgres: and postgresql: URLs only, without echoing them', () => {
    expect(validateConnectionUrl('postgresql://u:secret@h/d')).toBe('postgresql://u:secret@h/d')
    expect(() => validateConnectionUrl('h:5432/d?password=secret')).toThrow(/^(?!.*secret)/)
    expect(() => validateConnectionUrl('not a url secret')).toThrow(/not a PostgreSQL connection URL/)
  })
})

describe('probeExitCode and formatProbe', () => {
  const entry = (table: string, status: ProbeEntry['status']): ProbeEntry => ({
    table,
    kind: 'table',
    ok: status === 'pass',
    status,
    shared: false,
    identity: { kind: 'ctid' },
    noTenantRows: 0,
    tenantRows: [{ tenant: 'a', rows: 1 }, { tenant: 'b', rows: 1 }],
    leaks: [],
    notes: [],
    reason: 'r',
    fix: null,
  })

  it('is 0 when every checked table passed, 1 on a leak or an error, 2 when nothing was checked', () => {
    expect(probeExitCode([entry('s.a', 'pass'), entry('s.b', 'skipped')])).toBe(0)
    expect(probeExitCode([entry('s.a', 'pass'), entry('s.b', 'leak')])).toBe(1)
    expect(probeExitCode([entry('s.a', 'pass'), entry('s.b', 'error')])).toBe(1)
    expect(probeExitCode([entry('s.b', 'skipped')])).toBe(2)
    expect(probeExitCode([])).toBe(2)
  })

  it('prints a row per table and a summary', () => {
    const text = formatProbe([entry('s.a', 'pass'), entry('s.b', 'skipped')])
    expect(text.split('\n').slice(0, 4)).toEqual([
      'TABLE  NO TENANT  a  b  VERDICT',
      '-----  ---------  -  -  -------',
      's.a    0          1  1  pass',
      's.b    0          1  1  skipped',
    ])
    expect(text).toMatch(/^1 passed, 0 leaking, 0 failed, 1 skipped/m)
  })
})
