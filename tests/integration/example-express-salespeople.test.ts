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
  expect((await call(`${demo.url}/clients/2`, { headers: as(1) })).status).toBe(404)
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

it('answers 403 for a write the policy refuses, 401 without and 400 for a malformed salesperson', async () => {
  const forged = await call(`${demo.url}/clients`, { headers: as(1), json: { name: 'x', salesperson_id: 2 } })
  expect(forged.status).toBe(403)
  expect((await call(`${demo.url}/clients`, { headers: as(2) })).body.map((c: { name: string }) => c.name)).not.toContain('x')
  expect((await call(`${demo.url}/clients`)).status).toBe(401)
  expect((await call(`${demo.url}/clients`, { headers: { 'x-salesperson-id': '1 or 1=1' } })).status).toBe(400)
  // A salesperson id with no role: PostgreSQL refuses the switch.
  const ghost = await call(`${demo.url}/clients`, { headers: as(999) })
  expect(ghost.status).toBe(403)
  expect(ghost.body.code).toBe('ROLE_SWITCH_FAILED')
})

it('creates a batch of clients in one transaction, or none', async () => {
  const ok = await call(`${demo.url}/clients/batch`, { headers: as(2), json: { names: ['b1', 'b2'] } })
  expect(ok.status).toBe(201)
  expect(ok.body.map((c: { name: string }) => c.name)).toEqual(['b1', 'b2'])
  const before = (await call(`${demo.url}/clients`, { headers: as(2) })).body.length
  // The second insert fails in PostgreSQL (text cannot hold NUL): the first is rolled back too.
  const bad = await call(`${demo.url}/clients/batch`, { headers: as(2), json: { names: ['b3', 'b\u0000'] } })
  expect(bad.status).toBe(500)
  expect((await call(`${demo.url}/clients`, { headers: as(2) })).body).toHaveLength(before)
})
