/**
 * End to end: the Kysely example, whose queries never mention a tenant, driven over real HTTP.
 */
import { randomBytes } from 'node:crypto'
import { afterAll, beforeAll, expect, inject, it } from 'vitest'
import { DEMO_ORGANISATIONS } from '../../examples/fastify-events/database.js'
import { start } from '../../examples/kysely/index.js'
import type { RunningDemo } from '../../examples/shared/demo.js'
import { call, pooled, shuffled } from '../setup/http.js'

const name = `ex_kysely_${randomBytes(3).toString('hex')}`
let demo: RunningDemo
beforeAll(async () => {
  demo = await start({ adminUrl: inject('pgAdminUrl'), port: 0, name, log: false })
})
afterAll(async () => {
  await demo?.close()
  await demo?.drop()
})

const ORGS = DEMO_ORGANISATIONS.map((o) => o.org_id)
const as = (orgId: string) => ({ 'x-org-id': orgId })

it('shows each organisation its own rows only', async () => {
  for (const [i, org] of DEMO_ORGANISATIONS.entries()) {
    const events = await call(`${demo.url}/events`, { headers: as(org.org_id) })
    expect(events.status).toBe(200)
    expect(events.body).toHaveLength(i + 1)
    expect(events.body.every((e: { org_id: string }) => e.org_id === org.org_id)).toBe(true)
    expect((await call(`${demo.url}/org`, { headers: as(org.org_id) })).body).toMatchObject({ org_id: org.org_id })
  }
  expect((await call(`${demo.url}/events`)).status).toBe(401)
})

it('keeps a Kysely transaction atomic for the request organisation', async () => {
  const before = (await call(`${demo.url}/events/count`, { headers: as(ORGS[1]!) })).body.n
  const ok = await call(`${demo.url}/events/pair`, { headers: as(ORGS[1]!), json: { first: 'p1', second: 'p2' } })
  expect(ok.status).toBe(201)
  const failed = await call(`${demo.url}/events/pair`, { headers: as(ORGS[1]!), json: { first: 'p3', fail: true } })
  expect(failed.status).toBe(500)
  expect((await call(`${demo.url}/events/count`, { headers: as(ORGS[1]!) })).body.n).toBe(before + 2)
})

it('answers 403 when the policy refuses a row for another organisation', async () => {
  const r = await call(`${demo.url}/events`, { headers: as(ORGS[0]!), json: { event_type: 'forged', org_id: ORGS[1] } })
  expect(r.status).toBe(403)
})

it('keeps 120 interleaved requests of three organisations apart', async () => {
  const results = await pooled(
    shuffled(Array.from({ length: 120 }, (_, i) => i)).map((i) => async () => {
      const org = ORGS[i % 3]!
      const r =
        i % 4 === 0
          ? await call(`${demo.url}/events`, { headers: as(org), json: { event_type: 'load', event_value: i } })
          : await call(`${demo.url}/events?type=load`, { headers: as(org) })
      return { org, r }
    }),
    16,
  )
  let seen = 0
  for (const { org, r } of results) {
    expect(r.status).toBeLessThan(300)
    const rows = Array.isArray(r.body) ? r.body : [r.body]
    seen += rows.length
    for (const row of rows) expect(row.org_id).toBe(org)
  }
  expect(seen).toBeGreaterThan(120) // the reads saw their organisation's earlier writes
})
