/**
 * What the three example apps share about errors. The answer itself is pg-tenant's
 * `errorResponseOf` (the table of statuses and codes is in its TSDoc and the README), the same in
 * every app: `{ "error": { "code": "TENANT_REQUIRED", "message": "this request needs a tenant" } }`.
 * The details (PostgreSQL's message, the role, the SQL, the stack) go to the server's log only.
 */
import type { ErrorResponse } from '../../src/classify/error-response.js'

/**
 * An error of the app's own, for the client: its status, and a message `errorResponseOf` may show
 * (`expose`, as the `http-errors` package marks messages meant for clients).
 */
export function httpError(status: number, message: string): Error & { status: number; expose: true } {
  return Object.assign(new Error(message), { status, expose: true as const })
}

/**
 * Logs an error the app answered: the whole error for a 5xx, one line with the details the
 * response leaves out (PostgreSQL's message, the role) for a refused tenant or write, nothing for
 * other client mistakes.
 */
export function logAnswered(err: unknown, { status, body }: ErrorResponse): void {
  if (status >= 500) {
    console.error(err)
  } else if (status === 403) {
    const message = err instanceof Error ? err.message : String(err)
    console.warn(`403 ${body.error.code}: ${message}`)
  }
}
