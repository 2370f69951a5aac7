/** The probe's own check of a connection string: a URL with the postgres: or postgresql: scheme. */
import { InvalidOptionsError } from '../errors.js'

/**
 * Returns `url` when it parses as a `postgres:` or `postgresql:` URL; throws otherwise, without
 * echoing the string (it may hold a password).
 *
 * @throws InvalidOptionsError for anything else
 * @example
 * ```ts
 * validateConnectionUrl('postgres://app@localhost/app') // returns it
 * validateConnectionUrl('localhost:5432') // throws InvalidOptionsError
 * ```
 */
export function validateConnectionUrl(url: string): string {
  let parsed: URL
  try {
    parsed = new URL(url)
  } catch {
    throw new InvalidOptionsError('the connection string is not a URL (postgres://user@host/database)')
  }
  if (parsed.protocol !== 'postgres:' && parsed.protocol !== 'postgresql:') {
    throw new InvalidOptionsError(
      `the connection string must start with postgres:// or postgresql://, not ${parsed.protocol}//`,
    )
  }
  return url
}
