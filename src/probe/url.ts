/**
 * The probe's check of a connection string, for `probeIsolation({ connectionString })`: the same
 * rules as the command line's `--url` (src/cli/database-url.ts), raised as InvalidOptionsError
 * since here it is an option of a function, not a command's usage.
 */
import { parseDatabaseUrl } from '../cli/database-url.js'
import { InvalidOptionsError } from '../errors.js'

/**
 * Returns `url` when it is a PostgreSQL connection URL pg reads as meant (see
 * `parseDatabaseUrl`); throws otherwise, without echoing the string (it may hold a password).
 *
 * @throws InvalidOptionsError for anything else
 * @example
 * ```ts
 * validateConnectionUrl('postgres://app@localhost/app') // returns it
 * validateConnectionUrl('localhost:5432') // throws InvalidOptionsError
 * ```
 */
export function validateConnectionUrl(url: string, source = 'connectionString'): string {
  try {
    parseDatabaseUrl(url, { source, command: 'probe' })
  } catch (err) {
    throw new InvalidOptionsError((err as Error).message)
  }
  return url
}
