/**
 * End to end: the fastify-events example, started in-process on a free port against the test
 * server, driven over real HTTP.
 */
import { randomBytes } from 'node:crypto'
import { afterAll, beforeAll, expect, inject, it } from 'vitest'
import { DEMO_ORGANISATIONS } from '../../examples/fastify-events/database.js'
import { start } from '../../examples/fastify-events/index.js'
import type { RunningDemo } from '../../examples/shared/demo.js'
import { call, pooled, shuffled } from '../setup/http.js'
import { expectError, expectEventsApiMistakes } from './example-checks.js'

const name = `ex_events_${randomBytes(3).toString('hex')}`
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

it('shows each organisation its own events and organisation only', async () => {
  for (const [i, org] of DEMO_ORGANISATIONS.entries()) {
    const events = await call(`${demo.url}/events`, { headers: as(org.org_id) })
    expect(events.status).toBe(200)
    expect(events.body).toHaveLength(i + 1) // the demo data: 1, 2 and 3 events
    expect(events.body.every((e: { org_id: string }) => e.org_id === org.org_id)).toBe(true)
    expect((await call(`${demo.url}/org`, { headers: as(org.org_id) })).body).toMatchObject(org)
  }
  // An organisation that does not exist sees nothing at all.
  const nobody = await call(`${demo.url}/events`, { headers: as('00000000-0000-4000-8000-000000000000') })
  expect(nobody).toMatchObject({ status: 200, body: [] })
  // The public route needs no tenant.
  expect((await call(`${demo.url}/`)).status).toBe(200)
})

it('keeps 120 interleaved reads and writes of three organisations apart', async () => {
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
  expect(seen).toBeGreaterThan(120)
  const stats = await call(`${demo.url}/events/stats`, { headers: as(ORGS[0]!) })
  expect(stats.body.org_id).toBe(ORGS[0])
  expect(stats.body.stats.find((s: { event_type: string }) => s.event_type === 'load').count).toBe(10)
})

// The same mistakes get the same status and body in the three examples (the Express and Kysely
// tests run the same list): { error: { code, message } }, with no SQL or PostgreSQL message in it.
it('answers each mistake with the status and body every example gives it', async () => {
  await expectEventsApiMistakes(demo.url, ORGS, [`${name}_`])
})

it('writes a batch of events in one transaction, or none', async () => {
  const org = ORGS[2]!
  const ok = await call(`${demo.url}/events/batch`, {
    headers: as(org),
    json: { events: [{ event_type: 'b1' }, { event_type: 'b2', event_value: 2 }] },
  })
  expect(ok.status).toBe(201)
  expect(ok.body.map((e: { org_id: string }) => e.org_id)).toEqual([org, org])
  // The second row is another organisation's, which the policy refuses: the first is rolled back
  // with it.
  const forged = await call(`${demo.url}/events/batch`, {
    headers: as(org),
    json: { events: [{ event_type: 'b3' }, { event_type: 'b4', org_id: ORGS[0] }] },
  })
  expectError(forged, 403, 'RLS_VIOLATION')
  expect((await call(`${demo.url}/events?type=b3`, { headers: as(org) })).body).toEqual([])
  expect((await call(`${demo.url}/events?type=b4`, { headers: as(ORGS[0]!) })).body).toEqual([])
})
