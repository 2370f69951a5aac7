/**
 * What the example apps' end-to-end tests (example-*.test.ts) and the adapter tests share: a
 * request that sends a header more than once, and the check that an error answer has the one
 * shape every example uses (pg-tenant's errorResponseOf) and leaks nothing of the database.
 */
import http from 'node:http'
import { expect } from 'vitest'
import { call, type Reply } from '../setup/http.js'

/**
 * One request with node:http that sends each header of `headers` given as an array once per value,
 * as separate header lines (fetch would join them into one line, `a, b`, which is another thing).
 * `json` is sent as a JSON body (then the method is POST).
 */
export function callRepeated<T = any>(
  url: string,
  headers: Record<string, string | string[]>,
  json?: unknown,
): Promise<Reply<T> & { text: string }> {
  const body = json === undefined ? undefined : JSON.stringify(json)
  return new Promise((resolve, reject) => {
    const req = http.request(
      url,
      {
        method: body === undefined ? 'GET' : 'POST',
        headers: body === undefined ? headers : { ...headers, 'content-type': 'application/json' },
      },
      (res) => {
        let text = ''
        res.setEncoding('utf8')
        res.on('data', (chunk: string) => (text += chunk))
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, body: text === '' ? undefined : JSON.parse(text), text }),
        )
        res.on('error', reject)
      },
    )
    req.on('error', reject)
    req.end(body)
  })
}

/**
 * What no response body may contain: SQL, PostgreSQL's messages and SQLSTATEs, setting names,
 * stack traces. `also`: more strings that must not appear (the app's role names).
 */
export function expectNoLeak(reply: Reply, also: readonly string[] = []): void {
  const text = typeof reply.body === 'string' ? reply.body : JSON.stringify(reply.body ?? null)
  const forbidden: RegExp[] = [
    /\b(?:select|insert|update|delete)\b[^"]*\b(?:from|into|set|values)\b/i, // SQL
    /\bviolates\b|row-level security policy|permission denied|does not exist|invalid input syntax/i,
    /out of range|syntax error|\brelation\b|duplicate key|null value|invalid byte sequence/i,
    /\b(?:42501|42704|22P02|22003|22021|23503|23505)\b/, // SQLSTATEs
    /current_setting|set_config|app\.tenant_id|\bset role\b/i,
    /\n\s+at |\bat [\w.<>]+ \(|node_modules|\.ts:\d+/, // stack traces
  ]
  for (const pattern of forbidden) expect(text, `${pattern} in ${text}`).not.toMatch(pattern)
  for (const word of also) expect(text.toLowerCase(), `${word} in ${text}`).not.toContain(word.toLowerCase())
}

/**
 * The answer every example gives to a mistake: `status`, and the body
 * `{ error: { code, message } }` with nothing else in it, leaking nothing (see {@link expectNoLeak}).
 */
export function expectError(reply: Reply, status: number, code: string, also: readonly string[] = []): void {
  expect({ status: reply.status, body: reply.body }).toEqual({
    status,
    body: { error: { code, message: expect.any(String) } },
  })
  expect(reply.body.error.message.length).toBeGreaterThan(0)
  expectNoLeak(reply, also)
}

/**
 * The mistakes the events API of the Fastify and Kysely examples (one database, one API) must
 * answer alike, with the status and body every example gives them: no tenant 401, a malformed or
 * repeated tenant 400, a write the policy refuses 403 (and nothing written), a malformed id or body
 * 400, another's event and an unknown route 404. `orgs`: two seeded organisations with events;
 * `roles`: names no answer may contain.
 */
export async function expectEventsApiMistakes(url: string, orgs: readonly string[], roles: readonly string[]): Promise<void> {
  const as = (orgId: string) => ({ 'x-org-id': orgId })
  const expectAnswer = (reply: Reply, status: number, code: string) => expectError(reply, status, code, roles)

  // No tenant: 401, for a read and a write.
  expectAnswer(await call(`${url}/events`), 401, 'TENANT_REQUIRED')
  expectAnswer(await call(`${url}/events`, { json: { event_type: 'x' } }), 401, 'TENANT_REQUIRED')
  // A malformed tenant (not a UUID): 400.
  expectAnswer(await call(`${url}/events`, { headers: { 'x-org-id': "x' or '1'='1" } }), 400, 'INVALID_TENANT')
  expectAnswer(await call(`${url}/events`, { headers: { 'x-org-id': `${orgs[0]}x` } }), 400, 'INVALID_TENANT')
  // The tenant header sent twice, as two header lines: Node joins them into "<uuid>, <uuid>". 400.
  const twice = await callRepeated(`${url}/events`, { 'x-org-id': [orgs[0]!, orgs[1]!] })
  expectAnswer(twice, 400, 'INVALID_TENANT')
  // A write for another tenant, which the policy refuses: 403, and nothing written.
  const forged = await call(`${url}/events`, { headers: as(orgs[0]!), json: { event_type: 'forged', org_id: orgs[1] } })
  expectAnswer(forged, 403, 'RLS_VIOLATION')
  expect((await call(`${url}/events?type=forged`, { headers: as(orgs[1]!) })).body).toEqual([])
  // A malformed id in the path, a malformed body: 400, never a PostgreSQL error.
  expectAnswer(await call(`${url}/events/abc`, { headers: as(orgs[0]!) }), 400, 'BAD_REQUEST')
  expectAnswer(await call(`${url}/events/9999999999999999999`, { headers: as(orgs[0]!) }), 400, 'BAD_REQUEST')
  const bodies = [{}, { event_type: '' }, { event_type: 'x', event_value: 'one' }, { event_type: 'x', event_value: 2 ** 40 }, { event_type: 'x', org_id: 'not-a-uuid' }]
  for (const json of bodies) {
    expectAnswer(await call(`${url}/events`, { headers: as(orgs[0]!), json }), 400, 'BAD_REQUEST')
  }
  const notJson = await fetch(`${url}/events`, {
    method: 'POST',
    headers: { ...as(orgs[0]!), 'content-type': 'application/json' },
    body: '{"event_type": ',
  })
  expectAnswer({ status: notJson.status, body: await notJson.json() }, 400, 'BAD_REQUEST')
  // Not found: another's event looks absent, and so does a route that does not exist.
  const mine = await call(`${url}/events`, { headers: as(orgs[1]!) })
  const id = mine.body[0].event_id
  expect((await call(`${url}/events/${id}`, { headers: as(orgs[1]!) })).body).toMatchObject({ event_id: id })
  expectAnswer(await call(`${url}/events/${id}`, { headers: as(orgs[0]!) }), 404, 'NOT_FOUND')
  expectAnswer(await call(`${url}/nowhere`, { headers: as(orgs[0]!) }), 404, 'NOT_FOUND')
}
