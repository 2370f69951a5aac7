/**
 * End to end: the express-salespeople example, started in-process on a free port against the test
 * server, driven over real HTTP.
 */
import { randomBytes } from 'node:crypto'
import pg from 'pg'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { inject } from 'vitest'
import { start } from '../../examples/express-salespeople/index.js'
import type { RunningDemo } from '../../examples/shared/demo.js'
import { call, pooled, shuffled } from '../setup/http.js'
import { callRepeated, expectError, expectNoLeak } from './example-checks.js'

const name = `ex_sales_${randomBytes(3).toString('hex')}`
const adminToken = 'test-admin-token'
let demo: RunningDemo
beforeAll(async () => {
  demo = await start({ adminUrl: inject('pgAdminUrl'), port: 0, name, log: false, adminToken })
})
afterAll(async () => {
  await demo?.close()
  await demo?.drop()
})

const as = (id: number) => ({ 'x-salesperson-id': String(id) })
const admin = { authorization: `Bearer ${adminToken}` }

it("shows each salesperson their own clients only (seed 000's data)", async () => {
  const picard = await call(`${demo.url}/clients`, { headers: as(1) })
  expect(picard.status).toBe(200)
  expect(picard.body.map((c: { name: string }) => c.name)).toEqual(['client1'])
  const crusher = await call(`${demo.url}/clients`, { headers: as(2) })
  expect(crusher.body.map((c: { name: string }) => c.name)).toEqual(['client2', 'client3'])
  expect((await call(`${demo.url}/me`, { headers: as(2) })).body).toEqual({
    role: `${name}_sp_2`,
    id: 2,
    name: 'Crusher',
  })
  // Another salesperson's client looks absent.
  expectError(await call(`${demo.url}/clients/2`, { headers: as(1) }), 404, 'NOT_FOUND')
  expect((await call(`${demo.url}/clients/2`, { headers: as(2) })).status).toBe(200)
})

it('creates a database role when a salesperson is created, and isolates them at once', async () => {
  expect((await call(`${demo.url}/admin/salespeople`, { json: { name: 'Riker' } })).status).toBe(401)
  const awkward = `Robert"); drop table clients; --`
  const created = await call(`${demo.url}/admin/salespeople`, { headers: admin, json: { name: awkward } })
  expect(created.status).toBe(201)
  expect(created.body).toMatchObject({ name: awkward, role: `${name}_sp_${created.body.id}` })

  // The role exists, is in the group and may be switched to by the login role, which does not
  // inherit it.
  const server = new pg.Client({ connectionString: inject('pgAdminUrl') })
  await server.connect()
  try {
    const { rows } = await server.query(
      `select pg_has_role($1, $2, 'member') as in_group,
              pg_has_role($3, $2, 'usage') as app_inherits,
              pg_has_role($3, $2, 'member') as app_member,
              r.rolcanlogin, r.rolsuper, r.rolbypassrls
         from pg_roles r where r.rolname = $2`,
      [`${name}_group`, created.body.role, `${name}_app`],
    )
    expect(rows).toEqual([
      { in_group: false, app_inherits: false, app_member: true, rolcanlogin: false, rolsuper: false, rolbypassrls: false },
    ])
    const { rows: group } = await server.query(`select pg_has_role($1, $2, 'member') as ok`, [
      created.body.role,
      `${name}_group`,
    ])
    expect(group).toEqual([{ ok: true }])
  } finally {
    await server.end()
  }

  const id = created.body.id as number
  expect((await call(`${demo.url}/clients`, { headers: as(id) })).body).toEqual([])
  const added = await call(`${demo.url}/clients`, { headers: as(id), json: { name: 'client of riker' } })
  expect(added).toMatchObject({ status: 201, body: { salesperson_id: id } })
  expect((await call(`${demo.url}/clients`, { headers: as(id) })).body).toHaveLength(1)
})

it('keeps interleaved requests of three salespeople apart', async () => {
  const ids = [1, 2]
  const third = await call(`${demo.url}/admin/salespeople`, { headers: admin, json: { name: 'Troi' } })
  ids.push(third.body.id)
  const results = await pooled(
    shuffled(Array.from({ length: 90 }, (_, i) => ids[i % 3]!)).map((id, i) => async () => {
      const r =
        i % 3 === 0
          ? await call(`${demo.url}/clients`, { headers: as(id), json: { name: `c${i}` } })
          : await call(`${demo.url}/clients`, { headers: as(id) })
      return { id, r }
    }),
    12,
  )
  let seen = 0
  for (const { id, r } of results) {
    expect(r.status).toBeLessThan(300)
    const rows = Array.isArray(r.body) ? r.body : [r.body]
    seen += rows.length
    for (const row of rows) expect(row.salesperson_id).toBe(id)
  }
  expect(seen).toBeGreaterThan(90)
})

