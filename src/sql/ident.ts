/**
 * Identifier and literal quoting for the SQL helpers and the doctor's fixes. Every name that reaches
 * generated SQL passes through {@link quoteIdentifier}: validated, then double-quoted with embedded
 * double quotes doubled. Nothing is interpolated raw.
 */
import { InvalidIdentifierError } from '../errors.js'

// PostgreSQL truncates identifiers to NAMEDATALEN - 1 = 63 bytes: a longer name would silently
// become another one, so it is refused.
const MAX_IDENTIFIER_BYTES = 63
// C0 controls and DEL: legal inside a quoted identifier, but never intended, and they make
// generated SQL unreadable or misleading in a terminal.
const CONTROL = /[\u0000-\u001f\u007f]/

/**
 * Validates a PostgreSQL identifier and returns it unchanged, or throws `InvalidIdentifierError`.
 * The name is used exactly as given (quoted), so it is case-sensitive: `Events` is not `events`.
 *
 * @param name - the identifier
 * @param what - what it names, for the error message (e.g. `'table'`)
 */
export function validateIdentifier(name: unknown, what = 'identifier'): string {
  const fail = (why: string) =>
    new InvalidIdentifierError(`invalid ${what} ${describe(name)}: ${why}`)
  if (typeof name !== 'string') throw fail('it must be a string')
  if (name.length === 0) throw fail('it must not be empty')
  if (CONTROL.test(name)) throw fail('it must not contain control characters or NUL')
  if (!name.isWellFormed()) throw fail('it contains an unpaired UTF-16 surrogate')
  if (Buffer.byteLength(name) > MAX_IDENTIFIER_BYTES) {
    throw fail(`it is longer than ${MAX_IDENTIFIER_BYTES} bytes, and PostgreSQL would truncate it`)
  }
  return name
}

/**
 * Validates a role name: an identifier that PostgreSQL accepts for `CREATE ROLE` (not `public`,
 * not `none`, not starting with `pg_`).
 */
export function validateRoleName(name: unknown, what = 'role'): string {
  const role = validateIdentifier(name, what)
  if (role === 'public' || role === 'none') {
    throw new InvalidIdentifierError(`invalid ${what} ${describe(name)}: the name is reserved`)
  }
  if (role.startsWith('pg_')) {
    throw new InvalidIdentifierError(
      `invalid ${what} ${describe(name)}: names starting with pg_ are reserved by PostgreSQL`,
    )
  }
  return role
}

/**
 * Validates `name` as a PostgreSQL identifier and returns it double-quoted, with embedded double
 * quotes doubled, ready to be placed in SQL. Throws `InvalidIdentifierError` for names that are
 * empty, longer than 63 bytes, or contain control characters. Quoting keeps case: `Events` becomes
 * `"Events"`, which is not the table `events`.
 *
 * @example
 * ```ts
 * quoteIdentifier('events')        // '"events"'
 * quoteIdentifier('weird"name')    // '"weird""name"'
 * quoteIdentifier('x'.repeat(64))  // throws InvalidIdentifierError
 * ```
 */
export function quoteIdentifier(name: string): string {
  return quoteTrusted(validateIdentifier(name))
}

/** Quotes a name read from the catalogs (already a valid identifier): no validation. */
export function quoteTrusted(name: string): string {
  return `"${name.replaceAll('"', '""')}"`
}

/** `"schema"."name"`, or `"name"` alone when no schema is given. */
export function qualifiedName(schema: string | undefined, name: string): string {
  return schema === undefined ? quoteTrusted(name) : `${quoteTrusted(schema)}.${quoteTrusted(name)}`
}

/** A standard-conforming string literal: single quotes doubled; refuses NUL. */
export function quoteLiteral(value: string): string {
  if (value.includes('\0')) throw new InvalidIdentifierError('a SQL literal cannot contain NUL')
  return `'${value.replaceAll("'", "''")}'`
}

function describe(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value.length > 80 ? `${value.slice(0, 80)}…` : value)
  if (value === null) return 'null'
  return typeof value
}
