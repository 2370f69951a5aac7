/**
 * Validating a connection string given to the command line (`--url`, `DATABASE_URL`) before pg
 * sees it. pg's parser (pg-connection-string) accepts almost anything: `not-a-url` becomes the
 * database "not-a-url" on the host "base", and `http://host/db` connects to host:5432. So a typo
 * would surface as a confusing connection error, or reach a server nobody meant. Here a string
 * that is not a PostgreSQL URL is a usage error (exit 2) that says what is wrong with it, never
 * echoing the user name or password.
 */
import { UsageError } from './usage-error.js'

/**
 * Options of {@link parseDatabaseUrl}.
 *
 * @example
 * ```ts
 * const options: ParseDatabaseUrlOptions = { source: 'DATABASE_URL', command: 'probe' }
 * ```
 */
export interface ParseDatabaseUrlOptions {
  /** Where the string came from, for messages: `'--url'` (default) or `'DATABASE_URL'`. */
  readonly source?: string | undefined
  /** The subcommand whose `--help` the usage error points at. */
  readonly command?: string | undefined
}

const SCHEMES = new Set(['postgres:', 'postgresql:', 'socket:'])
const EXPECTED = 'expected postgres://user:password@host:port/database'

/**
 * Checks that `raw` is a PostgreSQL connection URL pg will read as meant, and returns it parsed.
 *
 * Accepted: `postgres://` and `postgresql://` URLs (host optional: `postgres://user@/db` and
 * `postgres:///db?host=/var/run/postgresql` reach a Unix socket, as with libpq), and pg's
 * `socket:/path/to/dir?db=name` form. Refused, with a message naming the problem: no scheme
 * (`not-a-url`), another scheme (`http://...`), an invalid host or port (`postgres://h:badport/db`,
 * a port outside 1 to 65535), a string that is not a URL at all (often a password with `@`, `/`,
 * `#` or `?` not percent-encoded). Messages never contain the user name or password. pg's bare
 * `/path dbname` form is refused: write `socket:/path?db=dbname` instead.
 *
 * @param raw - the connection string as given
 * @returns the parsed URL; for a URL with no host (`postgres://user@/db`), without its user name
 *   and password, which a WHATWG URL cannot hold without a host
 * @throws UsageError (code `CLI_USAGE`) when it is not a PostgreSQL connection URL
 *
 * @example
 * ```ts
 * import { parseDatabaseUrl } from './database-url.js'
 * const url = parseDatabaseUrl(process.env.DATABASE_URL ?? '', { source: 'DATABASE_URL' })
 * console.log(url.hostname, url.port, url.pathname)
 * ```
 */
export function parseDatabaseUrl(raw: string, options: ParseDatabaseUrlOptions = {}): URL {
  const source = options.source ?? '--url'
  const fail = (problem: string): never => {
    throw new UsageError(`${source} is not a PostgreSQL connection URL: ${problem}`, options.command)
  }
  if (typeof raw !== 'string' || raw.trim() === '') fail(`it is empty (${EXPECTED})`)
  const text = raw.trim()
  // Only what precedes '://' is shown: it cannot hold the password, which comes after.
  const scheme = /^([A-Za-z][A-Za-z0-9+.-]*):\/\//.exec(text)?.[1]?.toLowerCase()
  if (scheme === undefined) {
    if (text.toLowerCase().startsWith('socket:')) return parseOrFail(text, fail)
    if (text.startsWith('/')) fail('a bare socket path is not accepted: write socket:/path/to/dir?db=name')
    fail(`it does not start with postgres:// or postgresql:// (${EXPECTED})`)
  }
  if (!SCHEMES.has(`${scheme}:`)) {
    fail(`its scheme is ${JSON.stringify(`${scheme}:`)}, not postgres: or postgresql: (${EXPECTED})`)
  }
  if (scheme === 'socket') return parseOrFail(text, fail)
  // libpq and pg accept an empty host (user@/db): a Unix socket or PGHOST. WHATWG URL does not.
  const emptyHost = /^[^:]+:\/\/(?:[^@/?#]*@)?(?=[/?#]|$)/.test(text)
  // A WHATWG URL cannot hold credentials without a host: check the whole string with a stand-in
  // host, and return it without its user name and password (connect with the raw string).
  const url = emptyHost
    ? (parseOrFail(text.replace(/^([^:]+:\/\/(?:[^@/?#]*@)?)/, '$1localhost'), fail),
      parseOrFail(text.replace(/^([^:]+:\/\/)(?:[^@/?#]*@)?/, '$1'), fail))
    : parseOrFail(text, fail)
  if (url.port !== '' && Number(url.port) === 0) fail('its port is 0 (a port is a number from 1 to 65535)')
  const queryPort = url.searchParams.get('port')
  if (queryPort !== null && !/^[0-9]{1,5}$/.test(queryPort)) fail('its port parameter is not a number')
  return url
}

function parseOrFail(text: string, fail: (problem: string) => never): URL {
  try {
    return new URL(text)
  } catch {
    // Nothing of the string is shown: a password with an unencoded '#' or '/' would spill into
    // what looks like the host or port.
    const authority = /^[^:]+:\/\/([^/?#]*)/.exec(text)?.[1] ?? ''
    const port = /:([^:\]]*)$/.exec(authority.slice(authority.lastIndexOf('@') + 1))?.[1]
    const badPort = port !== undefined && (!/^[0-9]{1,5}$/.test(port) || Number(port) > 65535)
    return fail(
      badPort
        ? 'its port is not a number from 1 to 65535 (or a user name or password holds @ : / ? # not percent-encoded)'
        : 'it cannot be parsed as a URL: an invalid host, or a user name or password holding @ : / ? # not percent-encoded',
    )
  }
}

/**
 * `host:port/database` of a connection URL, for messages: never the user name or password.
 * `the database` when there is nothing to show.
 *
 * @example
 * ```ts
 * import { describeDatabaseUrl, parseDatabaseUrl } from './database-url.js'
 * describeDatabaseUrl(parseDatabaseUrl('postgres://app:secret@db:5433/shop')) // 'db:5433/shop'
 * ```
 */
export function describeDatabaseUrl(url: URL): string {
  let database = url.searchParams.get('db') ?? ''
  let host = url.protocol === 'socket:' ? url.pathname : url.hostname
  if (url.protocol !== 'socket:') {
    try {
      database = decodeURIComponent(url.pathname.replace(/^\//, ''))
    } catch {
      database = url.pathname.replace(/^\//, '')
    }
    const queryHost = url.searchParams.get('host')
    if (queryHost !== null && queryHost !== '') host = queryHost
  }
  const port = url.port || url.searchParams.get('port') || ''
  const where = `${host || 'localhost'}${port ? `:${port}` : ''}`
  return database ? `${where}/${database}` : where
}
