/**
 * What the example apps' end-to-end tests (example-*.test.ts) and the adapter tests share: a
 * request that sends a header more than once, and the check that an error answer has the one
 * shape every example uses (pg-tenant's errorResponseOf) and leaks nothing of the database.
 */
import http from 'node:http'
import { expect } from 'vitest'
import type { Reply } from '../setup/http.js'

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