// The same mistakes get the same status and body in the three examples (the Fastify and Kysely
// tests run the same list): { error: { code, message } }, with no SQL, PostgreSQL message or role
// name in it.
it('answers each mistake with the status and body every example gives it, naming no role', async () => {
  const roles = [`${name}_`, 'sales_sp', 'sales_app']
  const expectAnswer = (reply: Awaited<ReturnType<typeof call>>, status: number, code: string) =>
    expectError(reply, status, code, roles)

  // No tenant: 401, for a read and a write.
  expectAnswer(await call(`${demo.url}/clients`), 401, 'TENANT_REQUIRED')
  expectAnswer(await call(`${demo.url}/clients`, { json: { name: 'x' } }), 401, 'TENANT_REQUIRED')
  // A malformed tenant: 400.
  expectAnswer(await call(`${demo.url}/clients`, { headers: { 'x-salesperson-id': '1 or 1=1' } }), 400, 'INVALID_TENANT')
  expectAnswer(await call(`${demo.url}/clients`, { headers: { 'x-salesperson-id': '99999999999' } }), 400, 'INVALID_TENANT')
  // The tenant header sent twice, as two header lines: Node joins them into "1, 2". 400.
  const twice = await callRepeated(`${demo.url}/clients`, { 'x-salesperson-id': ['1', '2'] })
  expectAnswer(twice, 400, 'INVALID_TENANT')
  // A write for another tenant, which the policy refuses: 403, and nothing written.
  const forged = await call(`${demo.url}/clients`, { headers: as(1), json: { name: 'forged', salesperson_id: 2 } })
  expectAnswer(forged, 403, 'RLS_VIOLATION')
  expect((await call(`${demo.url}/clients`, { headers: as(2) })).body.map((c: { name: string }) => c.name)).not.toContain('forged')
  // A role PostgreSQL refuses (a salesperson id with no role): 403, without the role's name or
  // PostgreSQL's "role ... does not exist".
  expectAnswer(await call(`${demo.url}/clients`, { headers: as(999) }), 403, 'ROLE_SWITCH_FAILED')
  expectAnswer(await call(`${demo.url}/me`, { headers: as(999) }), 403, 'ROLE_SWITCH_FAILED')
  // A malformed id in the path, a malformed body: 400, never a PostgreSQL error.
  expectAnswer(await call(`${demo.url}/clients/abc`, { headers: as(1) }), 400, 'BAD_REQUEST')
  expectAnswer(await call(`${demo.url}/clients/99999999999`, { headers: as(1) }), 400, 'BAD_REQUEST')
  for (const json of [{}, { name: '' }, { name: 'x\u0000' }, { name: 'x', salesperson_id: 'two' }, { name: 'x', salesperson_id: 2 ** 40 }]) {
    expectAnswer(await call(`${demo.url}/clients`, { headers: as(1), json }), 400, 'BAD_REQUEST')
  }
  const notJson = await fetch(`${demo.url}/clients`, {
    method: 'POST',
    headers: { ...as(1), 'content-type': 'application/json' },
    body: '{"name": ',
  })
  expectAnswer({ status: notJson.status, body: await notJson.json() }, 400, 'BAD_REQUEST')
  // Not found: another's client looks absent, and so does a route that does not exist.
  expectAnswer(await call(`${demo.url}/clients/2`, { headers: as(1) }), 404, 'NOT_FOUND')
  expectAnswer(await call(`${demo.url}/nowhere`, { headers: as(1) }), 404, 'NOT_FOUND')
})

it('creates a batch of clients in one transaction, or none', async () => {
  const ok = await call(`${demo.url}/clients/batch`, { headers: as(2), json: { clients: [{ name: 'b1' }, { name: 'b2' }] } })
  expect(ok.status).toBe(201)
  expect(ok.body.map((c: { name: string }) => c.name)).toEqual(['b1', 'b2'])
  const before = (await call(`${demo.url}/clients`, { headers: as(2) })).body.length
  // The second row is Picard's, which the policy refuses: the first is rolled back too.
  const forged = await call(`${demo.url}/clients/batch`, {
    headers: as(2),
    json: { clients: [{ name: 'b3' }, { name: 'b4', salesperson_id: 1 }] },
  })
  expectError(forged, 403, 'RLS_VIOLATION', [`${name}_`])
  expect((await call(`${demo.url}/clients`, { headers: as(2) })).body).toHaveLength(before)
  // A malformed item is refused before anything is written.
  const bad = await call(`${demo.url}/clients/batch`, { headers: as(2), json: { clients: [{ name: 'b5' }, { name: 7 }] } })
  expectError(bad, 400, 'BAD_REQUEST')
  expect(bad.body.error.message).toMatch(/clients\[1\]/)
  expectNoLeak(bad)
  expect((await call(`${demo.url}/clients`, { headers: as(2) })).body).toHaveLength(before)
})
