/**
 * One HTTP error answer for every app: the status and a JSON body that never carries what the
 * database, the SQL or pg-tenant's own messages said (role names, setting names, PostgreSQL's
 * text), only a stable code and a message written for clients.
 */
import { STATUS_CODES } from 'node:http'
import { readField } from './error-chain.js'
import { chainClassOf, ownHttpStatus } from './error-status.js'

/**
 * The JSON body {@link errorResponseOf} answers with: `{ "error": { "code", "message" } }`.
 *
 * `code` is one of: a pg-tenant error code with a 4xx status (`TENANT_REQUIRED` 401,
 * `INVALID_TENANT` 400, `ROLE_NOT_ALLOWED` 403, `ROLE_SWITCH_FAILED` 403, `TENANT_QUOTA_EXCEEDED`
 * 429), `RLS_VIOLATION` (403, a write a Row-Level Security policy refused), or the status's name
 * in upper snake case (`BAD_REQUEST`, `NOT_FOUND`, `INTERNAL_SERVER_ERROR`, ...). Each code always
 * comes with the same status.
 *
 * @example
 * ```ts
 * const body: ErrorBody = { error: { code: 'TENANT_REQUIRED', message: 'this request needs a tenant' } }
 * ```
 */
export interface ErrorBody {
  readonly error: {
    readonly code: string
    readonly message: string
  }
}

/**
 * What {@link errorResponseOf} returns: the status to answer with (400-599) and the body.
 *
 * @example
 * ```ts
 * const { status, body }: ErrorResponse = errorResponseOf(err)
 * ```
 */
export interface ErrorResponse {
  readonly status: number
  readonly body: ErrorBody
  /**
   * Headers to answer with, when the error asks for some: `Retry-After` for a
   * `TenantQuotaError` (429). Absent otherwise.
   */
  readonly headers?: Readonly<Record<string, string>>
}

/**
 * Options of {@link errorResponseOf}.
 *
 * @example
 * ```ts
 * // Fastify (err: FastifyError): show the messages of the request schemas' validation errors
 * errorResponseOf(err, { expose: err.validation !== undefined })
 * ```
 */
export interface ErrorResponseOptions {
  /**
   * Whether the error's own `message` may be shown to the client, for a 4xx answer. Default: the
   * error's own `expose` property is `true` (the convention of `http-errors`, which Express's body
   * parsers follow: their 400 and 413 errors carry it). 5xx answers never show it.
   */
  readonly expose?: boolean
}

/** Messages for clients, by code: none of them names a role, a setting, a table or SQL. */
const PUBLIC_MESSAGES: Readonly<Record<string, string>> = {
  TENANT_REQUIRED: 'this request needs a tenant',
  INVALID_TENANT: "this request's tenant is invalid",
  ROLE_NOT_ALLOWED: "this request's tenant may not be used",
  ROLE_SWITCH_FAILED: "this request's tenant may not be used",
  RLS_VIOLATION: 'this tenant may not write this row',
  TENANT_QUOTA_EXCEEDED: 'this tenant has too much work in progress; retry later',
}

// Headers that go with a code's answer: a tenant over its quota may retry in a second.
const HEADERS: Readonly<Record<string, Readonly<Record<string, string>>>> = {
  TENANT_QUOTA_EXCEEDED: { 'Retry-After': '1' },
}

/** `Not Found` → `NOT_FOUND`; an unnamed status → `HTTP_<status>`. */
function statusName(status: number): { code: string; text: string } {
  const text = STATUS_CODES[status]
  if (text === undefined) return { code: `HTTP_${status}`, text: `HTTP ${status}` }
  return { code: text.toUpperCase().replace(/[^A-Z0-9]+/g, '_').replace(/^_|_$/g, ''), text }
}

/**
 * The status and JSON body to answer an error with, the same in every app and framework, and
 * safe to send: no PostgreSQL message, SQL, role or setting name or stack trace ever reaches it.
 * Log `err` itself on the server side. Never throws.
 *
 * - The status is {@link httpStatusOf}'s (the error's own `status`/`statusCode`, else a wrapped
 *   pg-tenant error's, else 403 for an RLS refusal), or 500 when it has none.
 * - The code: a pg-tenant error's code, also when an ORM wrapped or rebuilt it, or `RLS_VIOLATION`,
 *   when that is where the status came from; otherwise the status's name (`BAD_REQUEST`,
 *   `NOT_FOUND`, `INTERNAL_SERVER_ERROR`). Every 5xx is `{ code: <status name>, message: <status
 *   text> }`, whatever failed.
 * - The message: a fixed one per pg-tenant code; for other 4xx the error's own message when it
 *   is meant for clients (`expose`), else the status text (`Bad Request`).
 *
 * | mistake | status | code |
 * |---|---|---|
 * | no tenant | 401 | `TENANT_REQUIRED` |
 * | a malformed tenant (your resolver threw `InvalidTenantError`, a header sent twice) | 400 | `INVALID_TENANT` |
 * | a role off the allow-list / one PostgreSQL refused | 403 | `ROLE_NOT_ALLOWED` / `ROLE_SWITCH_FAILED` |
 * | a write an RLS policy refused | 403 | `RLS_VIOLATION` |
 * | a tenant over its `maxPerTenant` quota could not wait (`TenantQuotaError`) | 429, `Retry-After: 1` | `TENANT_QUOTA_EXCEEDED` |
 * | your own error with `status: 400` / `404` | 400 / 404 | `BAD_REQUEST` / `NOT_FOUND` |
 * | anything else | 500 | `INTERNAL_SERVER_ERROR` |
 *
 * @param err - anything caught
 * @param options - `expose`: show the error's own message (4xx only)
 * @returns `{ status, body: { error: { code, message } }, headers? }`
 *
 * @example
 * ```ts
 * import express from 'express'
 * import { tenantMiddleware, errorResponseOf } from 'pg-tenant/express'
 *
 * const app = express()
 * app.use(tenantMiddleware(db, { resolve: (req: express.Request) => req.get('x-org-id') }))
 * // ... routes ...
 * app.use((err: unknown, req: express.Request, res: express.Response, next: express.NextFunction) => {
 *   const { status, body, headers } = errorResponseOf(err)
 *   if (status >= 500) console.error(err) // the details stay in the server's log
 *   res.status(status).set(headers ?? {}).json(body) // { "error": { "code": "RLS_VIOLATION", "message": "..." } }
 * })
 * ```
 */
export function errorResponseOf(err: unknown, options: ErrorResponseOptions = {}): ErrorResponse {
  let status = 500
  let code: string | undefined
  let exposed: string | undefined
  try {
    const own = ownHttpStatus(err)
    const found = chainClassOf(err)
    status = own ?? found?.status ?? 500
    if (found !== undefined && found.status === status) code = found.code
    if (status < 500 && own !== undefined) {
      const expose = options.expose ?? (typeof err === 'object' && err !== null && readField(err, 'expose') === true)
      const message = expose && typeof err === 'object' && err !== null ? readField(err, 'message') : undefined
      if (typeof message === 'string' && message !== '') exposed = message
    }
  } catch {
    // Options or an error that throw: a generic 500, never a failure to answer.
    status = 500
  }
  const name = statusName(status)
  if (status >= 500) return { status, body: { error: { code: name.code, message: name.text } } }
  const headers = code === undefined ? undefined : HEADERS[code]
  return {
    status,
    body: {
      error: {
        code: code ?? name.code,
        message: exposed ?? (code === undefined ? undefined : PUBLIC_MESSAGES[code]) ?? name.text,
      },
    },
    ...(headers === undefined ? {} : { headers: { ...headers } }),
  }
}
