/** The forms db.query accepts, and PostgreSQL errors reaching the caller unchanged. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createTenantPool, InvalidQueryError } from '../setup/pg-tenant.js'
import { createTestDatabase, type TestDatabase } from '../setup/fixtures.js'

let t: TestDatabase
beforeAll(async () => {
  t = await createTestDatabase()
})
afterAll(() => t.drop())

describe.each(['withTenant', 'runWithTenant'] as const)('db.query in %s', (how) => {
  const run = <T>(db: ReturnType<typeof createTenantPool>, fn: () => Promise<T>) =>
    how === 'withTenant' ? db.withTenant('org_q', fn) : db.runWithTenant('org_q', fn)

  it('accepts text with and without values', async () => {
    const db = createTenantPool(t.pool({ max: 1 }))
    const a = await run(db, () => db.query<{ n: number }>('select 2 + 2 as n'))
    const b = await run(db, () => db.query<{ s: string }>('select $1::text as s', ["it's"]))
    expect(a.rows).toEqual([{ n: 4 }])
    expect(b.rows).toEqual([{ s: "it's" }])
    expect(b.command).toBe('SELECT')
    expect(b.fields.map((f) => f.name)).toEqual(['s'])
  })

  it('accepts a config object with rowMode, types and a statement name', async () => {
    const db = createTenantPool(t.pool({ max: 1 }))
    const arrays = await run(db, () =>
      db.query({ text: 'select 1 as a, $1::text as b', values: ['x'], rowMode: 'array' }),
    )
    expect(arrays.rows).toEqual([[1, 'x']])
    const types = { getTypeParser: () => (value: string) => `<${value}>` }
    const parsed = await run(db, () => db.query({ text: 'select 7 as n', types }))
    expect(parsed.rows).toEqual([{ n: '<7>' }])
    for (let i = 0; i < 2; i++) {
      const named = await run(db, () =>
        db.query({ name: 'pgt_named', text: 'select $1::int + 1 as n', values: [i] }),
      )
      expect(named.rows).toEqual([{ n: i + 1 }])
    }
  })

  it('passes PostgreSQL errors through unchanged', async () => {
    const db = createTenantPool(t.pool({ max: 1 }))
    const err = await run(db, () => db.query('select * from no_such_table')).catch((e: unknown) => e)
    expect(err).toMatchObject({ code: '42P01', message: 'relation "no_such_table" does not exist' })
    const rls = await run(db, () =>
      db.query(`insert into events (org_id, kind) values ('another_org', 'forged')`),
    ).catch((e: unknown) => e)
    expect(rls).toMatchObject({ code: '42501' })
    expect((rls as Error).message).toMatch(/row-level security/)
  })

  it('rejects something that is not a query with InvalidQueryError', async () => {
    const db = createTenantPool(t.pool({ max: 1 }))
    await expect(run(db, () => db.query(42 as never))).rejects.toBeInstanceOf(InvalidQueryError)
  })
})
