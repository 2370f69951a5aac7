/**
 * End to end: the Kysely example, whose queries never mention a tenant, driven over real HTTP.
 */
import { randomBytes } from 'node:crypto'
import { afterAll, beforeAll, expect, inject, it } from 'vitest'
import { DEMO_ORGANISATIONS } from '../../examples/fastify-events/database.js'
import { start } from '../../examples/kysely/index.js'
import type { RunningDemo } from '../../examples/shared/demo.js'
import { call, pooled, shuffled } from '../setup/http.js'
import { expectError, expectEventsApiMistakes } from './example-checks.js'

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
  expectError(await call(`${demo.url}/events`), 401, 'TENANT_REQUIRED')
})

it('keeps a Kysely transaction atomic for the request organisation', async () => {
  const before = (await call(`${demo.url}/events/count`, { headers: as(ORGS[1]!) })).body.n
  const pair = (first: string, second: object, fail = false) => ({ first: { event_type: first }, second, fail })
  const ok = await call(`${demo.url}/events/pair`, { headers: as(ORGS[1]!), json: pair('p1', { event_type: 'p2' }) })
  expect(ok.status).toBe(201)
  // The route throws between the inserts: 500, with nothing of the error in the body.
  const failed = await call(`${demo.url}/events/pair`, { headers: as(ORGS[1]!), json: pair('p3', { event_type: 'p4' }, true) })
  expectError(failed, 500, 'INTERNAL_SERVER_ERROR')
  expect(failed.body.error.message).toBe('Internal Server Error')
  // The second row is another organisation's, which the policy refuses: 403, the first rolled back.
  const forged = await call(`${demo.url}/events/pair`, {
    headers: as(ORGS[1]!),
    json: pair('p5', { event_type: 'p6', org_id: ORGS[0] }),
  })
  expectError(forged, 403, 'RLS_VIOLATION')
  expect((await call(`${demo.url}/events/count`, { headers: as(ORGS[1]!) })).body.n).toBe(before + 2)
})

// The same mistakes get the same status and body in the three examples (the Express and Fastify
// tests run the same list): { error: { code, message } }, with no SQL or PostgreSQL message in it.
it('answers each mistake with the status and body every example gives it', async () => {
  await expectEventsApiMistakes(demo.url, ORGS, [`${name}_`])
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
